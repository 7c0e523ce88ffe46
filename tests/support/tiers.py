"""Three tiers in tests: an HQ, a province hub forwarding to it, prefecture deliveries for the hub."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.cycles.services import CycleService
from exchange_server.hub.forwarder import Forwarder
from exchange_server.hub.models import JUDGED, Forward
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.sample_data.generator import generate_networks
from exchange_server.setup_service import initialise
from schemas import Spec

PROVINCE = "42"


def hq_with_list(rt: Runtime, out: Path, cycle: str = "202611", scale: int = 1) -> dict[Path, str]:
    """HQ: the cycle open, the province's account, the list published; returns each network's delivery folder."""
    result = generate_networks(rt.spec, cycle, out, PROVINCE, scale=scale, fmt="txt")
    with rt.db.session() as s:
        CycleService(s, rt.spec, "test").create(cycle, state="open",
                                                deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=20))
    list_check = next(p for p in result.deliveries if p.name.startswith("D_00_") and "V" in p.name)
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "test")
        svc.publish(svc.load(list_check), "test", confirm_impact=True)
    return {p.parent: p.parent.name for p in result.deliveries if p.name.startswith("P_")}


def province_token(rt: Runtime, name: str = "hubei", party: str = PROVINCE) -> str:
    """A province account at HQ (the hub's credentials there); its API token."""
    with rt.db.session() as s:
        svc = AccountService(s, "test")
        secret, _ = svc.create_token(svc.create(name, "province", party), "test")
    return secret


def open_hub(root: Path, database_url: str, hq_url: str, token: str, **settings: Any) -> Runtime:
    """A province hub for 42 whose upstream is ``hq_url`` (the token kept in a file of its own)."""
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "hq.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    rt = open_runtime({"data_dir": str(root / "data"), "database_url": database_url, "hub_party": PROVINCE,
                       "upstream_url": hq_url, "upstream_token_file": str(token_file), "worker_poll_seconds": 0.05,
                       "sftp_port": 0, "sftp_scan_seconds": 0.2, "hub_poll_seconds": 0.2, **settings})
    initialise(rt)
    return rt


def network_accounts(rt: Runtime, networks: list[str]) -> dict[str, str]:
    """One prefecture account per network at the hub; network -> token."""
    out = {}
    with rt.db.session() as s:
        svc = AccountService(s, "test")
        for net in networks:
            secret, _ = svc.create_token(svc.create(f"latn{net}", "province", net), "test")
            out[net] = secret
    return out


def networks_of(spec: Spec, cycle: str = "202611") -> list[str]:
    """The province's local networks as the sample model has them."""
    from exchange_server.sample_data.generator import SampleModel
    from schemas.conventions import Cycle

    return [n.code for n in SampleModel(spec).networks(PROVINCE, Cycle.parse(cycle).begin)]


def read_delivery(spec: Spec, folder: Path) -> dict[str, list[dict[str, str]]]:
    """A text delivery's rows per unit code (field id -> text), as written."""
    from schemas.conventions import CheckFile, DataFileName
    from schemas.validation.readers import text_lines

    check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
    out: dict[str, list[dict[str, str]]] = {}
    for e in check.entries:
        unit = spec.unit(DataFileName.parse(e.name).unit)
        rows = out.setdefault(unit.code, [])
        for line in text_lines(folder / e.name, check.encoding):
            rows.append(dict(zip(unit.field_ids, line.rstrip("\r").split(check.delimiter))))
    return out


def rewrite_delivery(spec: Spec, folder: Path, out: Path, resend: int, units: list[str] | None = None,
                     edit: Any = None, fmt: str = "txt") -> Path:
    """The delivery in ``folder`` sent again as resend ``resend`` (only ``units``; rows through ``edit``; as ``fmt``)."""
    from schemas.conventions import CheckFile
    from schemas.writer import DeliveryWriter

    check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
    w = DeliveryWriter(spec, out, "P", check.party, check.period, resend, encoding=check.encoding,
                       delimiter=check.delimiter_name)
    for code, rows in read_delivery(spec, folder).items():
        if units is not None and code not in units:
            continue
        with w.unit(code, fmt=fmt) as u:
            for row in rows:
                u.write(edit(code, row) if edit is not None else row)
    w.close()
    return out


def until_judged(hub: Runtime, forwarder: Forwarder, timeout: float = 60) -> Forward:
    """Run the hub's forwarder until HQ has judged its newest forward; that forward (detached)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        forwarder.run_once(sync=False)
        with hub.db.session() as s:
            f = s.scalars(select(Forward).order_by(Forward.id.desc())).first()
            if f is not None and f.state == JUDGED:
                s.expunge(f)
                return f
        time.sleep(0.2)
    raise AssertionError("HQ did not judge the forward")
