"""Faults across the tiers, with real processes: HQ down while the hub forwards, the hub killed mid-forward,
a prefecture's correction after approval, HQ's resend request.

HQ and Hubei's hub run as separate ``exchange-server serve`` processes (SQLite, and
PostgreSQL); every local network has delivered to the hub. The province approves and
forwards with the hub's command line. Each test ends with exactly one current version at
HQ (in the forward expected), every forward judged and each HQ delivery a forward's, HQ's
figures for the province equal to the approved prefecture deliveries', and the hub's board
as it should be.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import Spec
from tests.support.tier_processes import (
    CYCLE,
    PROVINCE,
    Databases,
    Tiers,
    build_tiers,
    databases,
    edit_rows,
    network_income,
    rollup_networks,
    rollup_province,
    summary_sums,
    wait_until,
    with_more_income,
    with_stray_space,
)

assert databases  # the fixture: every tier on SQLite, then on PostgreSQL
FIRST, SECOND = f"P_{PROVINCE}_{CYCLE}_00", f"P_{PROVINCE}_{CYCLE}_01"


def _approve_all(t: Tiers, by: str = "zhang.wei") -> None:
    out = t.hub.cli("hub", "approve", CYCLE, "--all", "--as", by).stdout
    assert out.startswith("approved "), out


def _forward(t: Tiers, check: str) -> None:
    out = t.hub.cli("hub", "forward", CYCLE, "--as", "zhang.wei").stdout
    assert f"{check} (" in out and "queued for HQ" in out, out


def assert_settled(t: Tiers, check: str, board: dict[str, str] | None = None,
                   counted: dict[str, Path] | None = None) -> dict[str, Any]:
    """The state every tier must end in: HQ holds exactly one current version of each unit, all from
    the forward ``check``; nothing reached HQ twice; each forward judged; HQ's figures for the province
    the sum of ``counted`` (default: each network's delivery in ``t.folders``); the board as given
    (default: every network approved). Returns HQ's delivery for ``check``."""
    at_hq = t.at_hq()
    names = [d["check_file"] for d in at_hq]
    assert len(names) == len(set(names)), f"HQ got a delivery twice: {names}"
    current = [(d["check_file"], v["unit"]) for d in at_hq for v in d["versions"] if v["current"]]
    assert sorted(u for _c, u in current) == ["31201", "31202", "31203", "32001", "32002", "32003"], current
    assert {c for c, _u in current} == {check + ".chk"}, current
    forwards = t.forwards()
    assert [f["state"] for f in forwards] == ["judged"] * len(forwards), forwards
    assert sorted(f["hq_delivery_id"] for f in forwards) == [d["delivery_id"] for d in at_hq]
    holder = next(d for d in at_hq if d["check_file"] == check + ".chk")
    assert next(f for f in forwards if f["check"] == check)["hq_delivery_id"] == holder["delivery_id"]
    assert holder["status"] in ("accepted", "accepted_with_warnings")
    folders = counted or t.folders
    assert rollup_province(t.hq, t.analyst_token) == summary_sums(t.spec, [folders[n] for n in t.networks])
    assert rollup_networks(t.hq, t.analyst_token) == {n: network_income(t.spec, folders[n]) for n in t.networks}
    states = {n: r["state"] for n, r in t.board().items()}
    assert states == {n: (board or {}).get(n, "approved") for n in t.networks}, states
    return holder


def test_hq_down_while_forwarding_the_forward_waits_and_goes_once(databases: Databases, spec: Spec,
                                                                  tmp_path: Path) -> None:
    t = build_tiers(spec, tmp_path, databases)
    try:
        late = t.networks[-1]  # delivers a correction while HQ is down
        approved = dict(t.folders)
        _approve_all(t)
        t.hq.stop()
        _forward(t, FIRST)  # built and queued though HQ cannot be asked for its resend numbers
        failed = wait_until(lambda: next((f for f in t.forwards() if f["attempts"] >= 1), None), 60,
                            "the forwarder's first attempt")
        assert failed["state"] == "built" and failed["hq_delivery_id"] is None, failed
        assert failed["last_error"], failed  # why it waits, on record
        # The hub goes on taking prefecture data meanwhile, and judging it.
        corrected = with_more_income(spec, t.folders[late], tmp_path / "fix", 1)
        did = t.upload(late, corrected)
        assert t.judged_at_hub(late, did)["status"] == "accepted"
        assert t.board()[late]["state"] == "changed"
        assert [f["state"] for f in t.forwards()] == ["built"]
        # HQ comes back on the same data directory and port: the queued forward goes, once.
        t.hq.start()
        fwd = t.wait_judged_forward(FIRST, timeout=120)
        assert fwd["hq_status"] == "accepted" and fwd["attempts"] >= 2 and not fwd["last_error"], fwd
        t.folders[late] = corrected
        # HQ counts what was approved (not the correction, which now waits for approval at the hub).
        holder = assert_settled(t, FIRST, board={late: "changed"}, counted=approved)
        assert len(t.at_hq()) == 1 and holder["resend"] == 0
    finally:
        t.close()


def test_the_hub_killed_mid_forward_sends_it_again_and_hq_keeps_one(databases: Databases, spec: Spec,
                                                                    tmp_path: Path) -> None:
    t = build_tiers(spec, tmp_path, databases, relay=True)
    assert t.relay is not None
    try:
        _approve_all(t)
        # HQ takes the forward and answers, but the answer never reaches the hub ...
        t.relay.hold_uploads.set()
        _forward(t, FIRST)
        assert t.relay.held.wait(90), "HQ never answered the forward\n" + t.hub.log_tail()
        [taken] = t.at_hq()
        assert taken["check_file"] == FIRST + ".chk"
        # ... which is killed while it waits: it never recorded HQ's receipt.
        t.hub.kill()
        [left] = t.forwards()  # the command line works with the hub down
        assert (left["state"], left["hq_delivery_id"]) == ("built", None), left
        # Back up, it sends the same bytes again; HQ answers with its first receipt.
        t.relay.hold_uploads.clear()
        t.hub.start()
        fwd = t.wait_judged_forward(FIRST)
        assert t.relay.uploads == 2  # sent twice ...
        assert fwd["hq_delivery_id"] == taken["delivery_id"] and fwd["hq_status"] == "accepted", fwd
        assert_settled(t, FIRST)  # ... and there once
        assert [d["delivery_id"] for d in t.at_hq()] == [taken["delivery_id"]]
    finally:
        t.close()


def test_a_correction_after_approval_reopens_that_network_only(databases: Databases, spec: Spec,
                                                               tmp_path: Path) -> None:
    t = build_tiers(spec, tmp_path, databases)
    try:
        _approve_all(t)
        _forward(t, FIRST)
        assert t.wait_judged_forward(FIRST)["hq_status"] == "accepted"
        before = rollup_networks(t.hq, t.analyst_token)
        # A prefecture corrects its figures after the province approved them.
        net = t.networks[-1]
        corrected = with_more_income(spec, t.folders[net], tmp_path / "fix", 1, yuan="1.23")
        did = t.upload(net, corrected)
        assert t.judged_at_hub(net, did)["status"] == "accepted"
        board = t.board()
        assert board[net]["state"] == "changed" and board[net]["changes_since_approval"] == 1, board[net]
        assert {n: r["state"] for n, r in board.items() if n != net} == {n: "approved" for n in board if n != net}
        assert {u["check"] for u in board[net]["units"].values()} == {f"P_{net}_{CYCLE}_01"}
        # Forwarding the whole province again waits for that network, and only that one.
        refused = t.hub.cli("hub", "forward", CYCLE, check=False)
        assert refused.returncode == 1 and "forward_not_approved" in refused.stderr, refused.stderr
        assert f"{net} (changed)" in refused.stderr and not any(f"{n} (" in refused.stderr for n in board if n != net)
        assert t.hub.cli("hub", "approve", CYCLE, "--all", "--as", "li.na").stdout.strip() == \
            f"approved 1 network(s): {net}"
        _forward(t, SECOND)
        assert t.wait_judged_forward(SECOND)["hq_status"] == "accepted"
        t.folders[net] = corrected
        holder = assert_settled(t, SECOND)
        [first] = [d for d in t.at_hq() if d["check_file"] == FIRST + ".chk"]
        assert not any(v["current"] for v in first["versions"])  # superseded, kept
        after = rollup_networks(t.hq, t.analyst_token)
        from decimal import Decimal

        assert after == {**before, net: before[net] + Decimal("1.23")}
        approval = t.hq_delivery(holder["delivery_id"], t.analyst_token)["approval"]
        by = {n["latn_id"]: (n["by"], {v["delivery"] for v in n["versions"]}) for n in approval["networks"]}
        assert by[net] == ("li.na", {f"P_{net}_{CYCLE}_01"})
        assert {n: b for n, (b, _v) in by.items() if n != net} == {n: "zhang.wei" for n in by if n != net}
    finally:
        t.close()


def test_hqs_resend_request_returns_the_networks_it_concerns(databases: Databases, spec: Spec,
                                                             tmp_path: Path) -> None:
    stray: dict[str, Any] = {}

    def edit(net: str, folder: Path, out: Path) -> Path:
        if net != "0715":
            return folder
        stray["folder"], _customer, stray["line"] = with_stray_space(spec, folder, out)
        stray["clean"] = folder
        return Path(stray["folder"])

    t = build_tiers(spec, tmp_path, databases, edit=edit)
    faulty = "0715"
    others = [n for n in t.networks if n != faulty]
    try:
        _approve_all(t)
        _forward(t, FIRST)
        fwd = t.wait_judged_forward(FIRST)
        assert fwd["hq_status"] == "accepted_with_warnings" and fwd["hq_warnings"] == 1, fwd
        # HQ asks the province to send the cycle again.
        t.hq.cli("review", "resend", str(fwd["hq_delivery_id"]), "--note", "请修正客户名称 / fix the customer name",
                 "--as", "hq.reviewer")
        wait_until(lambda: t.at_hub(faulty)["hq"][0]["hq_review_state"] == "resend_requested", 60,
                   "HQ's resend request at the hub")
        board = t.board()
        assert {n: r["state"] for n, r in board.items()} == {n: "returned" if n == faulty else "approved"
                                                             for n in t.networks}
        assert board[faulty]["decided_by"].startswith("HQ")
        # The request reaches the prefecture whose rows HQ found fault with, and only that one.
        request = "HQ requests a resend of this cycle (the province's delivery " + FIRST
        assert any(request in c["body"] for c in t.at_hub(faulty)["comments"])
        for n in others:
            assert not any(request in c["body"] for c in t.at_hub(n)["comments"]), n
        comment_file = t.hub.data_dir / "sftp" / faulty / "outbox" / f"P_{faulty}_{CYCLE}_00.comment.txt"
        assert request in comment_file.read_text("utf-8")
        [finding] = t.at_hub(faulty)["hq"][0]["findings"]
        assert (finding["code"], finding["file"], finding["line"]) == \
            ("W301", f"P_{faulty}_{CYCLE}_31201_00_001.txt", stray["line"])
        # Forwarding now waits for it; the prefecture corrects and sends again; approved; forwarded.
        refused = t.hub.cli("hub", "forward", CYCLE, check=False)
        assert refused.returncode == 1 and f"{faulty} (returned)" in refused.stderr, refused.stderr
        corrected = edit_rows(spec, stray["clean"], tmp_path / "fix", 1, lambda _u, row: row)  # the name fixed
        did = t.upload(faulty, corrected)
        assert t.judged_at_hub(faulty, did)["status"] == "accepted"
        assert t.board()[faulty]["state"] == "pending"
        assert t.hub.cli("hub", "approve", CYCLE, "--all", "--as", "zhang.wei").stdout.strip() == \
            f"approved 1 network(s): {faulty}"
        _forward(t, SECOND)
        again = t.wait_judged_forward(SECOND)
        assert again["hq_status"] == "accepted" and again["hq_warnings"] == 0, again
        t.folders[faulty] = corrected
        assert_settled(t, SECOND)
        assert [d["check_file"] for d in t.at_hq()] == [FIRST + ".chk", SECOND + ".chk"]
    finally:
        t.close()
