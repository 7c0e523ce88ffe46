"""Approval at the hub: states per network and unit, no cascade, returns reaching the prefecture."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from exchange_server.errors import NotFound
from exchange_server.hub.approval import ApprovalService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.review.models import ReviewComment
from exchange_server.review.services import deliver_comments
from exchange_server.submissions.models import Delivery
from tests.hub.conftest import Delivered
from tests.support.receiving import receive_folder
from tests.support.tiers import PROVINCE, rewrite_delivery

CYCLE = "202611"


def _board(d: Delivered) -> dict[str, object]:
    with d.hub.db.session() as s:
        return {n.latn_id: n for n in ApprovalService(s, PROVINCE).board(CYCLE)}


def test_a_correction_after_approval_reopens_that_network_and_that_unit_only(delivered: Delivered,
                                                                             tmp_path: Path) -> None:
    d = delivered
    a, b = d.networks[0], d.networks[1]
    board = _board(d)
    assert {n.state for n in board.values()} == {"pending"}
    assert all(n.changes_since == 1 for n in board.values())  # one delivery each, never approved
    with d.hub.db.session() as s:
        made = ApprovalService(s, PROVINCE, d.hub.archive).approve(CYCLE, [a, b], "boss", "looks right")
        assert [m.latn_id for m in made] == [a, b]
        # Approving again changes nothing: the approval in force already covers these versions.
        assert ApprovalService(s, PROVINCE, d.hub.archive).approve(CYCLE, [a], "boss") == []
    board = _board(d)
    assert board[a].state == board[b].state == "approved" and board[a].changes_since == 0
    assert board[d.networks[2]].state == "pending"
    # The prefecture of network a corrects its customers (31201 only) after approval.
    def rename(code: str, row: dict[str, str]) -> dict[str, str]:
        return {**row, "CUST_NAME": row["CUST_NAME"] + "（更正）"}

    fix = rewrite_delivery(d.hub.spec, d.folder(a), tmp_path / "fix", 1, units=["31201"], edit=rename)
    receive_folder(d.hub, f"latn{a}", fix)
    IngestionWorker(d.hub, "t").drain()
    board = _board(d)
    assert board[a].state == "changed" and board[a].changes_since == 1
    assert board[a].unit_state("31201") == "changed" and board[a].unit_state("32001") == "approved"
    assert board[b].state == "approved" and board[b].changes_since == 0  # no cascade
    with d.hub.db.session() as s:
        ApprovalService(s, PROVINCE, d.hub.archive).approve(CYCLE, [a], "boss")
    assert _board(d)[a].state == "approved"


def test_returning_a_network_tells_its_prefecture_why(delivered: Delivered) -> None:
    d = delivered
    c = d.networks[2]
    with d.hub.db.session() as s:
        svc = ApprovalService(s, PROVINCE, d.hub.archive)
        with pytest.raises(Exception) as refused:
            svc.return_(CYCLE, [c], "boss", "   ")
        assert getattr(refused.value, "code", "") == "comment_empty"
        svc.return_(CYCLE, [c], "boss", "收入与上月差异过大，请核实 / revenue off by far, check it")
        commented = sorted(svc.commented)
    for delivery_id in commented:
        deliver_comments(d.hub, delivery_id)
    assert _board(d)[c].state == "returned"
    with d.hub.db.session() as s:
        own = s.scalars(select(Delivery).where(Delivery.party == c)).one()
        assert commented == [own.id]
        bodies = [x.body for x in s.scalars(select(ReviewComment).where(ReviewComment.delivery_id == own.id))]
    assert len(bodies) == 1 and "请核实" in bodies[0] and c in bodies[0]
    outbox = d.hub.settings.sftp_root / c / "outbox" / f"{own.check_name}.comment.txt"
    assert "请核实" in outbox.read_text("utf-8")


def test_only_the_provinces_own_networks_can_be_approved(delivered: Delivered) -> None:
    with delivered.hub.db.session() as s:
        with pytest.raises(NotFound) as other:
            ApprovalService(s, PROVINCE).approve(CYCLE, ["0571"], "boss")  # Hangzhou, Zhejiang's
    assert other.value.code == "network_not_found"
