"""``exchange-server push ...``: provinces' SFTP endpoints, HQ's push key and the push queue."""
from __future__ import annotations

from pathlib import Path

import click

from ..clock import iso
from ..runtime import Runtime

push_group = click.Group("push", help="Push HQ's files to provinces' own SFTP servers: targets, queue, HQ key.")


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


@push_group.command("target-set")
@click.argument("party")
@click.option("--host", required=True, help="The province's SFTP server (name or IP).")
@click.option("--port", type=click.IntRange(1, 65535), default=22, show_default=True)
@click.option("--user", "username", required=True, help="Account HQ logs in as (HQ's key must be authorized).")
@click.option("--path", "remote_dir", default=".", show_default=True, help="Remote folder files are put in.")
@click.option("--host-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The server's public host key (ssh_host_*_key.pub) or a known_hosts line.")
@click.option("--host-key", "host_key", default=None, help='The server\'s host key as "type base64".')
def target_set(party: str, host: str, port: int, username: str, remote_dir: str, host_key_file: Path | None,
               host_key: str | None) -> None:
    """Set (or replace) PARTY's push endpoint; its host key is pinned and verified on every push."""
    from .keys import fingerprint, host_key_from_line
    from .services import PushService

    if (host_key_file is None) == (host_key is None):
        raise click.UsageError("give exactly one of --host-key-file and --host-key")
    if host_key_file is not None:
        # A known_hosts file may hold several lines; the first real one is the key.
        lines = [ln for ln in host_key_file.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        host_key = lines[0] if lines else ""
    rt = _runtime()
    with rt.db.session() as s:
        t = PushService(s, rt.archive, "cli").set_target(party, host, port, username, remote_dir, host_key or "")
        click.echo(f"push target for {t.party}: {t.username}@{t.host}:{t.port} {t.remote_dir} "
                   f"(host key {fingerprint(host_key_from_line(t.host_key))})")


@push_group.command("target-list")
def target_list() -> None:
    """List every push endpoint."""
    from .keys import fingerprint, host_key_from_line
    from .services import PushService

    rt = _runtime()
    with rt.db.session() as s:
        targets = PushService(s).targets()
        for t in targets:
            state = "enabled" if t.enabled else "disabled"
            click.echo(f"{t.party}\t{t.username}@{t.host}:{t.port}\t{t.remote_dir}\t"
                       f"{fingerprint(host_key_from_line(t.host_key))}\t{state}")
        if not targets:
            click.echo("no push targets")


@push_group.command("target-remove")
@click.argument("party")
def target_remove(party: str) -> None:
    """Remove PARTY's push endpoint (its files not yet pushed are dropped from the queue)."""
    from .services import PushService

    rt = _runtime()
    with rt.db.session() as s:
        PushService(s, rt.archive, "cli").remove_target(party)
    click.echo(f"removed push target for {party}")


@push_group.command("jobs")
@click.option("--party", default=None)
@click.option("--state", type=click.Choice(["pending", "done", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
def jobs(party: str | None, state: str | None, limit: int) -> None:
    """Show the push queue, newest first: state, attempts, next try, last error."""
    from .services import PushService

    rt = _runtime()
    with rt.db.session() as s:
        rows = PushService(s).jobs(party=party, state=state, limit=limit)
        for j in rows:
            when = iso(j.pushed_at) if j.state == "done" else iso(j.next_attempt_at)
            line = (f"{j.id}\t{j.target.party}\t{j.file_name}\t{j.state}\tattempts={j.attempts}\t{when}"
                    f"\t{j.reason}")
            if j.last_error:
                line += f"\t{j.last_error}"
            click.echo(line)
        if not rows:
            click.echo("no push jobs")


@push_group.command("hq-key")
def hq_key() -> None:
    """Print HQ's public push key (for provinces' authorized_keys), creating the key if needed."""
    from .keys import hq_public_key_line

    click.echo(hq_public_key_line(_runtime().settings))


@push_group.command("run")
@click.option("--drain", is_flag=True, help="Process the jobs due now, then exit.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between polls when idle.")
def run(drain: bool, poll: float) -> None:
    """Push queued files: once (--drain) or until interrupted."""
    import threading

    from .worker import Pusher

    pusher = Pusher(_runtime())
    if drain:
        n = pusher.drain()
        click.echo(f"{n} push attempt(s)")
        return
    stop = threading.Event()
    try:
        pusher.run_forever(stop, poll=poll)
    except KeyboardInterrupt:
        stop.set()
