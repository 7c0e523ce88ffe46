"""``exchange-server demo`` (what ``bash scripts/demo`` runs): HQ, 30 provinces directly, Hubei through its hub."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange_server.accounts.models import Account
from exchange_server.consolidation.models import IncomeFact
from exchange_server.hub.models import JUDGED, Approval, Forward
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.submissions.models import Delivery, DeliveryApproval

CYCLE = "202610"


@dataclass
class DemoRun:
    """One demo run to its end (``--exit-after-load``): its output and data directory."""

    stdout: str
    data: Path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo, once for this module's tests, on ports the system picks."""
    data = tmp_path_factory.mktemp("demo") / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "exchange_server.cli", "demo", "--data-dir", str(data),
                           "--port", "0", "--sftp-port", "0", "--exit-after-load", "--cycle", CYCLE],
                          check=False, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return DemoRun(proc.stdout, data)


@pytest.fixture
def open_data(demo_run: DemoRun) -> Iterator[dict[str, Runtime]]:
    """Runtimes on HQ's and the hub's data directories (the demo has stopped; its files remain)."""
    runtimes = {"hq": open_runtime({"data_dir": str(demo_run.data)}),
                "hub": open_runtime({"data_dir": str(demo_run.data / "hub-42")})}
    yield runtimes
    for rt in runtimes.values():
        rt.db.dispose()


def _fen(rt: Runtime, province: str) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(IncomeFact.income_amt), 0))
                            .where(IncomeFact.cycle == CYCLE, IncomeFact.current.is_(True),
                                   IncomeFact.prov_id == province)) or 0)


def test_demo_runs_the_whole_pipeline(demo_run: DemoRun, tmp_path: Path) -> None:
    """What the README's first command starts: the direct provinces' sample deliveries accepted over HTTP."""
    assert re.search(r"30 deliveries judged at HQ in [0-9.]+ s: 30 accepted", demo_run.stdout), demo_run.stdout
    creds = demo_run.data / "demo-credentials"
    assert (creds / "42" / "token").read_text().startswith("kam_")
    assert (creds / "42" / "id_ed25519").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert oct((creds / "42" / "id_ed25519").stat().st_mode)[-3:] == "600"
    assert "admin / admin-demo-2026" in demo_run.stdout
    # A second run rebuilds its own data directory, but never touches a foreign one.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.db").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "exchange_server.cli", "demo", "--data-dir", str(foreign),
                           "--exit-after-load"], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a demo's" in proc.stderr and (foreign / "precious.db").exists()
    assert not (foreign / "hub-42").exists()


def test_demo_hubei_reaches_hq_through_its_hub(demo_run: DemoRun, open_data: dict[str, Runtime]) -> None:
    """Hubei's 14 prefectures deliver to the hub (HTTP and SFTP), it approves and forwards; HQ counts the forward."""
    hq, hub = open_data["hq"], open_data["hub"]
    out = demo_run.stdout
    assert re.search(r"14 local networks' deliveries judged at the hub in [0-9.]+ s "
                     r"\(7 over HTTP, 7 over SFTP\): 14 accepted", out), out
    # The banner names the hub beside HQ, with its admin's and a prefecture's logins.
    assert re.search(r"Hubei province hub .*\n  pages +http://127\.0\.0\.1:[0-9]+/login", out), out
    assert "hubei-admin / hub-admin-demo-2026" in out and "wuhan / prefecture-demo-2026" in out
    hub_creds = demo_run.data / "hub-42" / "demo-credentials"
    assert (hub_creds / "0710" / "token").read_text().startswith("kam_")
    assert oct((hub_creds / "0710" / "id_ed25519").stat().st_mode)[-3:] == "600"
    assert (hub_creds / "known_hosts").read_text().startswith("[127.0.0.1]:")
    assert 'hub_party = "42"' in (demo_run.data / "hub-42" / "config.toml").read_text()

    # At the hub: every network's own delivery accepted, both channels used, all approved, one forward judged.
    with hub.db.session() as s:
        got = list(s.scalars(select(Delivery)))
        assert len(got) == 14 and {d.status for d in got} == {"accepted"}
        assert {d.channel for d in got} == {"http", "sftp"}
        assert all(len(d.party or "") in (3, 4) for d in got)  # networks' own parties, never the province's
        approvals = list(s.scalars(select(Approval).where(Approval.cycle == CYCLE)))
        assert len({a.latn_id for a in approvals}) == 14 and {a.state for a in approvals} == {"approved"}
        (fwd,) = s.scalars(select(Forward))
        assert (fwd.check_name, fwd.state, fwd.hq_status) == (f"P_42_{CYCLE}_00", JUDGED, "accepted")
        forwarded_to = fwd.hq_delivery_id

    # At HQ: Hubei's only delivery is the hub's forward, sent as prov42, with who approved what at the province.
    with hq.db.session() as s:
        hubei = list(s.scalars(select(Delivery).where(Delivery.party.in_(["42", "027", "0710"]))))
        assert [d.id for d in hubei] == [forwarded_to]
        d = hubei[0]
        assert (d.check_name, d.status, d.mode) == (f"P_42_{CYCLE}_00", "accepted", "P")
        account = s.get(Account, d.account_id)
        assert account is not None and account.name == "prov42"
        approval = s.get(DeliveryApproval, d.id)
        assert approval is not None and approval.hub == "42" and approval.forwarded_by == "hubei-admin"
        assert len(approval.networks) == 14 and all(n["by"] == "hubei-admin" for n in approval.networks)
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "accepted")) == 31
    # HQ's figures for Hubei are the sum of the prefectures' approved deliveries, to the fen.
    assert _fen(hq, "42") == _fen(hub, "42") > 0
