"""Three tiers as real processes: HQ and a province hub, each an ``exchange-server serve`` of its own.

Each server has its own folder (``<root>/data`` is its data directory, with a ``config.toml``
naming its database, ports and, for the hub, ``hub_party`` and its upstream), is started
with ``python -m exchange_server.cli --data-dir <data> serve`` and is ready when ``/healthz``
answers. It can be stopped (SIGTERM), killed (SIGKILL) and started again on the same data
directory and ports. Its command line is ``ServerProcess.cli``. Prefecture agents are
``province-agent`` processes (``AgentProcess``) configured for one local network, sending
to the hub over HTTP or over its embedded SFTP server.

``Relay`` is a TCP relay in front of HQ that can hold back HQ's answers to uploads, so a
test can kill the hub after HQ has taken a forward but before the hub heard so.

``build_tiers`` sets up HQ (cycle open, list published, the province's account) and a hub
of Hubei (42) whose prefectures have all delivered, for the fault tests; the end-to-end
test in ``tests/hub/test_three_tiers.py`` sets up its tiers with the CLI instead.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from province_agent.transport import HttpTransport
from tests.support.ports import free_port

PY = sys.executable
CYCLE = "202611"
PROVINCE = "42"
_n = itertools.count()


def clean_env() -> dict[str, str]:
    """This process's environment without any KAM_* setting (each tier reads its own config.toml)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate`` returns something truthy (returned); AssertionError after ``timeout`` s."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string


def beijing_in(days: float) -> str:
    """YYYYMMDDHHMMSS, Beijing time, ``days`` from now (deadlines on the command line)."""
    return (dt.datetime.now(dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(days=days)).strftime("%Y%m%d%H%M%S")


# -- databases -----------------------------------------------------------------------------------------
class Databases:
    """Where each tier's database lives: a SQLite file in its folder, or a database of its own on PostgreSQL."""

    def __init__(self, kind: str, pg: Any = None) -> None:
        self.kind, self.pg = kind, pg

    def url(self, name: str, root: Path) -> str:
        if self.kind == "sqlite":
            root.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{root / (name + '.db')}"
        return str(self.pg.create_database(f"kam_tier_{name}_{os.getpid()}_{next(_n)}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest) -> Databases:
    """Each tier on SQLite, or each on a database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return Databases("sqlite")
    pg = request.getfixturevalue("postgres")
    if pg is None:
        pytest.skip("PostgreSQL binaries not found (install postgresql; scripts/test does)")
    return Databases("postgresql", pg)


# -- a server process ----------------------------------------------------------------------------------
class ServerProcess:
    """One ``exchange-server serve`` in a process of its own, on its own data directory and ports."""

    def __init__(self, name: str, root: Path, database_url: str, sftp: bool = True, **settings: Any) -> None:
        self.name = name
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.sftp_port = free_port() if sftp else 0
        self.settings: dict[str, Any] = {
            "database_url": database_url, "host": "127.0.0.1", "port": self.port, "sftp_port": self.sftp_port,
            "sftp_enabled": sftp, "worker_poll_seconds": 0.05, "sftp_scan_seconds": 0.2, "job_lease_seconds": 30,
            **settings}
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._rt: Any = None
        self.write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        """``<data>/config.toml`` from ``settings``."""
        lines = [f"# {self.name}: written by tests/support/tier_processes.py"]
        lines += [f"{k} = {toml_value(v)}" for k, v in self.settings.items()]
        (self.data_dir / "config.toml").write_text("\n".join(lines) + "\n", "utf-8")

    # -- the command line ------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``exchange-server --data-dir <data> ARGS`` in a process of its own."""
        r = subprocess.run([PY, "-m", "exchange_server.cli", "--data-dir", str(self.data_dir), *args],
                           capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=self.root,
                           check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: exchange-server {' '.join(args)} exited {r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr[-4000:]}")
        return r

    def cli_json(self, *args: str) -> Any:
        """A command's ``--json`` answer."""
        return json.loads(self.cli(*args).stdout)

    # -- the process -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> ServerProcess:
        """``serve`` on the data directory; returns when /healthz answers."""
        assert not self.running, f"{self.name} is running already"
        with self.log.open("ab") as log:
            log.write(f"\n==== {self.name}: serve started {dt.datetime.now().isoformat()} ====\n".encode())
            self.proc = subprocess.Popen([PY, "-m", "exchange_server.cli", "--data-dir", str(self.data_dir), "serve"],
                                         stdout=log, stderr=subprocess.STDOUT, env=clean_env(), cwd=self.root,
                                         start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) while starting:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """Whether /healthz answers 200 now."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM (a clean shutdown), waited for; SIGKILL if it does not end."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- in this process: setting up before serving, observing ----------------------------------------
    def runtime(self) -> Any:
        """A runtime on the same data directory and database (config.toml), opened once."""
        if self._rt is None:
            from exchange_server.runtime import open_runtime

            self._rt = open_runtime({"data_dir": str(self.data_dir)})
        return self._rt

    def host_key_line(self) -> str:
        from exchange_server.sftp.keys import host_key_line

        return host_key_line(self.runtime().settings)

    def api(self, token: str) -> HttpTransport:
        return HttpTransport(self.url, token, timeout=30)

    def close(self) -> None:
        """Stop the process (killed if it hangs) and release this process's connections."""
        try:
            self.stop()
        finally:
            if self._rt is not None:
                self._rt.db.dispose()
                self._rt = None


# -- a relay in front of HQ --------------------------------------------------------------------------
class Relay:
    """A TCP relay on loopback to a server's port: passes everything, or holds back the answers to uploads.

    With ``hold_uploads`` set, a ``POST /api/v1/deliveries`` goes through to the server and
    is answered there, but the answer never reaches the client (``held`` is set when it came).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.hold_uploads = threading.Event()
        self.held = threading.Event()
        self.uploads = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()  # the server is down: the client sees the connection closed
            return
        upstream.settimeout(None)
        upload = threading.Event()

        def up() -> None:
            first = True
            try:
                while data := client.recv(1 << 16):
                    if first and data.startswith(b"POST /api/v1/deliveries"):
                        upload.set()
                        with self._lock:
                            self.uploads += 1
                    first = False
                    upstream.sendall(data)
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        def down() -> None:
            try:
                while data := upstream.recv(1 << 16):
                    if upload.is_set() and self.hold_uploads.is_set():
                        self.held.set()  # the server answered; the client never hears it
                        continue
                    client.sendall(data)
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threads = [threading.Thread(target=up, daemon=True), threading.Thread(target=down, daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()


# -- a prefecture's agent -------------------------------------------------------------------------------
class AgentProcess:
    """A local network's ``province-agent`` (party = its area code, server = the hub), run as a process."""

    def __init__(self, spec: Any, home: Path, network: str, hub: ServerProcess, token: str,
                 transport: str = "http", user: str = "", private_key: bytes | None = None) -> None:
        self.spec, self.home, self.network, self.hub, self.transport = spec, home, network, hub, transport
        home.mkdir(parents=True, exist_ok=True)
        self.exports = home / "exports"
        self.config = home / "kam-agent.toml"
        (home / "token").write_text(token + "\n")
        (home / "token").chmod(0o600)
        if private_key is not None:
            (home / "id_ed25519").write_bytes(private_key)
            (home / "id_ed25519").chmod(0o600)
            (home / "known_hosts").write_text(f"[127.0.0.1]:{hub.sftp_port} {hub.host_key_line()}\n")
        self.user = user

    def set_exports(self, folder: Path) -> None:
        """The network's exports are the data files of ``folder`` (already in the standard's format)."""
        from schemas.conventions import CheckFile, DataFileName

        check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
        shutil.rmtree(self.exports, ignore_errors=True)
        self.exports.mkdir(parents=True)
        units = []
        for e in check.entries:
            shutil.copy2(folder / e.name, self.exports / e.name)
            units.append(self.spec.unit(DataFileName.parse(e.name).unit))
        lines = ["[agent]", f'party = "{self.network}"', 'state_dir = "state"', 'export_dir = "exports"', "",
                 "[server]", f'transport = "{self.transport}"', f'url = "{self.hub.url}"', 'token_file = "token"',
                 "timeout = 60", "", "[sftp]", 'host = "127.0.0.1"', f"port = {self.hub.sftp_port or 22}",
                 f'user = "{self.user}"', 'key_file = "id_ed25519"', 'known_hosts = "known_hosts"', "",
                 "[retry]", "attempts = 3", "base_seconds = 0.2", "max_seconds = 1", "verdict_timeout = 60", "",
                 "[output]", 'format = "txt"', f'encoding = "{check.encoding}"', f'delimiter = "{check.delimiter_name}"']
        for unit in sorted(units, key=lambda u: u.code):
            lines += ["", f"[units.{unit.name}]", f'source = "P_{{party}}_{{cycle}}_{unit.code}_*.txt"',
                      'format = "spec"']
        self.config.write_text("\n".join(lines) + "\n", "utf-8")

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``province-agent --config <home>/kam-agent.toml ARGS``."""
        return subprocess.run([PY, "-m", "province_agent.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=self.home,
                              check=False)

    def status(self) -> dict[str, Any]:
        r = self.run("--json", "status")
        assert r.returncode == 0, r.stdout + r.stderr
        return dict(json.loads(r.stdout))

    def read_outbox(self, name: str) -> bytes | None:
        """A file of the network's outbox at the hub, read over SFTP with its own key (None if absent)."""
        import paramiko

        assert self.transport == "sftp"
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.home / "known_hosts"))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", self.hub.sftp_port, username=self.user,
                       key_filename=str(self.home / "id_ed25519"), allow_agent=False, look_for_keys=False, timeout=15)
        try:
            sftp = client.open_sftp()
            try:
                with sftp.open(f"outbox/{name}", "rb") as fh:
                    return bytes(fh.read())
            except FileNotFoundError:
                return None
        finally:
            client.close()


# -- the deliveries and their figures ---------------------------------------------------------------------
MONEY = ("INCOME_AMT", "INCOME_YTD_AMT", "INCOME_LY_AMT")
COUNTS = ("CUST_CNT", "NEW_CUST_CNT", "LOST_CUST_CNT", "TOP500_CUST_CNT", "MANAGER_CNT")


def summary_sums(spec: Any, folders: list[Path]) -> dict[str, Decimal]:
    """The 32001 figures of the given network deliveries, summed exactly (Decimal) from their files."""
    from tests.support.tiers import read_delivery

    out = {k: Decimal(0) for k in MONEY + COUNTS}
    for folder in folders:
        for row in read_delivery(spec, folder).get("32001", []):
            for k in out:
                out[k] += Decimal(row[k] or "0")
    return out


def rollup_province(hq: ServerProcess, analyst_token: str, province: str = PROVINCE) -> dict[str, Decimal]:
    """HQ's roll-up figures for a province, as an analyst reads them from the report API."""
    doc = hq.api(analyst_token).get_json(f"/api/v1/reports/{CYCLE}")
    [row] = [r for r in doc["by_province"] if r["prov_id"] == province]
    return {k: Decimal(str(row[k.lower()])) for k in MONEY + COUNTS}


def rollup_networks(hq: ServerProcess, analyst_token: str, province: str = PROVINCE) -> dict[str, Decimal]:
    """HQ's revenue per local network of a province (by_network), as an analyst reads it."""
    doc = hq.api(analyst_token).get_json(f"/api/v1/reports/{CYCLE}")
    return {r["latn_id"]: Decimal(str(r["income_amt"])) for r in doc["by_network"] if r["prov_id"] == province}


def network_income(spec: Any, folder: Path) -> Decimal:
    """A network delivery's revenue this period (32001), from its file."""
    return summary_sums(spec, [folder])["INCOME_AMT"]


def edit_rows(spec: Any, folder: Path, out: Path, resend: int,
              edit: Callable[[str, dict[str, str]], dict[str, str]]) -> Path:
    """``folder``'s delivery written again as resend ``resend`` with every row passed through ``edit``."""
    from tests.support.tiers import rewrite_delivery

    return rewrite_delivery(spec, folder, out, resend, edit=edit)


def with_stray_space(spec: Any, folder: Path, out: Path, resend: int = 0) -> tuple[Path, str, int]:
    """The delivery with a trailing space in one customer's name (W301, a warning HQ will also find).

    Returns the folder, the customer and the line of its row in the 31201 file.
    """
    from tests.support.tiers import read_delivery

    rows = read_delivery(spec, folder)["31201"]
    target = rows[len(rows) // 2]["NATIONAL_CUST_ID"]

    def edit(unit: str, row: dict[str, str]) -> dict[str, str]:
        if unit == "31201" and row["NATIONAL_CUST_ID"] == target:
            return {**row, "CUST_NAME": row["CUST_NAME"] + " "}
        return row

    line = next(i for i, r in enumerate(rows, start=1) if r["NATIONAL_CUST_ID"] == target)
    return edit_rows(spec, folder, out, resend, edit), target, line


def with_more_income(spec: Any, folder: Path, out: Path, resend: int, yuan: str = "1.23") -> Path:
    """A correction: this period's (and the year's) revenue up by ``yuan`` in 32001 and one 32003 billing item."""
    extra = Decimal(yuan)
    done: set[str] = set()

    def edit(unit: str, row: dict[str, str]) -> dict[str, str]:
        if unit in ("32001", "32003") and unit not in done:
            done.add(unit)
            return {**row, "INCOME_AMT": str(Decimal(row["INCOME_AMT"]) + extra),
                    "INCOME_YTD_AMT": str(Decimal(row["INCOME_YTD_AMT"]) + extra)}
        return row

    return edit_rows(spec, folder, out, resend, edit)


# -- HQ and a hub, set up, every prefecture delivered --------------------------------------------------------
@dataclass
class Tiers:
    """A running HQ and hub of Hubei (42) and its prefectures' deliveries."""

    spec: Any
    root: Path
    hq: ServerProcess
    hub: ServerProcess
    folders: dict[str, Path]  # network -> its delivery as generated (what counts unless replaced)
    tokens: dict[str, str]  # network -> its prefecture account's token at the hub
    province_token: str  # Hubei's token at HQ (the hub's credentials)
    analyst_token: str  # an HQ analyst's
    relay: Relay | None = None
    delivered: dict[str, int] = field(default_factory=dict)  # network -> its latest delivery id at the hub
    agents: dict[str, AgentProcess] = field(default_factory=dict)  # the networks that run their own agent
    synced: dict[str, Any] = field(default_factory=dict)  # what ``hub sync`` said it fetched

    @property
    def networks(self) -> list[str]:
        return sorted(self.folders)

    def with_customers(self) -> list[str]:
        """The networks whose delivery carries customers (31201)."""
        return [n for n in self.networks if any(self.folders[n].glob("*_31201_*"))]

    # -- the hub's prefectures ------------------------------------------------------------------------------
    def upload(self, network: str, folder: Path) -> int:
        """The network's delivery sent to the hub over HTTP (the agent's transport); its id there."""
        files = sorted(folder.iterdir(), key=lambda p: (p.suffix == ".chk", p.name))
        _status, receipt = self.hub.api(self.tokens[network]).upload(files)
        self.delivered[network] = int(receipt["delivery_id"])
        return int(receipt["delivery_id"])

    def at_hub(self, network: str, delivery_id: int | None = None) -> dict[str, Any]:
        """A delivery's JSON at the hub, as its prefecture reads it."""
        did = delivery_id or self.delivered[network]
        return dict(self.hub.api(self.tokens[network]).get_json(f"/api/v1/deliveries/{did}"))

    def judged_at_hub(self, network: str, delivery_id: int | None = None, timeout: float = 90) -> dict[str, Any]:
        def judged() -> dict[str, Any] | None:
            d = self.at_hub(network, delivery_id)
            return d if d["status"] not in ("queued", "validating") else None

        return dict(wait_until(judged, timeout, f"the hub's verdict on {network}'s delivery"))

    def board(self) -> dict[str, dict[str, Any]]:
        """``hub status`` per network."""
        return {r["network"]: r for r in self.hub.cli_json("hub", "status", CYCLE, "--json")}

    def forwards(self) -> list[dict[str, Any]]:
        """``hub forwards --json``, newest first."""
        return list(self.hub.cli_json("hub", "forwards", "--json"))

    # -- HQ --------------------------------------------------------------------------------------------------
    def at_hq(self) -> list[dict[str, Any]]:
        """The province's deliveries of the cycle at HQ, as the hub's account there lists them."""
        page = self.hq.api(self.province_token).get_json("/api/v1/deliveries", {"cycle": CYCLE, "per_page": 500})
        return sorted(page["items"], key=lambda d: d["delivery_id"])

    def hq_delivery(self, delivery_id: int, token: str | None = None) -> dict[str, Any]:
        return dict(self.hq.api(token or self.province_token).get_json(f"/api/v1/deliveries/{delivery_id}"))

    def wait_judged_forward(self, check: str, timeout: float = 120, network: str | None = None) -> dict[str, Any]:
        """The hub's forward ``check`` (``hub forwards``) once HQ's verdict is back at the hub.

        Watched through the API, as a prefecture whose data it carries sees it (``hq`` in its
        delivery JSON): the first network of the forward unless ``network`` is given.
        """
        net = network or self.networks[0]

        def judged() -> bool:
            return any(a["forward"] == check and a["state"] == "judged" for a in self.at_hub(net)["hq"])

        wait_until(judged, timeout, f"HQ's verdict on {check} at the hub")
        return next(f for f in self.forwards() if f["check"] == check)

    def close(self) -> None:
        for server in (self.hub, self.hq):
            server.close()
        if self.relay is not None:
            self.relay.close()


def build_tiers(spec: Any, root: Path, databases: Databases, relay: bool = False,
                edit: Callable[[str, Path, Path], Path] | None = None, agents: dict[str, str] | None = None,
                **hub_settings: Any) -> Tiers:
    """HQ (cycle open, list published, Hubei's account, an analyst) and Hubei's hub, both serving, the
    hub synced; every local network of 42 has delivered to the hub over HTTP and been accepted there —
    except the networks in ``agents`` (network -> http | sftp), which deliver with their own agent
    (``Tiers.agents``, not run yet).

    HQ is set up in this process on its database; the hub with its command line (``init``, the
    agent networks' accounts, tokens and SSH keys, ``hub sync``), the other networks' accounts in
    this process. ``edit(network, folder, out)`` may replace a network's delivery before it is sent
    (returns the folder to send). ``relay``: the hub reaches HQ through a ``Relay``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from exchange_server.accounts.services import AccountService
    from exchange_server.setup_service import initialise
    from tests.support.tiers import hq_with_list, network_accounts

    agents = dict(agents or {})
    hq = ServerProcess("hq", root / "hq", databases.url("hq", root / "hq"), sftp=False)
    front: Relay | None = None
    token_file = root / "hub" / "hq.token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    # The hub's upstream is HQ's port (or the relay's, known only once HQ is known: a port picked now).
    hq_port_for_hub = hq.port
    if relay:
        front = Relay(hq.port)
        hq_port_for_hub = front.port
    settings = {"hub_party": PROVINCE, "upstream_url": f"http://127.0.0.1:{hq_port_for_hub}",
                "upstream_token_file": str(token_file), "upstream_timeout": 20.0, "hub_poll_seconds": 0.3,
                "hub_sync_seconds": 2.0, **hub_settings}
    hub = ServerProcess("hub", root / "hub", databases.url("hub", root / "hub"), **settings)
    tiers = Tiers(spec, root, hq, hub, {}, {}, "", "", front)
    try:
        with ThreadPoolExecutor(max(1, len(agents))) as pool:
            hub_init = pool.submit(hub.cli, "init")  # the hub's database, while HQ is set up here
            rt = hq.runtime()
            initialise(rt)
            generated = {net: folder for folder, net in hq_with_list(rt, root / "gen").items()}
            with rt.db.session() as s:
                svc = AccountService(s, "test")
                tiers.province_token, _ = svc.create_token(svc.create("hubei", "province", PROVINCE), "hub")
                tiers.analyst_token, _ = svc.create_token(svc.create("hq-analyst", "analyst"), "test")
            token_file.write_text(tiers.province_token + "\n")
            token_file.chmod(0o600)
            hq.start()
            hub_init.result()
            homes = {net: root / "agents" / net for net in agents}
            made = [pool.submit(_agent_account, hub, net, homes[net], transport) for net, transport in agents.items()]
            tiers.synced = json.loads(hub.cli("hub", "sync").stdout)
            tiers.tokens = network_accounts(hub.runtime(), sorted(set(generated) - set(agents)))
            keys = dict(f.result() for f in made)
        tiers.tokens.update({net: (homes[net] / "token").read_text().strip() for net in agents})
        hub.start()
        tiers.agents = {net: AgentProcess(spec, homes[net], net, hub, tiers.tokens[net], transport, f"latn{net}",
                                          keys[net]) for net, transport in agents.items()}
        for net in sorted(generated):
            folder = generated[net]
            if edit is not None:
                folder = edit(net, folder, root / "sent" / net)
            tiers.folders[net] = folder
            if net not in agents:
                tiers.upload(net, folder)
        for net in sorted(set(generated) - set(agents)):
            d = tiers.judged_at_hub(net)
            assert d["status"] in ("accepted", "accepted_with_warnings"), (net, d["status"], d["counts"])
    except BaseException:
        tiers.close()
        raise
    return tiers


def _agent_account(hub: ServerProcess, net: str, home: Path, transport: str) -> tuple[str, bytes | None]:
    """A prefecture's account at the hub, with the command line: its token in the agent's folder, and for
    SFTP its public key (the private one stays with the agent); (network, private key)."""
    from exchange_server.sftp.keys import new_ed25519

    home.mkdir(parents=True, exist_ok=True)
    hub.cli("account", "create", f"latn{net}", "--role", "province", "--party", net)
    hub.cli("token", "create", f"latn{net}", "--out", str(home / "token"))
    if transport != "sftp":
        return net, None
    private, public = new_ed25519()
    (home / "id_ed25519.pub").write_text(public + "\n")
    hub.cli("sshkey", "add", f"latn{net}", str(home / "id_ed25519.pub"))
    return net, private
