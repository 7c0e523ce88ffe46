"""``exchange-server demo``: the whole exchange on one machine, with realistic data.

SQLite and the archive in ``--data-dir``; an admin, an analyst and all 31 province
accounts (each with an API token and an SSH key pair, written under
``<data dir>/demo-credentials/``); the year's reporting calendar with the demo cycle open;
the national top-500 list published; and every province's sample delivery uploaded over
HTTP to this very server and validated by the real pipeline. Then it keeps serving.
"""
from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import click

from .private_files import write_private
from .sftp.keys import new_ed25519

MARKER = ".kam-demo"


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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--sftp-port", type=int, default=8022, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-data/server"),
              show_default=True, help="Rebuilt on every run (only if it holds a previous demo).")
@click.option("--cycle", "cycle_id", default=None, help="Demo cycle (default: last month).")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--exit-after-load", is_flag=True, help="Stop after the sample deliveries are judged (for scripts).")
def demo(host: str, port: int, sftp_port: int, data_dir: Path, cycle_id: str | None, scale: int, workers: int,
         exit_after_load: bool) -> None:
    """Run an all-in-one demo: SQLite, demo accounts, an open cycle, a published list, sample deliveries."""
    from province_agent.transport import HttpError, HttpTransport

    from .accounts.services import AccountService
    from .cycles.services import CycleService
    from .lists.services import ListService
    from .org.services import OrgService
    from .runtime import open_runtime
    from .runtime.serve import Server
    from .sample_data.generator import generate
    from .setup_service import initialise
    from .submissions.models import Delivery

    data_dir = data_dir.resolve()
    _prepare_dir(data_dir)
    cycle_id = cycle_id or _previous_month(dt.date.today())
    rt = open_runtime({"data_dir": str(data_dir), "host": host, "port": port, "sftp_port": sftp_port,
                       "worker_threads": workers})
    initialise(rt)
    creds = data_dir / "demo-credentials"
    samples = data_dir / "sample-deliveries"
    click.echo(f"generating sample data for cycle {cycle_id} (scale {scale}) ...")
    generate(rt.spec, cycle_id, samples, provinces=None, scale=scale, fmt="mixed", seed=2002)
    tokens: dict[str, str] = {}
    with rt.db.session() as s:
        accounts = AccountService(s, "demo")
        accounts.create("admin", "admin", display_name="HQ admin / 集团管理员", password="admin-demo-2026")
        accounts.create("analyst", "analyst", display_name="HQ analyst / 集团分析员", password="analyst-demo-2026")
        write_private(creds / "admin.password", "admin-demo-2026\n")
        write_private(creds / "analyst.password", "analyst-demo-2026\n")
        # A person at a province signs in to the pages with their own account (the system
        # accounts below carry the agents' tokens and keys).
        accounts.create("hubei", "province", "42", display_name="湖北省信息化部 / Hubei IT", password="province-demo-2026")
        write_private(creds / "hubei.password", "province-demo-2026\n")
        for area in OrgService(s).provinces():
            acct = accounts.create(f"prov{area.code}", "province", area.code)
            secret, _ = accounts.create_token(acct, "demo")
            tokens[area.code] = secret
            private, public = new_ed25519()
            accounts.add_ssh_key(acct, public, "demo")
            write_private(creds / area.code / "token", secret + "\n")
            write_private(creds / area.code / "id_ed25519", private)
            (creds / area.code / "id_ed25519.pub").write_text(public + "\n")
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
    from .sftp.keys import host_key_line
    from .sftp.outbox import place_calendar, place_code_lists, place_list_slices

    known_hosts = creds / "known_hosts"
    known_hosts.write_text(f"[{host}]:{server.sftp_port} {host_key_line(rt.settings)}\n")
    if list_check:
        place_list_slices(rt, lists_version)
    place_calendar(rt)
    place_code_lists(rt)
    click.echo(f"server up at {server.url}; uploading {len(tokens)} provinces' deliveries over HTTP ...")
    started = time.monotonic()
    ids = []
    for prov, secret in sorted(tokens.items()):
        folder = samples / prov
        files = sorted(p for p in folder.iterdir() if p.is_file())
        try:
            _status, receipt = HttpTransport(server.url, secret).upload(files)
            ids.append(receipt["delivery_id"])
        except HttpError as exc:
            click.echo(f"  {prov}: upload refused: {exc}", err=True)
    while True:
        with rt.db.session() as s:
            rows = [s.get(Delivery, i) for i in ids]
            if all(d is not None and d.is_final for d in rows):
                break
        time.sleep(0.5)
    verdicts: dict[str, int] = {}
    for d in rows:
        assert d is not None
        verdicts[d.status] = verdicts.get(d.status, 0) + 1
    click.echo(f"{len(ids)} deliveries judged in {time.monotonic() - started:.1f} s: "
               + ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items())))
    click.echo(f"""
Key-account exchange demo / 大客户数据交换演示
  dashboard      {server.url}/login   (sign in as the analyst; admins: {server.url}/admin/)
  API            {server.url}/api/v1   (OpenAPI: {server.url}/api/v1/openapi.json)
  health         {server.url}/healthz
  admin          admin / admin-demo-2026
  analyst        analyst / analyst-demo-2026
  province user  hubei / province-demo-2026   (Hubei's own deliveries: {server.url}/province/)
  provinces      prov11 ... prov65: API token and SSH key in {creds}/<province>/
  SFTP           sftp -P {server.sftp_port} -i {creds}/42/id_ed25519 -o UserKnownHostsFile={known_hosts} prov42@{host}
                 (inbox/ for deliveries, outbox/ for receipts, feedback and the list slice)
  sample files   {samples}
  data           {data_dir} (SQLite database, archive)
Try:  curl -H "Authorization: Bearer $(cat {creds}/42/token)" {server.url}/api/v1/deliveries
Stop with Ctrl-C.""")
    if exit_after_load:
        server.shutdown()
        return
    server.wait()
