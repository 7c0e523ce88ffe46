"""``exchange-server demo``: the whole exchange on one machine, in its three tiers, with realistic data.

HQ: SQLite and the archive in ``--data-dir``; an admin, an analyst and all 31 province
accounts (each with an API token and an SSH key pair, written under
``<data dir>/demo-credentials/``); the year's reporting calendar with the demo cycle open;
the national top-500 list published; and 30 provinces' sample deliveries uploaded over HTTP
to this very server and validated by the real pipeline.

Hubei (42) delivers through its own **province hub** (docs/tiers.md): a second server, in a
process of its own, with its own data directory (``<data dir>/hub-42/``: ``config.toml``,
SQLite, archive, credentials) and its own ports, whose upstream is the demo HQ under
Hubei's account there (``prov42``'s token). The hub syncs HQ's calendar, list and code
lists; each of its 14 local networks delivers its own part (``sample-data --by-network
42``), half over HTTP and half over SFTP, with the province agent's transports; the province
approves them all and the hub forwards one province delivery, which HQ accepts with the
hub's approval manifest. Then both keep serving until Ctrl-C.

The hub process is this same command with the hidden ``--hub-process`` flag: it learns
HQ's address from its standard input, reports on its standard output, and stops when that
input closes — so it never outlives the demo, however the demo ends.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .private_files import write_private
from .sftp.keys import new_ed25519

if TYPE_CHECKING:
    from .runtime import Runtime
    from .runtime.serve import Server

MARKER = ".kam-demo"
HUB_PROVINCE = "42"  # Hubei: 14 local networks in the sample model, Wuhan (027) the largest
HUB_ADMIN, HUB_ADMIN_PASSWORD = "hubei-admin", "hub-admin-demo-2026"
HUB_ANALYST, HUB_ANALYST_PASSWORD = "hubei-analyst", "hub-analyst-demo-2026"
PREFECTURE_USER, PREFECTURE_NETWORK, PREFECTURE_PASSWORD = "wuhan", "027", "prefecture-demo-2026"
WAIT_SECONDS = 300.0  # a verdict that takes longer than this means something is broken, not slow
RESULT = "KAM-DEMO-HUB "  # how the hub process's last line (its JSON report) starts


def _previous_month(today: dt.date) -> str:
    first = today.replace(day=1) - dt.timedelta(days=1)
    return f"{first.year}{first.month:02d}"


def _prepare_dir(data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise click.UsageError(f"{data_dir} holds data that is not a demo's; pick an empty --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("created by exchange-server demo; deleted and rebuilt by the next demo run\n")


def _next_port(port: int) -> int:
    """The hub's port beside HQ's: the next one, or any free one when HQ's is picked by the system."""
    return port + 1 if port else 0


def _wait_final(rt: Runtime, ids: Sequence[int], since: dt.datetime,
                timeout: float = WAIT_SECONDS) -> tuple[dict[str, int], float]:
    """Block until every delivery has its verdict: (status -> count, seconds from ``since`` to the last verdict)."""
    from .clock import as_utc
    from .submissions.models import Delivery

    end = time.monotonic() + timeout
    while True:
        with rt.db.session() as s:
            rows = [s.get(Delivery, i) for i in ids]
            if all(d is not None and d.is_final for d in rows):
                verdicts: dict[str, int] = {}
                last = since
                for d in rows:
                    assert d is not None
                    verdicts[d.status] = verdicts.get(d.status, 0) + 1
                    if d.validated_at is not None:
                        last = max(last, as_utc(d.validated_at))
                return verdicts, (last - since).total_seconds()
        if time.monotonic() > end:
            raise click.ClickException(f"no verdict after {timeout:.0f} s / {timeout:.0f} 秒后仍无结论")
        time.sleep(0.1)


def _summary(verdicts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items()))


class Readiness:
    """What ``/healthz`` says while the demo loads: 503 with the reason until its data is in, then the app's answer.

    A WSGI wrapper around the server's app (the server looks its app up per request), so a script
    that polls ``/healthz`` waits for the same moment as the banner: every sample delivery judged
    and the roll-up holding data. Everything else is served as usual meanwhile (the provinces'
    uploads come through it).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ready = threading.Event()
        self.reason = "loading the sample deliveries"
        self.reason_zh = "正在载入样例报送"

    @classmethod
    def install(cls, server: Server) -> Readiness:
        """Put the gate in front of a started server's app."""
        gate = cls(server.wsgi.wsgi_app)
        server.wsgi.wsgi_app = gate
        return gate

    def loading(self, reason: str, reason_zh: str) -> None:
        """Say what is being waited for (shown in the 503's body)."""
        self.reason, self.reason_zh = reason, reason_zh

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Answer ``/healthz`` with 503 until ready; pass everything else on."""
        if not self.ready.is_set() and environ.get("PATH_INFO") == "/healthz":
            body = json.dumps({"status": "starting", "ready": False, "reason": f"demo: {self.reason}",
                               "reason_zh": f"演示：{self.reason_zh}"}, ensure_ascii=False).encode("utf-8")
            start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                       ("Content-Length", str(len(body))), ("Retry-After", "2")])
            return [body]
        return self.app(environ, start_response)


def _wait_rollup(rt: Runtime, cycle_id: str, provinces: int, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """Block until the cycle's roll-up holds ``provinces`` provinces' figures (computing it also warms its cache)."""
    from .consolidation.rollups import RollupService

    end = time.monotonic() + timeout
    while True:
        with rt.db.session() as s:
            rollup = RollupService(s, rt.spec).rollup(cycle_id)
            if len(rollup.by_province) >= provinces and rollup.totals["networks"] > 0:
                return dict(rollup.totals)
        if time.monotonic() > end:
            raise click.ClickException(f"the roll-up of {cycle_id} has no data after {timeout:.0f} s / "
                                       f"{timeout:.0f} 秒后周期 {cycle_id} 的汇总仍无数据")
        time.sleep(0.2)


def _system_account(accounts: Any, name: str, party: str, creds: Path) -> str:
    """A party's agent account with an API token and an SSH key pair written under ``creds/<party>/``; the token."""
    acct = accounts.create(name, "province", party)
    secret, _ = accounts.create_token(acct, "demo")
    private, public = new_ed25519()
    accounts.add_ssh_key(acct, public, "demo")
    write_private(creds / party / "token", secret + "\n")
    write_private(creds / party / "id_ed25519", private)
    (creds / party / "id_ed25519.pub").write_text(public + "\n")
    return secret


# -- HQ (the demo's own process) -------------------------------------------------------------------
@dataclass
class HubProcess:
    """The hub's process as HQ's side sees it: its lines are echoed, its report is kept."""

    proc: subprocess.Popen[str]
    reports: queue.Queue[dict[str, Any] | None]

    @classmethod
    def start(cls, hub_dir: Path, host: str, port: int, sftp_port: int, cycle_id: str, scale: int, workers: int,
              exit_after_load: bool) -> HubProcess:
        """Start ``exchange-server demo --hub-process`` on the hub's data directory."""
        cmd = [sys.executable, "-m", "exchange_server.cli", "demo", "--hub-process", "--data-dir", str(hub_dir),
               "--host", host, "--port", str(port), "--sftp-port", str(sftp_port), "--cycle", cycle_id,
               "--scale", str(scale), "--workers", str(workers)] + (["--exit-after-load"] if exit_after_load else [])
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                bufsize=1)
        hub = cls(proc, queue.Queue())
        threading.Thread(target=hub._relay, name="hub-output", daemon=True).start()
        return hub

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                self.reports.put(json.loads(line[len(RESULT):]))
            else:
                click.echo(line.rstrip("\n"))
        self.reports.put(None)  # the process ended (its output closed)

    def tell(self, hq_url: str) -> None:
        """Give the hub HQ's address: it has been waiting for it to sync."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"hq_url": hq_url}) + "\n")
        self.proc.stdin.flush()

    def report(self, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
        """The hub's report once its prefectures' data is forwarded and judged by HQ."""
        try:
            got = self.reports.get(timeout=timeout)
        except queue.Empty:
            got = None
        if got is None:
            raise click.ClickException("the Hubei hub did not finish (its messages are above) / "
                                       "湖北省级枢纽未能完成（见上方信息）")
        return got

    def stop(self) -> None:
        """Close its input (it shuts down by itself), else end it; never leave it behind."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # it is gone already
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _hq(data_dir: Path, host: str, port: int, sftp_port: int, cycle_id: str, scale: int, workers: int,
        hub: HubProcess) -> tuple[Server, Readiness, dict[str, Any]]:
    """HQ with 30 provinces delivering directly and Hubei through its hub: its server, its /healthz gate, the hub's
    report (returned once the roll-up has every accepted province's figures)."""
    from province_agent.transport import HttpError, HttpTransport

    from .accounts.services import AccountService
    from .cycles.services import CycleService
    from .lists.services import ListService
    from .org.services import OrgService
    from .runtime import open_runtime
    from .runtime.serve import Server
    from .sample_data.generator import generate
    from .setup_service import initialise
    from .sftp.keys import host_key_line
    from .sftp.outbox import place_calendar, place_code_lists, place_list_slices
    from .submissions.models import Delivery, DeliveryApproval

    rt = open_runtime({"data_dir": str(data_dir), "host": host, "port": port, "sftp_port": sftp_port,
                       "worker_threads": workers})
    initialise(rt)
    creds = data_dir / "demo-credentials"
    samples = data_dir / "sample-deliveries"
    with rt.db.session() as s:
        provinces = [a.code for a in OrgService(s).provinces()]
    direct = [p for p in provinces if p != HUB_PROVINCE]  # Hubei's data reaches HQ through its hub
    generate(rt.spec, cycle_id, samples, provinces=direct, scale=scale, fmt="mixed", seed=2002)
    tokens: dict[str, str] = {}
    with rt.db.session() as s:
        accounts = AccountService(s, "demo")
        accounts.create("admin", "admin", display_name="HQ admin / 集团管理员", password="admin-demo-2026")
        accounts.create("analyst", "analyst", display_name="HQ analyst / 集团分析员", password="analyst-demo-2026")
        write_private(creds / "admin.password", "admin-demo-2026\n")
        write_private(creds / "analyst.password", "analyst-demo-2026\n")
        # A person at a province signs in to the pages with their own account (the system
        # accounts below carry the agents' tokens and keys; Hubei's are its hub's at HQ).
        accounts.create("hubei", "province", HUB_PROVINCE, display_name="湖北省信息化部 / Hubei IT",
                        password="province-demo-2026")
        write_private(creds / "hubei.password", "province-demo-2026\n")
        for code in provinces:
            tokens[code] = _system_account(accounts, f"prov{code}", code, creds)
        cycles = CycleService(s, rt.spec, "demo")
        calendar = sorted((samples / "00").glob(f"D_00_{cycle_id[:4]}_*.chk"))
        if calendar:
            cycles.import_calendar(calendar[0])
        if cycles.find(cycle_id) is None:
            cycles.create(cycle_id)
        # The demo's cycle takes deliveries now, whatever its real deadline.
        cycles.open(cycle_id)
        cycles.set_deadline(cycle_id, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
        lists = ListService(s, rt.archive, rt.spec, "demo")
        list_check = sorted((samples / "00").glob("D_00_*V*_00.chk"))
        lists_version = ""
        if list_check:
            loaded = lists.load(list_check[0])
            lists.publish(loaded)
            lists_version = loaded.version
    server = Server(rt, host, port, sftp_port=sftp_port).start()
    gate = Readiness.install(server)  # /healthz: 503 until the banner
    try:
        known_hosts = creds / "known_hosts"
        known_hosts.write_text(f"[{host}]:{server.sftp_port} {host_key_line(rt.settings)}\n")
        if list_check:
            place_list_slices(rt, lists_version)
        place_calendar(rt)
        place_code_lists(rt)
        hub.tell(server.url)  # the hub syncs from HQ while the provinces upload
        click.echo(f"HQ up at {server.url}; uploading {len(direct)} provinces' deliveries over HTTP "
                   f"(Hubei's comes through its hub) ...")
        started = dt.datetime.now(dt.timezone.utc)
        ids = []
        for prov in direct:
            files = sorted(p for p in (samples / prov).iterdir() if p.is_file())
            try:
                _status, receipt = HttpTransport(server.url, tokens[prov]).upload(files)
                ids.append(receipt["delivery_id"])
            except HttpError as exc:
                click.echo(f"  {prov}: upload refused: {exc}", err=True)
        gate.loading(f"judging {len(ids)} provinces' deliveries", f"正在校验 {len(ids)} 个省的报送")
        verdicts, seconds = _wait_final(rt, ids, started)
        click.echo(f"{len(ids)} deliveries judged at HQ in {seconds:.1f} s: {_summary(verdicts)}")
        gate.loading("waiting for Hubei's delivery through its hub", "正在等待湖北经省级枢纽的报送")
        report = hub.report()
        with rt.db.session() as s:  # what HQ itself holds of the forward
            d = s.get(Delivery, report["hq_delivery_id"])
            approval = s.get(DeliveryApproval, report["hq_delivery_id"])
            if d is None or d.party != HUB_PROVINCE:
                raise click.ClickException(f"HQ holds no delivery {report['hq_delivery_id']} of Hubei / "
                                           f"总部没有湖北的报送 {report['hq_delivery_id']}")
            click.echo(f"HQ: delivery {d.id} ({d.check_name}) from the Hubei hub {d.status}, approved at the "
                       f"province for {len(approval.networks) if approval else 0} local networks "
                       f"by {approval.forwarded_by if approval else '-'}")
        # Ready means the dashboard has figures: every accepted province in the roll-up.
        gate.loading("computing the roll-up", "正在计算汇总")
        accepted = verdicts.get("accepted", 0) + (report["hq_status"] == "accepted")
        totals = _wait_rollup(rt, cycle_id, accepted)
        click.echo(f"roll-up of {cycle_id} ready: {totals['networks']} of {totals['networks_expected']} local "
                   f"networks reported, group revenue {totals['income_amt']:,} yuan")
    except BaseException:
        server.shutdown()
        raise
    return server, gate, report


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True, help="HQ's HTTP port (the hub takes the next one).")
@click.option("--sftp-port", type=int, default=8022, show_default=True,
              help="HQ's SFTP port (the hub takes the next one).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-data/server"),
              show_default=True, help="Rebuilt on every run (only if it holds a previous demo).")
@click.option("--cycle", "cycle_id", default=None, help="Demo cycle (default: last month).")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--exit-after-load", is_flag=True, help="Stop after the sample deliveries are judged (for scripts).")
@click.option("--hub-process", is_flag=True, hidden=True, help="Run as the demo's Hubei hub (started by the demo).")
def demo(host: str, port: int, sftp_port: int, data_dir: Path, cycle_id: str | None, scale: int, workers: int,
         exit_after_load: bool, hub_process: bool) -> None:
    """Run an all-in-one demo: HQ, Hubei's province hub with its prefectures, 30 provinces delivering directly."""
    cycle_id = cycle_id or _previous_month(dt.date.today())
    if hub_process:
        _hub_main(data_dir.resolve(), host, port, sftp_port, cycle_id, scale, workers, exit_after_load)
        return
    data_dir = data_dir.resolve()
    _prepare_dir(data_dir)
    hub_dir = data_dir / f"hub-{HUB_PROVINCE}"
    hub_dir.mkdir()
    click.echo(f"generating sample data for cycle {cycle_id} (scale {scale}) ...")
    # The hub's process starts at once: its start-up and its networks' data take the other core.
    hub = HubProcess.start(hub_dir, host, _next_port(port), _next_port(sftp_port), cycle_id, scale, workers,
                           exit_after_load)
    try:
        server, gate, report = _hq(data_dir, host, port, sftp_port, cycle_id, scale, workers, hub)
    except BaseException:
        hub.stop()
        raise
    creds, samples = data_dir / "demo-credentials", data_dir / "sample-deliveries"
    hub_url, hub_creds = report["url"], report["creds"]
    gate.ready.set()  # before the banner says so: whoever reads "Ready" and asks /healthz gets 200
    click.echo(f"""
Key-account exchange demo / 大客户数据交换演示 — three tiers: HQ, a province hub, prefectures
HQ / 集团总部
  dashboard      {server.url}/login   (sign in as the analyst; admins: {server.url}/admin/)
  API            {server.url}/api/v1   (OpenAPI: {server.url}/api/v1/openapi.json)
  health         {server.url}/healthz
  admin          admin / admin-demo-2026
  analyst        analyst / analyst-demo-2026
  province user  hubei / province-demo-2026   (Hubei's deliveries, as its hub forwarded them: {server.url}/province/)
  provinces      prov11 ... prov65: API token and SSH key in {creds}/<province>/ (prov42's are its hub's)
  SFTP           sftp -P {server.sftp_port} -i {creds}/11/id_ed25519 -o UserKnownHostsFile={creds}/known_hosts prov11@{host}
                 (inbox/ for deliveries, outbox/ for receipts, feedback and the list slice)
  sample files   {samples}
  data           {data_dir} (SQLite database, archive)
Hubei province hub / 湖北省级枢纽   ({report['forward']} -> HQ delivery {report['hq_delivery_id']}, {report['hq_status']})
  pages          {hub_url}/login   (approval board and forwards: {hub_url}/hub/; console: {hub_url}/admin/)
  API            {hub_url}/api/v1
  hub admin      {HUB_ADMIN} / {HUB_ADMIN_PASSWORD}   (analyst: {HUB_ANALYST} / {HUB_ANALYST_PASSWORD}; the whole province)
  prefecture     {PREFECTURE_USER} / {PREFECTURE_PASSWORD}   (Wuhan, local network {PREFECTURE_NETWORK} only: {hub_url}/province/)
  prefectures    latn027 ... latn0728: API token and SSH key in {hub_creds}/<network>/
  SFTP           sftp -P {report['sftp_port']} -i {hub_creds}/0710/id_ed25519 -o UserKnownHostsFile={hub_creds}/known_hosts latn0710@{host}
  sample files   {report['samples']}   (each local network's own delivery)
  data           {hub_dir} (config.toml, SQLite database, archive)
Try:  curl -H "Authorization: Bearer $(cat {creds}/42/token)" {server.url}/api/v1/deliveries
      exchange-server --data-dir {hub_dir} hub status {cycle_id}
      exchange-server --data-dir {hub_dir} hub reconcile {report['forward_id']}
Ready / 就绪: the sample deliveries are judged and the roll-up has data ({server.url}/healthz answers 200 from now on).
Stop with Ctrl-C.""")
    if exit_after_load:
        hub.stop()
        server.shutdown()
        return
    server.on_stop.insert(0, hub.stop)  # the hub's forwarder talks to HQ: it stops first
    server.wait()


# -- the hub (its own process) ------------------------------------------------------------------------
def _say(text: str) -> None:
    """A progress line for the demo to echo (flushed: the demo reads it as it comes)."""
    click.echo(text)
    sys.stdout.flush()


def _hub_config(hub_dir: Path, host: str, port: int, sftp_port: int, hq_url: str, token_file: Path,
                workers: int) -> None:
    """The hub's ``config.toml``: what makes this server a province hub (docs/tiers.md)."""
    values: dict[str, Any] = {
        "hub_party": HUB_PROVINCE, "upstream_transport": "http", "upstream_url": hq_url,
        "upstream_token_file": str(token_file), "host": host, "port": port, "sftp_port": sftp_port,
        "worker_threads": workers,
        # The demo shows HQ's verdict within moments; a real hub asks every 5 s (the default).
        "hub_poll_seconds": 0.5, "hub_sync_seconds": 300.0, "sftp_scan_seconds": 0.5,
    }
    lines = ["# Written by exchange-server demo: Hubei's province hub, whose upstream is the demo HQ (docs/tiers.md).",
             "# Use it as any hub's: exchange-server --data-dir <this folder> hub status <cycle>"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]  # JSON strings and numbers are TOML
    (hub_dir / "config.toml").write_text("\n".join(lines) + "\n", "utf-8")


def _hub_main(hub_dir: Path, host: str, port: int, sftp_port: int, cycle_id: str, scale: int, workers: int,
              exit_after_load: bool) -> None:
    """The demo's Hubei hub: set up, synced from HQ, fed by its prefectures, forwarding; then serving."""
    from .sample_data.generator import generate_networks

    # Fourteen SFTP handshakes at once would bury the demo's progress lines.
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    samples = hub_dir / "sample-deliveries"
    # What `exchange-server sample-data --by-network 42` writes: each local network's own delivery.
    # HQ's files (00) reach the hub by its sync, not from here.
    from schemas import load_spec

    generate_networks(load_spec(), cycle_id, samples, HUB_PROVINCE, scale=scale, fmt="mixed", seed=2002)
    shutil.rmtree(samples / "00", ignore_errors=True)
    line = sys.stdin.readline()  # HQ's address, once HQ is up
    if not line:
        return  # the demo ended before HQ came up
    server = _hub_setup(hub_dir, host, port, sftp_port, json.loads(line)["hq_url"], workers)
    try:
        report = _hub_feed(server, hub_dir, samples, host, cycle_id)
    except BaseException:
        server.shutdown()
        raise
    _say(RESULT + json.dumps(report))
    if exit_after_load:
        server.shutdown()
        return

    def until_closed() -> None:  # the demo closes our input when it stops, however it stops
        sys.stdin.read()
        server.stop.set()

    threading.Thread(target=until_closed, name="demo-input", daemon=True).start()
    server.wait()


def _hub_setup(hub_dir: Path, host: str, port: int, sftp_port: int, hq_url: str, workers: int) -> Server:
    """The hub's config.toml, database, accounts and first sync from HQ; its server, started."""
    from .accounts.services import AccountService
    from .hub.sync import HubSync
    from .hub.upstream import open_upstream
    from .org.services import OrgService
    from .runtime import open_runtime
    from .runtime.serve import Server
    from .setup_service import initialise
    from .sftp.keys import host_key_line

    creds = hub_dir / "demo-credentials"
    # The province's credentials at HQ (prov42's token), in a file of the hub's own.
    token_file = hub_dir / "hq.token"
    write_private(token_file, (hub_dir.parent / "demo-credentials" / HUB_PROVINCE / "token").read_text())
    _hub_config(hub_dir, host, port, sftp_port, hq_url, token_file, workers)
    rt = open_runtime({"data_dir": str(hub_dir)})  # everything else from its config.toml
    initialise(rt)
    with rt.db.session() as s:
        accounts = AccountService(s, "demo")
        accounts.create(HUB_ADMIN, "admin", display_name="湖北省公司管理员 / Hubei hub admin", password=HUB_ADMIN_PASSWORD)
        accounts.create(HUB_ANALYST, "analyst", display_name="湖北省公司分析员 / Hubei hub analyst",
                        password=HUB_ANALYST_PASSWORD)
        accounts.create(PREFECTURE_USER, "province", PREFECTURE_NETWORK, display_name="武汉分公司 / Wuhan branch",
                        password=PREFECTURE_PASSWORD)
        write_private(creds / f"{HUB_ADMIN}.password", HUB_ADMIN_PASSWORD + "\n")
        write_private(creds / f"{HUB_ANALYST}.password", HUB_ANALYST_PASSWORD + "\n")
        write_private(creds / f"{PREFECTURE_USER}.password", PREFECTURE_PASSWORD + "\n")
        for area in OrgService(s).networks_of(HUB_PROVINCE):  # a prefecture's agent sends as its network
            _system_account(accounts, f"latn{area.code}", area.code, creds)
    # Down the tree: HQ's calendar, its list (cut into each network's part) and code lists.
    upstream = open_upstream(rt.settings)
    try:
        synced = HubSync(rt, upstream).run()
    finally:
        upstream.close()
    server = Server(rt, host, port, sftp_port=sftp_port).start()
    (creds / "known_hosts").write_text(f"[{host}]:{server.sftp_port} {host_key_line(rt.settings)}\n")
    _say(f"Hubei hub up at {server.url} (SFTP port {server.sftp_port}), synced from HQ: "
         f"{len(synced.cycles_added)} cycles, list {', '.join(synced.list_versions) or '-'}")
    return server


def _hub_feed(server: Server, hub_dir: Path, samples: Path, host: str, cycle_id: str) -> dict[str, Any]:
    """Hubei's prefectures deliver to the hub; the province approves them all and forwards; HQ judges."""
    from province_agent.transport import HttpTransport
    from province_agent.transport.sftp import SftpTransport

    from .hub.approval import ApprovalService
    from .hub.forward import ForwardService, wait_until_judged
    from .hub.forwarder import WAKE, upstream_resend_floor
    from .org.services import OrgService

    rt = server.runtime
    creds = hub_dir / "demo-credentials"
    with rt.db.session() as s:
        networks = [a.code for a in OrgService(s).networks_of(HUB_PROVINCE)]
    missing = [n for n in networks if not (samples / n).is_dir()]
    if missing:  # the sample model and the org tree disagree: say so rather than forward a partial province
        raise click.ClickException(f"no sample delivery for {', '.join(missing)} / 以下本地网没有样例数据："
                                   f"{', '.join(missing)}")
    channels = {net: "sftp" if i % 2 else "http" for i, net in enumerate(networks)}

    def deliver(net: str) -> int:
        """One prefecture's agent sending its network's delivery, over its channel."""
        files = sorted(p for p in (samples / net).iterdir() if p.is_file())
        if channels[net] == "sftp":
            sftp = SftpTransport(host, server.sftp_port or 0, f"latn{net}", str(creds / net / "id_ed25519"),
                                 str(creds / "known_hosts"), net, timeout=30, receipt_wait=60)
            try:
                receipt = sftp.send(files)
            finally:
                sftp.close()
            if receipt.delivery_id is None:
                raise click.ClickException(f"no delivery id in {net}'s SFTP receipt / {net} 的回执中没有报送编号")
            return receipt.delivery_id
        token = (creds / net / "token").read_text().strip()
        _status, answer = HttpTransport(server.url, token).upload(files)
        return int(answer["delivery_id"])

    started = dt.datetime.now(dt.timezone.utc)
    with ThreadPoolExecutor(max_workers=len(networks), thread_name_prefix="prefecture") as pool:
        ids = list(pool.map(deliver, networks))
    verdicts, seconds = _wait_final(rt, ids, started)
    over_sftp = sum(c == "sftp" for c in channels.values())
    _say(f"{len(ids)} local networks' deliveries judged at the hub in {seconds:.1f} s "
         f"({len(ids) - over_sftp} over HTTP, {over_sftp} over SFTP): {_summary(verdicts)}")

    # The province approves every network and forwards; the hub's forwarder sends it at once.
    started_at = time.monotonic()
    floor = upstream_resend_floor(rt, cycle_id)
    with rt.db.session() as s:
        approvals = ApprovalService(s, HUB_PROVINCE, rt.archive)
        approvals.approve(cycle_id, [n.latn_id for n in approvals.board(cycle_id)], HUB_ADMIN,
                          "演示：全部本地网审核通过 / demo: every local network approved")
        made = ForwardService(rt, s).build(cycle_id, HUB_ADMIN, upstream_max=floor)
        forward_id, check = made[0].id, made[0].check_name
    WAKE.set()
    try:
        judged = wait_until_judged(rt, forward_id, WAIT_SECONDS)
    except TimeoutError as exc:
        raise click.ClickException(f"{exc} / 总部未对 {check} 作出结论") from None
    hq_id, hq_status = judged.hq_delivery_id, judged.hq_status or ""
    _say(f"the hub approved {len(networks)} networks and forwarded {check}: HQ delivery {hq_id} {hq_status} "
         f"{time.monotonic() - started_at:.1f} s after the approval")
    return {"url": server.url, "sftp_port": server.sftp_port, "creds": str(creds), "samples": str(samples),
            "networks": networks, "channels": channels, "forward": check, "forward_id": forward_id,
            "hq_delivery_id": hq_id, "hq_status": hq_status}
