"""Three tiers end to end on loopback, each a real process: HQ, Hubei's hub, prefecture agents.

HQ and the hub are separate ``exchange-server serve`` processes with their own data
directories and databases (SQLite, and PostgreSQL); the hub is set up with its command line
(``init``, the prefectures' accounts, tokens and SSH keys, ``hub sync``). Three local
networks deliver with ``province-agent`` processes (two over HTTP, one over the hub's SFTP
server), the others over the hub's HTTP API. One delivery is rejected at the
hub and corrected; the province approves and forwards with the CLI; HQ accepts; HQ's
figures for the province equal the prefectures' to the fen; HQ's comment and HQ's finding
come back down to the prefecture, naming its own file and line.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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
    with_stray_space,
)
from tests.support.tiers import read_delivery

assert databases  # the fixture: every tier on SQLite, then on PostgreSQL
TYPO = "G429999999"  # a customer id no list holds
HQ_COMMENT = "请核对客户名称 / please check the customer names"


def _with_typo(spec: Spec, folder: Path, out: Path) -> Path:
    """The delivery with one customer's id mistyped in every unit (E604 at the hub: not on its list)."""
    wrong = read_delivery(spec, folder)["31201"][0]["NATIONAL_CUST_ID"]

    def edit(_unit: str, row: dict[str, str]) -> dict[str, str]:
        return {**row, "NATIONAL_CUST_ID": TYPO} if row.get("NATIONAL_CUST_ID") == wrong else row

    return edit_rows(spec, folder, out, 0, edit)


def _deliveries_at_hub(t: Tiers, net: str) -> list[dict[str, Any]]:
    page = t.hub.api(t.tokens[net]).get_json("/api/v1/deliveries", {"cycle": CYCLE})
    return sorted(page["items"], key=lambda d: d["delivery_id"])


def test_prefectures_deliver_through_their_hub_to_hq(databases: Databases, spec: Spec, tmp_path: Path) -> None:
    # Three networks with every unit (customers, contacts, products) run their own agent.
    http_a, sftp_b, fixed_c = "027", "0715", "0716"
    t = build_tiers(spec, tmp_path, databases, agents={http_a: "http", sftp_b: "sftp", fixed_c: "http"})
    hq, hub, agents, generated = t.hq, t.hub, t.agents, dict(t.folders)
    full = list(agents)
    try:
        assert all(any(generated[n].glob("*_31203_*")) for n in full)
        assert t.synced["cycles_added"] == [CYCLE] and t.synced["list_versions"] == ["2026V01"], t.synced
        board = t.board()
        assert sorted(board) == sorted(generated)
        assert {n: r["state"] for n, r in board.items() if n in agents} == {n: "empty" for n in agents}

        # -- prefectures deliver ---------------------------------------------------------------------------------
        stray, _customer, stray_line = with_stray_space(spec, generated[sftp_b], tmp_path / "edited" / sftp_b)
        typo = _with_typo(spec, generated[fixed_c], tmp_path / "edited" / fixed_c)
        t.folders[sftp_b] = stray
        agents[http_a].set_exports(generated[http_a])
        agents[sftp_b].set_exports(stray)
        agents[fixed_c].set_exports(typo)
        with ThreadPoolExecutor(3) as pool:
            # fixed_c sends without fetching HQ's list first (submit refreshes by default and would catch the typo)
            runs = {net: pool.submit(a.run, "submit", *(("--no-refresh",) if net == fixed_c else ()), "--cycle", CYCLE)
                    for net, a in agents.items()}
            done = {net: r.result() for net, r in runs.items()}
        for net in (http_a, sftp_b):
            assert done[net].returncode == 0, done[net].stdout + done[net].stderr
        assert f"P_{http_a}_{CYCLE}_00: accepted" in done[http_a].stdout, done[http_a].stdout
        assert f"P_{sftp_b}_{CYCLE}_00: accepted_with_warnings" in done[sftp_b].stdout, done[sftp_b].stdout
        # The mistyped customer is not on the network's part of the list: only the hub can tell
        # (the agent has not fetched the list), so the hub rejects it and the agent says so (exit 1).
        assert done[fixed_c].returncode == 1, done[fixed_c].stdout + done[fixed_c].stderr
        assert f"P_{fixed_c}_{CYCLE}_00: rejected" in done[fixed_c].stdout and "codes=E604x1" in done[fixed_c].stderr
        [rejected] = _deliveries_at_hub(t, fixed_c)
        assert rejected["status"] == "rejected" and [c["code"] for c in rejected["counts"]] == ["E604"]
        report = t.hub.api(t.tokens[fixed_c]).get_json(f"/api/v1/deliveries/{rejected['delivery_id']}/report")
        assert any(f["code"] == "E604" and f["value"] == TYPO for f in report["findings"]), report["findings"][:3]
        assert t.board()[fixed_c]["state"] == "empty"  # nothing of it counts
        # The prefecture corrects its export and sends again: resend 01, accepted.
        agents[fixed_c].set_exports(generated[fixed_c])
        fixed = agents[fixed_c].run("submit", "--cycle", CYCLE)
        assert fixed.returncode == 0 and f"P_{fixed_c}_{CYCLE}_01: accepted" in fixed.stdout, fixed.stdout + fixed.stderr
        for net in full:
            t.delivered[net] = _deliveries_at_hub(t, net)[-1]["delivery_id"]
        board = t.board()
        assert {n: r["state"] for n, r in board.items()} == {n: "pending" for n in generated}
        assert {u["check"] for u in board[fixed_c]["units"].values()} == {f"P_{fixed_c}_{CYCLE}_01"}
        assert {u["check"] for u in board[sftp_b]["units"].values()} == {f"P_{sftp_b}_{CYCLE}_00"}

        # -- the province approves (two people) and forwards -------------------------------------------------
        assert "approved 1 network(s)" in hub.cli("hub", "approve", CYCLE, http_a, "--as", "li.na").stdout
        out = hub.cli("hub", "approve", CYCLE, "--all", "--as", "zhang.wei").stdout
        assert f"approved {len(generated) - 1} network(s)" in out, out
        out = hub.cli("hub", "forward", CYCLE, "--as", "zhang.wei").stdout
        assert f"P_{PROVINCE}_{CYCLE}_00" in out and "queued for HQ" in out, out
        fwd = t.wait_judged_forward(f"P_{PROVINCE}_{CYCLE}_00")
        assert fwd["hq_status"] == "accepted_with_warnings" and fwd["attempts"] == 1, fwd

        # -- HQ: one delivery from the province, accepted, with who approved which network ---------------------
        [at_hq] = t.at_hq()
        assert at_hq["delivery_id"] == fwd["hq_delivery_id"] and at_hq["check_file"] == f"P_{PROVINCE}_{CYCLE}_00.chk"
        assert at_hq["status"] == "accepted_with_warnings" and at_hq["errors"] == 0
        assert {c["code"]: c["count"] for c in at_hq["counts"]} == {"W301": 1}
        assert all(v["current"] for v in at_hq["versions"]) and len(at_hq["versions"]) == 6
        approval = t.hq_delivery(at_hq["delivery_id"], t.analyst_token)["approval"]
        assert approval["hub"] == PROVINCE and approval["forwarded_by"] == "zhang.wei"
        by = {n["latn_id"]: n["by"] for n in approval["networks"]}
        assert by == {n: ("li.na" if n == http_a else "zhang.wei") for n in generated}
        versions = {n["latn_id"]: {v["delivery"] for v in n["versions"]} for n in approval["networks"]}
        assert versions[fixed_c] == {f"P_{fixed_c}_{CYCLE}_01"}  # the corrected delivery, not the rejected one

        # -- HQ's figures for the province are the prefectures' own, to the fen ------------------------------
        expected = summary_sums(spec, [t.folders[n] for n in generated])
        assert expected["INCOME_AMT"] > 0
        assert rollup_province(hq, t.analyst_token) == expected
        assert rollup_networks(hq, t.analyst_token) == {n: network_income(spec, t.folders[n]) for n in generated}
        rec = hub.cli_json("hub", "reconcile", str(fwd["id"]), "--json")
        assert rec["equal"] and {line["latn_id"] for line in rec["lines"]} == set(generated)

        # -- HQ's finding comes down to the prefecture whose row it is about, naming its own file and line ------
        own = _deliveries_at_hub(t, sftp_b)
        assert [d["check_file"] for d in own] == [f"P_{sftp_b}_{CYCLE}_00.chk"] and own[0]["channel"] == "sftp"
        [answer] = t.at_hub(sftp_b, own[0]["delivery_id"])["hq"]
        assert answer["forward"] == f"P_{PROVINCE}_{CYCLE}_00" and answer["hq_delivery_id"] == at_hq["delivery_id"]
        assert answer["state"] == "judged" and answer["hq_status"] == "accepted_with_warnings"
        [finding] = answer["findings"]
        own_file = f"P_{sftp_b}_{CYCLE}_31201_00_001.txt"
        assert (finding["code"], finding["field"], finding["file"], finding["line"]) == \
            ("W301", "CUST_NAME", own_file, stray_line), finding
        assert finding["hq_file"] == f"P_{PROVINCE}_{CYCLE}_31201_00_001.txt"
        hq_report = t.hq.api(t.province_token).get_json(f"/api/v1/deliveries/{at_hq['delivery_id']}/report")
        [at_hq_finding] = [f for f in hq_report["findings"] if f["code"] == "W301"]
        assert (at_hq_finding["file"], at_hq_finding["line"]) == (finding["hq_file"], finding["hq_line"])
        assert at_hq_finding["value"] == finding["value"] and finding["value"].endswith(" ")
        assert read_delivery(spec, stray)["31201"][stray_line - 1]["CUST_NAME"] == finding["value"]
        # ... and to no other prefecture: the others hear HQ's verdict, with nothing about their rows.
        for net in sorted(set(generated) - {sftp_b}):
            assert [(a["forward"], a["hq_status"], a["findings"]) for a in t.at_hub(net)["hq"]] == \
                [(f"P_{PROVINCE}_{CYCLE}_00", "accepted_with_warnings", [])], net
        assert t.at_hub(fixed_c, rejected["delivery_id"])["hq"] == []  # the rejected delivery was not carried
        hq_txt = agents[sftp_b].read_outbox(f"P_{sftp_b}_{CYCLE}_00.hq.txt")
        assert hq_txt is not None, "no .hq.txt in the prefecture's SFTP outbox"
        text = hq_txt.decode("utf-8")
        assert f"{own_file}:{stray_line}" in text and "W301" in text and f"P_{PROVINCE}_{CYCLE}_00" in text

        # -- HQ's comment on the province's delivery reaches the prefectures whose data it carries -------------
        hq.cli("review", "comment", str(at_hq["delivery_id"]), HQ_COMMENT, "--as", "hq.reviewer")
        wait_until(lambda: any(HQ_COMMENT in c["body"] for c in t.at_hub(http_a)["comments"]), 60,
                   "HQ's comment at the hub")
        for net in generated:
            assert any(HQ_COMMENT in c["body"] for c in t.at_hub(net)["comments"]), net
        assert not any(HQ_COMMENT in c["body"] for c in t.at_hub(fixed_c, rejected["delivery_id"])["comments"])
        for net in (http_a, sftp_b):  # what each agent shows: over HTTP from the API, over SFTP from its outbox
            status = agents[net].status()
            [rec_] = status["deliveries"]
            assert rec_["status"] == ("accepted" if net == http_a else "accepted_with_warnings")
            assert any(HQ_COMMENT in c for c in rec_["hq_comments"]), (net, rec_["hq_comments"])
        comment_txt = agents[sftp_b].read_outbox(f"P_{sftp_b}_{CYCLE}_00.comment.txt")
        assert comment_txt is not None and HQ_COMMENT in comment_txt.decode("utf-8")
        statuses = {r["check_name"]: r["status"] for r in agents[fixed_c].status()["deliveries"]}
        assert statuses == {f"P_{fixed_c}_{CYCLE}_00": "rejected", f"P_{fixed_c}_{CYCLE}_01": "accepted"}
        # Nothing else reached HQ, and the hub says everything is approved and judged.
        assert [d["delivery_id"] for d in t.at_hq()] == [at_hq["delivery_id"]]
        assert {r["state"] for r in t.board().values()} == {"approved"}
        assert [(f["check"], f["state"]) for f in t.forwards()] == [(f"P_{PROVINCE}_{CYCLE}_00", "judged")]
    finally:
        t.close()
