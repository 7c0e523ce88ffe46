"""Who sees and sends what at a hub: its own province only, each prefecture its own network and list part."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.errors import BadRequest
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.org.services import OrgService
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery, Finding
from province_agent.transport import HttpTransport
from schemas.writer import DeliveryWriter
from tests.hub.conftest import Delivered
from tests.support.deliveries import refresh_check, rewrite_check
from tests.support.receiving import receive_folder
from tests.support.tiers import PROVINCE, read_delivery, rewrite_delivery

CYCLE = "202611"


def test_a_hub_serves_its_own_province_only(delivered: Delivered, tmp_path: Path) -> None:
    d = delivered
    with d.hub.db.session() as s:
        assert [p.code for p in OrgService(s).provinces()] == [PROVINCE]
        svc = AccountService(s, "test")
        with pytest.raises(BadRequest) as other:
            svc.create("zj", "province", "33")
        assert other.value.code == "party_not_served"
        with pytest.raises(BadRequest):
            svc.create("hz", "province", "0571")  # a network of Zhejiang
        svc.create("hubei-crm", "province", PROVINCE)  # the province's own central CRM may deliver here
    # The province's account may not send for another province's network either (E606).
    a = d.networks[0]
    out = tmp_path / "other"
    rewrite_delivery(d.hub.spec, d.folder(a), out, 0, units=["32001"])
    chk = next(out.glob("*.chk"))
    for p in out.iterdir():
        p.rename(p.with_name(p.name.replace(f"_{a}_", "_0571_")))
    rewrite_check(out, lambda c: c.__class__(c.spec_version, c.mode, "0571", c.period, c.resend, c.generated_at,
                                            c.encoding, c.delimiter_name,
                                            tuple(e.__class__(e.name.replace(f"_{a}_", "_0571_"), e.size, e.rows,
                                                              e.period, e.generated_at, e.sha256)
                                                  for e in c.entries)))
    assert not chk.exists()
    refresh_check(out)
    did = receive_folder(d.hub, "hubei-crm", out)
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        delivery = s.get(Delivery, did)
        assert delivery.status == "rejected" and not delivery.entitled
        assert "E606" in {f.code for f in s.scalars(select(Finding).where(Finding.delivery_id == did))}


def test_each_prefecture_gets_and_is_held_to_its_own_part_of_the_list(delivered: Delivered, tmp_path: Path) -> None:
    d = delivered
    with_customers = [n for n in d.networks if read_delivery(d.hub.spec, d.folder(n)).get("31201")]
    a, b = with_customers[:2]
    # The list as the prefecture of b fetches it: its own part, named for its network.
    with d.hub.db.session() as s:
        svc = AccountService(s, "test")
        secret, _ = svc.create_token(svc.get(f"latn{b}"), "scope test")
    server = Server(d.hub, "127.0.0.1", 0).start(workers=0, sftp=False)
    try:
        meta = HttpTransport(server.url, secret).get_json("/api/v1/list")
    finally:
        server.shutdown()
    own = read_delivery(d.hub.spec, d.folder(b))["31201"]
    assert meta["province"] == b and all(f["name"].startswith(f"D_{b}_") for f in meta["files"])
    assert meta["rows"] >= len(own)
    # b reports a customer of a's: not on b's part of the list (E604), though on the province's.
    stranger = read_delivery(d.hub.spec, d.folder(a))["31201"][0]
    out = tmp_path / "b1"
    w = DeliveryWriter(d.hub.spec, out, "P", b, CYCLE, 1, encoding="UTF-8")
    with w.unit("31201") as u:
        for r in own + [{**stranger, "LATN_ID": b}]:
            u.write(r)
    w.close()
    did = receive_folder(d.hub, f"latn{b}", out)
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        found = [f for f in s.scalars(select(Finding).where(Finding.delivery_id == did)) if f.code == "E604"]
    assert [f.value for f in found] == [stranger["NATIONAL_CUST_ID"]]
    assert a in found[0].message_en + (found[0].expected or "")  # explained: led by network a
