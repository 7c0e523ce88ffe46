"""``exchange-server``: the HQ server's command line.

Every command reads the same configuration (``--data-dir``/``KAM_DATA_DIR``,
``KAM_DATABASE_URL``, ``<data dir>/config.toml``). Domain errors print one line, in English
and Chinese, and exit 1; usage errors exit 2.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .errors import ExchangeError


class ExchangeGroup(click.Group):
    """A click group that turns the server's errors into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; ExchangeError becomes ``error: ...`` and exit status 1."""
        try:
            return super().invoke(ctx)
        except ExchangeError as exc:
            click.echo(f"error [{exc.code}]: {exc.message} / {exc.message_zh}", err=True)
            if exc.errors:
                click.echo(json.dumps(exc.errors, ensure_ascii=False, indent=2, default=str)[:4000], err=True)
            sys.exit(1)


def _runtime(ctx: click.Context) -> Any:
    from .runtime import open_runtime

    obj = ctx.find_root().obj or {}
    if "runtime" not in obj:
        obj["runtime"] = open_runtime({k: v for k, v in obj.items() if v is not None})
        ctx.find_root().obj = obj
    return obj["runtime"]


def _data_dir_option(f: Any) -> Any:
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help="Data directory (database, archive, keys). Default: ./instance or KAM_DATA_DIR.")(f)


@click.group(cls=ExchangeGroup)
@click.version_option(package_name="kam-exchange")
@_data_dir_option
@click.option("--database-url", default=None, help="SQLAlchemy URL; default SQLite in the data directory.")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """The key-account exchange server (Group HQ side)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"data_dir": data_dir, "database_url": database_url}


def _override(ctx: click.Context, **values: Any) -> None:
    obj = ctx.find_root().obj
    for k, v in values.items():
        if v is not None:
            obj[k] = v


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create or migrate the database and load the org tree (safe to repeat)."""
    from .setup_service import initialise

    rt = _runtime(ctx)
    result = initialise(rt)
    click.echo(f"database {rt.db.url.split('@')[-1]} at revision {result['revision']} "
               f"(was {result['revision_before'] or 'empty'}); areas +{result['areas_added']} "
               f"~{result['areas_updated']}")


def _serve_options(f: Any) -> Any:
    options: list[Any] = [
        click.option("--host", default=None, help="Address to listen on (default 127.0.0.1)."),
        click.option("--port", type=int, default=None, help="HTTP port (default 8080; 0 picks a free one)."),
        click.option("--sftp-port", type=int, default=None, help="SFTP port (default 8022)."),
        _data_dir_option,
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help="Ingestion worker threads in this process (default 1; 0 = none)."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


@main.command()
@_serve_options
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, sftp_port: int | None, data_dir: str | None,
          workers: int | None) -> None:
    """Run the HTTP API and the ingestion workers until interrupted."""
    from .runtime.serve import Server
    from .setup_service import initialise

    _override(ctx, host=host, port=port, sftp_port=sftp_port, data_dir=data_dir, worker_threads=workers)
    rt = _runtime(ctx)
    initialise(rt)
    server = Server(rt, rt.settings.host, rt.settings.port).start()
    from .sftp.keys import host_key_line

    sftp = f"SFTP on port {server.sftp_port} (host key {host_key_line(rt.settings)}); " if server.sftp else ""
    dropbox = f"drop-box inboxes under {rt.settings.dropbox_root}; " if rt.settings.dropbox_root else ""
    click.echo(f"exchange-server listening on {server.url} (API {server.url}/api/v1, health {server.url}/healthz); "
               f"{sftp}{dropbox}{rt.settings.worker_threads} ingestion worker(s); data in {rt.settings.data_path}",
               err=True)
    server.wait()


@main.command()
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--drain", is_flag=True, help="Process what is queued, then exit.")
@click.pass_context
def worker(ctx: click.Context, threads: int, drain: bool) -> None:
    """Run ingestion workers only (more processes can share the queue)."""
    import threading

    from .ingestion.worker import IngestionWorker, recover, sweep_forever

    rt = _runtime(ctx)
    if drain:
        n = IngestionWorker(rt, "drain").drain()
        click.echo(f"processed {n} deliver{'y' if n == 1 else 'ies'}")
        return
    recover(rt)  # jobs this host's dead processes held, and their debris
    stop = threading.Event()
    pool = [threading.Thread(target=IngestionWorker(rt, f"w{i}").run_forever, args=(stop,), daemon=True)
            for i in range(threads)]
    threading.Thread(target=sweep_forever, args=(rt, stop), daemon=True).start()
    for t in pool:
        t.start()
    try:
        while any(t.is_alive() for t in pool):
            stop.wait(1)
    except KeyboardInterrupt:
        stop.set()


# -- accounts and credentials -------------------------------------------------------------
@main.group(cls=ExchangeGroup)
def account() -> None:
    """Accounts: provinces, analysts, admins."""


@account.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["province", "analyst", "admin"]), required=True)
@click.option("--party", default=None, help="Province (42) or local network (0668) a province account sends as.")
@click.option("--display-name", default="")
@click.option("--password", default=None, help="Set a password (else none: token or key only).")
@click.pass_context
def account_create(ctx: click.Context, name: str, role: str, party: str | None, display_name: str,
                   password: str | None) -> None:
    """Create an account."""
    from .accounts.services import AccountService

    rt = _runtime(ctx)
    with rt.db.session() as s:
        svc = AccountService(s, "cli")
        a = svc.create(name, role, party, display_name)
        if password:
            svc.set_password(a, password)
        click.echo(f"created {role} account {name}" + (f" for {party}" if party else ""))


@account.command("list")
@click.pass_context
def account_list(ctx: click.Context) -> None:
    """List accounts."""
    from .accounts.services import AccountService

    rt = _runtime(ctx)
    with rt.db.session() as s:
        for a in AccountService(s).list():
            tokens = sum(1 for t in a.tokens if t.revoked_at is None)
            keys = sum(1 for k in a.ssh_keys if k.revoked_at is None)
            click.echo(f"{a.name:<16} {a.role:<9} {a.party or '-':<5} {'active' if a.active else 'disabled':<9} "
                       f"tokens={tokens} keys={keys} {a.display_name}")


def _set_active(ctx: click.Context, name: str, active: bool) -> None:
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        svc = AccountService(s, "cli")
        svc.set_active(svc.get(name), active)
    click.echo(f"{'enabled' if active else 'disabled'} {name}")


@account.command("disable")
@click.argument("name")
@click.pass_context
def account_disable(ctx: click.Context, name: str) -> None:
    """Disable an account: its tokens and keys stop working at once."""
    _set_active(ctx, name, False)


@account.command("enable")
@click.argument("name")
@click.pass_context
def account_enable(ctx: click.Context, name: str) -> None:
    """Enable a disabled account."""
    _set_active(ctx, name, True)


@account.command("password")
@click.argument("name")
@click.password_option()
@click.pass_context
def account_password(ctx: click.Context, name: str, password: str) -> None:
    """Set an account's password (prompts)."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        svc = AccountService(s, "cli")
        svc.set_password(svc.get(name), password)
    click.echo(f"password set for {name}")


@main.group(cls=ExchangeGroup)
def token() -> None:
    """API tokens (shown once when created; only their hash is kept)."""


@token.command("create")
@click.argument("account_name")
@click.option("--label", default="")
@click.option("--days", type=int, default=365, show_default=True, help="Valid for this many days (0 = no expiry).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the token to this file (mode 600) instead of printing it.")
@click.pass_context
def token_create(ctx: click.Context, account_name: str, label: str, days: int, out: Path | None) -> None:
    """Create an API token for an account."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        svc = AccountService(s, "cli")
        secret, tok = svc.create_token(svc.get(account_name), label, days or None)
        tid = tok.id
    if out:
        from .private_files import write_private

        write_private(out, secret + "\n")
        click.echo(f"token {tid} for {account_name} written to {out}")
    else:
        click.echo(secret)


@token.command("list")
@click.argument("account_name", required=False)
@click.pass_context
def token_list(ctx: click.Context, account_name: str | None) -> None:
    """List tokens (prefixes only)."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        svc = AccountService(s)
        accounts = [svc.get(account_name)] if account_name else svc.list()
        for a in accounts:
            for t in a.tokens:
                state = "revoked" if t.revoked_at else "active"
                click.echo(f"{t.id:>5} {a.name:<16} {t.prefix}…  {state:<8} expires {t.expires_at or 'never'}  "
                           f"last used {t.last_used_at or 'never'}  {t.label}")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token at once."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        AccountService(s, "cli").revoke_token(token_id)
    click.echo(f"revoked token {token_id}")


@main.group(cls=ExchangeGroup)
def sshkey() -> None:
    """SSH public keys for the SFTP channel."""


@sshkey.command("add")
@click.argument("account_name")
@click.argument("public_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", default="")
@click.pass_context
def sshkey_add(ctx: click.Context, account_name: str, public_key_file: Path, label: str) -> None:
    """Register a public key (an OpenSSH .pub file) for an account."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        svc = AccountService(s, "cli")
        key = svc.add_ssh_key(svc.get(account_name), public_key_file.read_text("utf-8"), label)
        click.echo(f"added {key.key_type} {key.fingerprint} for {account_name}")


@sshkey.command("revoke")
@click.argument("fingerprint")
@click.pass_context
def sshkey_revoke(ctx: click.Context, fingerprint: str) -> None:
    """Revoke a public key by its SHA256 fingerprint."""
    from .accounts.services import AccountService

    with _runtime(ctx).db.session() as s:
        AccountService(s, "cli").revoke_ssh_key(fingerprint)
    click.echo(f"revoked {fingerprint}")


# -- cycles ---------------------------------------------------------------------------------
def _deadline(value: str | None) -> dt.datetime | None:
    from .clock import parse_beijing_stamp

    if value is None:
        return None
    try:
        return parse_beijing_stamp(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use YYYYMMDDHHMMSS or YYYYMMDD, Beijing time",
                                 param_hint="--deadline") from None


@main.group(cls=ExchangeGroup)
def cycle() -> None:
    """The reporting calendar: create, open, close, reopen, deadlines."""


def _calendar_to_outboxes(rt: Any) -> None:
    """After a calendar change is committed: the REP_CYCLE files into every province's outbox."""
    from .sftp.outbox import place_calendar

    place_calendar(rt)


@cycle.command("create")
@click.argument("cycle_id")
@click.option("--deadline", default=None, help="YYYYMMDDHHMMSS Beijing time (default: 10 days after the period, 18:00).")
@click.option("--units", default=None, help="Unit codes due, comma-separated (default: all six upload units).")
@click.option("--name", default=None)
@click.option("--open", "open_now", is_flag=True, help="Open it at once.")
@click.pass_context
def cycle_create(ctx: click.Context, cycle_id: str, deadline: str | None, units: str | None, name: str | None,
                 open_now: bool) -> None:
    """Add a cycle to the calendar."""
    from .cycles.services import CycleService

    rt = _runtime(ctx)
    with rt.db.session() as s:
        c = CycleService(s, rt.spec, "cli").create(cycle_id, _deadline(deadline), units, name,
                                                   state="open" if open_now else "planned")
        click.echo(f"cycle {c.id} ({c.name}) {c.state}, deadline {c.deadline.isoformat()}, units {c.units_due}")
    _calendar_to_outboxes(rt)


def _cycle_move(action: str) -> Any:
    @click.argument("cycle_id")
    @click.pass_context
    def command(ctx: click.Context, cycle_id: str) -> None:
        from .cycles.services import CycleService

        rt = _runtime(ctx)
        with rt.db.session() as s:
            c = getattr(CycleService(s, rt.spec, "cli"), action)(cycle_id)
            click.echo(f"cycle {c.id} is {c.state}")
        _calendar_to_outboxes(rt)

    command.__doc__ = {"open": "Open a planned cycle.", "close": "Close an open cycle (later deliveries: E601).",
                       "reopen": "Reopen a closed cycle."}[action]
    return cycle.command(action)(command)


for _action in ("open", "close", "reopen"):
    _cycle_move(_action)


@cycle.command("deadline")
@click.argument("cycle_id")
@click.argument("stamp")
@click.pass_context
def cycle_deadline(ctx: click.Context, cycle_id: str, stamp: str) -> None:
    """Move a cycle's deadline (YYYYMMDDHHMMSS, Beijing time)."""
    from .cycles.services import CycleService

    rt = _runtime(ctx)
    when = _deadline(stamp)
    assert when is not None
    with rt.db.session() as s:
        c = CycleService(s, rt.spec, "cli").set_deadline(cycle_id, when)
        click.echo(f"cycle {c.id} deadline {c.deadline.isoformat()}")
    _calendar_to_outboxes(rt)


@cycle.command("list")
@click.pass_context
def cycle_list(ctx: click.Context) -> None:
    """Show the calendar."""
    from .clock import beijing_stamp
    from .cycles.services import CycleService

    rt = _runtime(ctx)
    with rt.db.session() as s:
        for c in CycleService(s, rt.spec).calendar():
            click.echo(f"{c.id:<7} {c.state:<8} deadline {beijing_stamp(c.deadline)} (Beijing)  units {c.units_due}  {c.name}")


@cycle.command("import")
@click.argument("check_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--open", "open_now", is_flag=True, help="Open the imported cycles.")
@click.pass_context
def cycle_import(ctx: click.Context, check_file: Path, open_now: bool) -> None:
    """Import a REP_CYCLE calendar delivery (D_00_<year>_00.chk and its data file)."""
    from .cycles.services import CycleService

    rt = _runtime(ctx)
    with rt.db.session() as s:
        made = CycleService(s, rt.spec, "cli").import_calendar(check_file, "open" if open_now else "planned")
        click.echo(f"imported {len(made)} cycle(s): {', '.join(c.id for c in made) or '-'}")
    _calendar_to_outboxes(rt)


def _register() -> None:
    from .admin.cli import reminders_group
    from .consolidation.cli import report
    from .demo import demo
    from .hub.cli import hub_group
    from .lists.cli import list_group
    from .push.cli import push_group
    from .review.cli import review_group
    from .sample_data.cli import sample_data

    main.add_command(sample_data)
    main.add_command(list_group)
    main.add_command(push_group)
    main.add_command(demo)
    main.add_command(report)
    main.add_command(hub_group)
    main.add_command(review_group)
    main.add_command(reminders_group)


_register()


if __name__ == "__main__":
    main()
