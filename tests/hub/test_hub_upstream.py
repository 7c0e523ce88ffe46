"""The hub's link to HQ over both channels: sync down, forward up with its approval manifest, answers back."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from exchange_server.accounts.services import AccountService
from exchange_server.consolidation.models import IncomeFact
from exchange_server.hub.approval import ApprovalService
from exchange_server.hub.forward import ForwardService
from exchange_server.hub.forwarder import Forwarder
from exchange_server.hub.models import HubCycle
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.models import ListSlice
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.sftp.keys import host_key_line, new_ed25519
from exchange_server.sftp.outbox import place_calendar, place_list_slices
from exchange_server.submissions.models import Delivery, DeliveryApproval
from tests.support.receiving import receive_folder
from tests.support.tiers import (
    PROVINCE,
    hq_with_list,
    network_accounts,
    open_hub,
    province_token,
    until_judged,
)

CYCLE = "202611"


def _fen(rt: Runtime) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(IncomeFact.income_amt), 0)).where(
            IncomeFact.cycle == CYCLE, IncomeFact.current.is_(True), IncomeFact.prov_id == PROVINCE)) or 0)



def test_a_hub_reaching_hq_over_sftp(runtime: Runtime, live_server: Server, hub_database_url: str,
                                     tmp_path: Path) -> None:
    folders = hq_with_list(runtime, tmp_path / "gen")
    province_token(runtime, "hubei")
    private, public = new_ed25519()
    key = tmp_path / "hub" / "hq_key"
    key.parent.mkdir(parents=True)
    key.write_bytes(private)
    key.chmod(0o600)
    with runtime.db.session() as s:
        svc = AccountService(s, "test")
        svc.add_ssh_key(svc.get("hubei"), public)
    known = tmp_path / "hub" / "known_hosts"
    known.write_text(f"[127.0.0.1]:{live_server.sftp_port} {host_key_line(runtime.settings)}\n")
    place_calendar(runtime)  # what HQ leaves in the province's outbox: calendar and list slices
    with runtime.db.session() as s:
        version = s.scalars(select(ListSlice)).first().version.version
    place_list_slices(runtime, version)
    hub = open_hub(tmp_path / "hub", hub_database_url, live_server.url, "unused", upstream_transport="sftp",
                   upstream_sftp_host="127.0.0.1", upstream_sftp_port=live_server.sftp_port,
                   upstream_sftp_user="hubei", upstream_sftp_key_file=str(key),
                   upstream_sftp_known_hosts=str(known))
    try:
        forwarder = Forwarder(hub)
        assert forwarder.run_once(sync=True)["synced"] == 1
        with hub.db.session() as s:
            assert s.get(HubCycle, CYCLE) is not None
            assert len(set(s.scalars(select(ListSlice.province)))) > 3
        network_accounts(hub, sorted(folders.values()))
        for folder, net in folders.items():
            receive_folder(hub, f"latn{net}", folder)
        IngestionWorker(hub, "t").drain()
        with hub.db.session() as s:
            board = ApprovalService(s, PROVINCE, hub.archive)
            board.approve(CYCLE, [n.latn_id for n in board.board(CYCLE)], "zhang.wei")
            ForwardService(hub, s).build(CYCLE, "zhang.wei")
        fwd = until_judged(hub, forwarder)
        forwarder.close()
        assert fwd.hq_status == "accepted" and fwd.hq_delivery_id
        IngestionWorker(runtime, "t").drain()
        assert _fen(runtime) == _fen(hub) > 0
        with runtime.db.session() as s:
            approval = s.get(DeliveryApproval, fwd.hq_delivery_id)
            assert approval is not None and approval.hub == PROVINCE
            assert sorted(n["latn_id"] for n in approval.networks) == sorted(folders.values())
            assert {n["by"] for n in approval.networks} == {"zhang.wei"}
            delivery = s.get(Delivery, fwd.hq_delivery_id)
            # The manifest travelled with the delivery but is not one of its files.
            assert all(not f.name.endswith(".approval.json") for f in delivery.files)
            assert delivery.channel == "sftp"
    finally:
        hub.db.dispose()
