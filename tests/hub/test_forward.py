"""Forwarding from the hub: what goes up, what refuses to, and how HQ's answers come back down to a line."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.cli import main
from exchange_server.errors import Conflict, Unprocessable
from exchange_server.hub.answers import Answers, HqAnswer
from exchange_server.hub.approval import ApprovalService
from exchange_server.hub.forward import ForwardService
from exchange_server.hub.models import Forward, HqFinding
from exchange_server.hub.reconcile import reconcile
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.review.models import ReviewComment
from exchange_server.submissions.models import Delivery, UnitVersion
from schemas.validation.readers import text_lines
from tests.hub.conftest import Delivered
from tests.support.deliveries import refresh_check
from tests.support.receiving import receive_folder
from tests.support.tiers import PROVINCE, read_delivery, rewrite_delivery

CYCLE = "202611"


def _approve(d: Delivered, networks: list[str]) -> None:
    with d.hub.db.session() as s:
        ApprovalService(s, PROVINCE, d.hub.archive).approve(CYCLE, networks, "boss")


def _build(d: Delivered, networks: list[str] | None = None) -> list[int]:
    with d.hub.db.session() as s:
        return [f.id for f in ForwardService(d.hub, s).build(CYCLE, "boss", networks)]


def test_forward_all_waits_for_every_network_and_a_partial_one_goes_network_by_network(delivered: Delivered) -> None:
    d = delivered
    a, b = d.networks[:2]
    _approve(d, [a, b])
    with pytest.raises(Conflict) as waiting:
        _build(d)
    assert waiting.value.code == "forward_not_approved" and d.networks[2] in waiting.value.errors["networks"]
    ids = _build(d, [a, b])
    with d.hub.db.session() as s:
        made = [s.get(Forward, i) for i in ids]
        assert [(f.party, f.check_name) for f in made] == [(a, f"P_{a}_{CYCLE}_00"), (b, f"P_{b}_{CYCLE}_01")]
        assert all(f.state == "built" and f.networks == [f.party] for f in made)
        # Each carries exactly its network's rows, to the fen.
        for f in made:
            rec = reconcile(s, d.hub.archive, d.hub.spec, f)
            assert rec.equal and {line.latn_id for line in rec.lines} == {f.party}
    with pytest.raises(Conflict) as again:
        _build(d, [a])
    assert again.value.code == "forward_unchanged"


def test_a_forward_hq_would_reject_never_leaves(delivered: Delivered, tmp_path: Path) -> None:
    d = delivered
    a = next(n for n in d.networks if read_delivery(d.hub.spec, d.folder(n)).get("31201"))
    rows = read_delivery(d.hub.spec, d.folder(a))
    dropped = rows["31201"][0]["NATIONAL_CUST_ID"]

    # Network a resends its customers without one listed customer (and its contacts and
    # products): fine for a network (it need not cover the list), not for the province.
    fix = tmp_path / "fix"
    rewrite_delivery(d.hub.spec, d.folder(a), fix, 1)
    for p in fix.iterdir():
        if p.suffix == ".txt" and ("_31201_" in p.name or "_31202_" in p.name or "_31203_" in p.name):
            kept = [ln for ln in p.read_bytes().split(b"\n") if ln and dropped.encode() not in ln]
            p.write_bytes(b"\n".join(kept) + b"\n")
    refresh_check(fix)
    receive_folder(d.hub, f"latn{a}", fix)
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        statuses = s.scalars(select(Delivery.status).where(Delivery.party == a).order_by(Delivery.id)).all()
    assert len(statuses) == 2 and set(statuses) <= {"accepted", "accepted_with_warnings"}, statuses
    _approve(d, d.networks)
    with pytest.raises(Unprocessable) as refused:
        _build(d)
    assert refused.value.code == "forward_invalid"
    assert any(f["code"] == "X-007" and dropped in str(f.get("value", "")) + str(f.get("message_en", ""))
               for f in refused.value.errors)
    # The same from the command line: refused with the reason, nothing queued, the refusal on record.
    s = d.hub.settings
    env = {"KAM_DATABASE_URL": s.effective_database_url, "KAM_HUB_PARTY": s.hub_party,
           "KAM_UPSTREAM_URL": "http://127.0.0.1:9", "KAM_UPSTREAM_TOKEN_FILE": s.upstream_token_file}
    out = CliRunner().invoke(main, ["--data-dir", s.data_dir, "hub", "forward", CYCLE, "--as", "boss"], env=env)
    assert out.exit_code == 1 and "forward_invalid" in out.output and "X-007" in out.output
    with d.hub.db.session() as s:
        assert s.scalars(select(Forward)).all() == []  # nothing recorded, nothing to send
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "hub.forward_refused")).all()
        assert len(events) == 1 and events[0].actor == "boss" and events[0].detail["codes"].get("X-007")


def test_hq_findings_come_back_to_the_prefecture_file_and_line(delivered: Delivered) -> None:
    d = delivered
    _approve(d, d.networks)
    [fid] = _build(d)
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        assert fwd.check_name == f"P_{PROVINCE}_{CYCLE}_00" and sorted(fwd.networks) == d.networks
        files = {f["name"]: f for f in fwd.files}
        customers = next(n for n in files if "_31201_" in n)
        path = d.hub.archive.path(files[customers]["sha256"])
    forwarded = list(text_lines(path, "UTF-8"))
    # HQ reports the last customer row of the forwarded file (as it would a warning).
    line = len(forwarded)
    cust = forwarded[-1].split("|")[1]
    finding = {"code": "W501", "severity": "warning", "file": customers, "line": line, "field": "CUST_NAME",
               "value": "x", "message_zh": "测试", "message_en": "test"}
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        fwd.state, fwd.hq_delivery_id = "sent", 99
        answers = Answers(d.hub, s)
        answers.take(fwd, HqAnswer("accepted_with_warnings", 0, 1, [finding, {"code": "E605", "severity": "error"}],
                                   ["2026-12-07 admin: 请核对 / please check"], None))
    answers.deliver()
    with d.hub.db.session() as s:
        mapped = s.scalars(select(HqFinding).where(HqFinding.code == "W501")).one()
        source = s.get(Delivery, mapped.source_delivery_id)
        assert source is not None and source.party != PROVINCE
        unmapped = s.scalars(select(HqFinding).where(HqFinding.code == "E605")).one()
        assert unmapped.source_delivery_id is None  # about the forward itself, not a prefecture's row
        comments = [c.body for c in s.scalars(select(ReviewComment).where(ReviewComment.delivery_id == source.id))]
        check = source.check_name
    own = read_delivery(d.hub.spec, d.folder(source.party))["31201"]
    assert own[mapped.source_line - 1]["NATIONAL_CUST_ID"] == cust  # the prefecture's own line
    assert mapped.source_file.startswith(f"P_{source.party}_{CYCLE}_00_31201") or "_31201_" in mapped.source_file
    assert any("accepted_with_warnings" in c for c in comments) and any("请核对" in c for c in comments)
    outbox = d.hub.settings.sftp_root / source.party / "outbox"
    hq_txt = (outbox / f"{check}.hq.txt").read_text("utf-8")
    assert f"{mapped.source_file}:{mapped.source_line}" in hq_txt and "W501" in hq_txt
    # A resend request from HQ returns the networks whose rows HQ found fault with.
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        Answers(d.hub, s).take(fwd, HqAnswer("accepted_with_warnings", 0, 1, [], [], "resend_requested"))
    with d.hub.db.session() as s:
        board = {n.latn_id: n.state for n in ApprovalService(s, PROVINCE).board(CYCLE)}
    assert board[source.party] == "returned"
    assert sum(1 for state in board.values() if state == "returned") == 1


def test_networks_from_the_central_crm_and_from_their_prefectures_go_up_together(delivered: Delivered,
                                                                                  tmp_path: Path) -> None:
    from exchange_server.accounts.services import AccountService
    from exchange_server.sample_data.generator import generate

    d = delivered
    # The province's central CRM delivers every network at the hub, after the prefectures did:
    # it counts for all of them; then one prefecture corrects its own data, which counts for it.
    with d.hub.db.session() as s:
        AccountService(s, "test").create("hubei-crm", "province", PROVINCE)
    central = generate(d.hub.spec, CYCLE, tmp_path / "central", provinces=[PROVINCE], fmt="xml").deliveries[-1]
    receive_folder(d.hub, "hubei-crm", central.parent)
    a = next(n for n in d.networks if read_delivery(d.hub.spec, d.folder(n)).get("31201"))
    receive_folder(d.hub, f"latn{a}", rewrite_delivery(d.hub.spec, d.folder(a), tmp_path / "own", 1))
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        assert {dl.status for dl in s.scalars(select(Delivery))} <= {"accepted", "accepted_with_warnings"}
        board = {n.latn_id: n for n in ApprovalService(s, PROVINCE).board(CYCLE)}
    assert {c.party for c in board[a].counted.values()} == {a}
    others = [n for n in d.networks if n != a]
    assert all({c.party for c in board[n].counted.values()} == {PROVINCE} for n in others)
    _approve(d, d.networks)
    [fid] = _build(d)
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        parties = {s.get(Delivery, s.get(UnitVersion, src.version_id).delivery_id).party for src in fwd.sources}
        assert parties == {a, PROVINCE}
        rec = reconcile(s, d.hub.archive, d.hub.spec, fwd)
        assert rec.equal
        # An XML central delivery's rows go up as the forward's text lines, each traced to its XML row's line.
        from exchange_server.hub.models import ForwardLine
        runs = s.scalars(select(ForwardLine).where(ForwardLine.forward_id == fid)).all()
        assert {r.source_file.rsplit(".", 1)[1] for r in runs} == {"xml", "txt"}


def test_a_value_holding_the_pipe_goes_up_with_the_unit_separator(delivered: Delivered, tmp_path: Path) -> None:
    """An XML delivery may hold '|' in a value; the forward, text, must not split it into two columns."""
    d = delivered
    a = next(n for n in d.networks if read_delivery(d.hub.spec, d.folder(n)).get("31201"))
    address = "武汉市江汉区解放大道|688号"

    def edit(unit: str, row: dict[str, str]) -> dict[str, str]:
        return {**row, "ADDRESS": address} if unit == "31201" else row

    receive_folder(d.hub, f"latn{a}", rewrite_delivery(d.hub.spec, d.folder(a), tmp_path / "xml", 1, edit=edit,
                                                       fmt="xml"))
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        assert s.scalars(select(Delivery).order_by(Delivery.id.desc())).first().status == "accepted"
    _approve(d, d.networks)
    [fid] = _build(d)  # checked as HQ will before it is kept: a split column would be refused here
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        assert reconcile(s, d.hub.archive, d.hub.spec, fwd).equal
        folder = ForwardService(d.hub, s).materialise(fwd, tmp_path / "forward")
    rows = read_delivery(d.hub.spec, folder[0].parent)
    assert address in {r["ADDRESS"] for r in rows["31201"]}
    assert all(len(r) == len(d.hub.spec.unit("31201").fields) for r in rows["31201"])
