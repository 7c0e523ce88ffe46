"""The hub's whole path in one process pair: sync down, prefectures deliver, approve, forward, HQ judges, answers down."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from exchange_server.consolidation.models import IncomeFact
from exchange_server.consolidation.rollups import RollupService
from exchange_server.cycles.models import ReportingCycle
from exchange_server.hub.approval import ApprovalService
from exchange_server.hub.forward import ForwardService
from exchange_server.hub.forwarder import Forwarder
from exchange_server.hub.models import Forward, ForwardSource
from exchange_server.hub.reconcile import reconcile
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.models import ListSlice
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery, DeliveryApproval, UnitVersion
from tests.support.receiving import receive_folder
from tests.support.tiers import PROVINCE, hq_with_list, network_accounts, until_judged


def _fen(rt: Runtime, cycle: str) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(IncomeFact.income_amt), 0))
                            .where(IncomeFact.cycle == cycle, IncomeFact.current.is_(True),
                                   IncomeFact.prov_id == PROVINCE)) or 0)


def test_prefectures_to_hq_through_the_hub(runtime: Runtime, live_server: Server, hub: Runtime, tmp_path: Path) -> None:
    folders = hq_with_list(runtime, tmp_path / "gen")
    forwarder = Forwarder(hub)
    assert forwarder.run_once(sync=True)["synced"] == 1
    with hub.db.session() as s:
        assert s.get(ReportingCycle, "202611") is not None
        parts = set(s.scalars(select(ListSlice.province)))
    assert PROVINCE in parts and len(parts) > 3  # the province's slice and its networks' parts
    nets = sorted(folders.values())
    network_accounts(hub, nets)
    for folder, net in folders.items():
        receive_folder(hub, f"latn{net}", folder)
    IngestionWorker(hub, "t").drain()
    with hub.db.session() as s:
        statuses = {d.party: d.status for d in s.scalars(select(Delivery))}
    assert set(statuses.values()) == {"accepted"}, statuses
    with hub.db.session() as s:
        board = ApprovalService(s, PROVINCE).board("202611")
        assert {n.state for n in board} == {"pending"}
        ApprovalService(s, PROVINCE, hub.archive).approve("202611", [n.latn_id for n in board], "boss")
    with hub.db.session() as s:
        made = ForwardService(hub, s).build("202611", "boss")
        assert [f.check_name for f in made] == ["P_42_202611_00"]
    fwd = until_judged(hub, forwarder)
    assert fwd.hq_status == "accepted", (fwd.hq_status, fwd.last_error)
    # HQ counts for the province exactly what the prefectures delivered, to the fen.
    IngestionWorker(runtime, "t").drain()
    assert _fen(runtime, "202611") == _fen(hub, "202611") > 0
    with hub.db.session() as s:
        rec = reconcile(s, hub.archive, hub.spec, s.get(Forward, fwd.id))
        assert rec.equal and rec.lines
    forwarder.close()
    # HQ knows who approved which network at the province, and when.
    with runtime.db.session() as s:
        approval = s.get(DeliveryApproval, fwd.hq_delivery_id)
        assert approval is not None and approval.hub == PROVINCE and approval.forwarded_by == "boss"
        assert sorted(n["latn_id"] for n in approval.networks) == nets
        assert all(n["by"] == "boss" and n["at"] for n in approval.networks)
    # ... and so does its completeness: every network counted for Hubei was approved there.
    with runtime.db.session() as s:
        row = next(r for r in RollupService(s, runtime.spec).completeness("202611")["matrix"] if r["prov_id"] == PROVINCE)
    assert row["approval"]["approved"] == row["approval"]["networks"] == len(nets)
    assert row["approval"]["by"] == ["boss"] and row["approval"]["deliveries"] == [fwd.hq_delivery_id]
    # Traceable end to end: HQ's province figures trace to the forward; at the hub the same
    # networks' rows trace to each prefecture's own delivery, which the forward records it carries.
    with runtime.db.session() as s:
        at_hq = RollupService(s, runtime.spec).trace("202611", PROVINCE)
    assert at_hq and {r["delivery_id"] for r in at_hq} == {fwd.hq_delivery_id}
    with hub.db.session() as s:
        at_hub = RollupService(s, hub.spec).trace("202611", PROVINCE)
        senders = {d.id: d.party for d in s.scalars(select(Delivery))}
        carried = {(src.unit, src.latn_id): src.version_id
                   for src in s.scalars(select(ForwardSource).where(ForwardSource.forward_id == fwd.id))}
        summary_versions = {v.id: v.delivery_id for v in s.scalars(
            select(UnitVersion).where(UnitVersion.id.in_([v for (u, _), v in carried.items() if u == "32001"])))}
    assert {r["latn_id"] for r in at_hub} == {r["latn_id"] for r in at_hq}
    assert all(senders[r["delivery_id"]] == r["latn_id"] for r in at_hub)  # each network's own delivery
    assert {(r["latn_id"], r["delivery_id"]) for r in at_hub} == {
        (latn, summary_versions[vid]) for (unit, latn), vid in carried.items() if unit == "32001"}
    assert sum(r["income_amt"] for r in at_hub) == sum(r["income_amt"] for r in at_hq)
