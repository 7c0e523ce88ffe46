"""``province-agent``: what province IT runs, by hand or on a schedule.

Exit codes (for cron and monitoring):
  0  everything accepted (warnings allowed), or nothing to do, or another run is in progress
  1  something was rejected (by HQ, or locally before sending)
  2  usage or configuration error
  3  transport failure after retries (HQ unreachable, transfer failed)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import click

from schemas import SchemasError, load_spec
from schemas.conventions import CheckFile, CheckFileName, DataFileName
from schemas.validation import (
    REJECTED, Report, ValidationOptions, file_feedback_xml, group_deliveries, record_feedback_xml, render_text,
    validate_delivery,
)

from ._exceptions import AgentError
from .config import AgentConfig, load_config
from .transport.base import Progress

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_TRANSPORT = 0, 1, 2, 3
DEFAULT_CONFIG = "kam-agent.toml"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)


@click.group()
@click.version_option(package_name="kam-exchange")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: os.environ.get("KAM_AGENT_CONFIG", DEFAULT_CONFIG), show_default=DEFAULT_CONFIG,
              help="The configuration file (or KAM_AGENT_CONFIG).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for monitoring) instead of lines.")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def main(ctx: click.Context, config_path: Path, as_json: bool, verbose: bool) -> None:
    """Province agent for the key-account exchange with Group HQ."""
    _setup_logging(verbose)
    ctx.obj = {"config_path": config_path, "json": as_json}


def _config(ctx: click.Context) -> AgentConfig:
    return load_config(ctx.obj["config_path"])


def _progress_factory(as_json: bool) -> Callable[[str, int], Progress | None] | None:
    """A progress bar per upload when stderr is a terminal; plain log lines otherwise."""
    if as_json or not sys.stderr.isatty():
        return None

    def factory(label: str, total: int) -> Progress:
        bar = click.progressbar(length=total, label=f"sending {label}", file=sys.stderr, show_pos=False)
        bar.__enter__()
        state = {"done": 0}

        def update(sent: int, _total: int) -> None:
            bar.update(sent - state["done"])
            state["done"] = sent
            if sent >= total:
                bar.__exit__(None, None, None)

        return update

    return factory


def _finish(ctx: click.Context, outcome: Any, extra: dict[str, Any] | None = None) -> None:
    if ctx.obj["json"]:
        doc = {"exit_code": outcome.exit_code, "events": outcome.events, **(extra or {})}
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    sys.exit(outcome.exit_code)


def _guarded(ctx: click.Context, fn: Callable[[], None]) -> None:
    """Run a command; the agent's errors become one clear line and their exit status."""
    try:
        fn()
    except AgentError as exc:
        if ctx.obj["json"]:
            click.echo(json.dumps({"exit_code": exc.exit_code, "error": str(exc), "kind": type(exc).__name__},
                                  ensure_ascii=False, indent=2))
        else:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SchemasError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _agent(ctx: click.Context) -> Any:
    from .runner import Agent

    return Agent(_config(ctx), progress=_progress_factory(ctx.obj["json"]))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--party", default="42", show_default=True, help="Province or local network code.")
@click.option("--transport", type=click.Choice(["http", "sftp"]), default="http", show_default=True)
@click.option("--url", default="https://hq.example:8080", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_context
def init(ctx: click.Context, path: Path | None, party: str, transport: str, url: str, force: bool) -> None:
    """Write a commented configuration template (every unit's fields listed for mapping)."""
    from .template import render_template

    target = path or ctx.obj["config_path"]
    if target.exists() and not force:
        click.echo(f"{target} exists; use --force to overwrite", err=True)
        sys.exit(EXIT_USAGE)
    target.write_text(render_template(load_spec(), party, transport, url), "utf-8")
    click.echo(f"wrote {target}: set the party, server and credentials, then map your exports under [units.*]")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "xml"]), default="text", show_default=True,
              help="text for people, json for programs, xml for the standard's feedback files.")
@click.option("--max-per-code", type=click.IntRange(min=1), default=1000, show_default=True,
              help="List at most this many occurrences of each error code (totals are always exact).")
@click.option("--max-file-size", type=click.IntRange(min=1), default=None,
              help="Largest data file accepted, in bytes (default 2 GiB).")
@click.option("--with-list/--no-list", default=None,
              help="Check against the list as it counts for each delivery's cycle, from the list versions "
                   "fetched (X-007, E604). Default: when a config is found.")
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], fmt: str, max_per_code: int, max_file_size: int | None,
             with_list: bool | None) -> None:
    """Validate deliveries offline: a check file with its data files, several, or a directory.

    Exit status 0 when every delivery would be accepted (warnings allowed), 1 when any
    would be rejected, 2 on usage errors. Each delivery is checked against the list as it
    counts for its own cycle (the one its check file names).
    """
    options = ValidationOptions(cap=max_per_code)
    if max_file_size:
        options.max_file_size = max_file_size
    agent = None
    spec = None
    config_path: Path = ctx.obj["config_path"]
    if with_list or (with_list is None and config_path.exists()):
        try:
            from .runner import Agent

            agent = Agent(load_config(config_path))
            spec = agent.spec  # with the code-list versions last fetched from HQ
        except AgentError as exc:
            if with_list:
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_USAGE)
    try:
        spec = spec or load_spec()
        reports: list[Report] = []
        for group in group_deliveries(list(paths)):
            sender = _sender(group)
            context = agent.list_context(*sender) if agent is not None and sender is not None else None
            reports.append(validate_delivery(group, spec, context, options))
    except SchemasError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        if agent is not None:
            agent.close()
    if not reports:
        click.echo("error: no files to validate / 没有可校验的文件", err=True)
        sys.exit(EXIT_USAGE)
    if fmt == "json" or ctx.obj["json"]:
        doc = [r.as_dict() for r in reports]
        click.echo(json.dumps(doc[0] if len(doc) == 1 else doc, ensure_ascii=False, indent=2, default=str))
    elif fmt == "xml":
        for r in reports:
            click.echo(file_feedback_xml(r).decode("utf-8"))
            click.echo(record_feedback_xml(r).decode("utf-8"))
    else:
        for r in reports:
            click.echo(render_text(r))
    sys.exit(EXIT_REJECTED if any(r.status == REJECTED for r in reports) else EXIT_OK)


def _sender(files: list[Path]) -> tuple[str, str] | None:
    """(cycle, party) of a delivery: from its check file's name, else its contents, else a data file's name."""
    for p in files:
        if p.name.endswith(".chk"):
            try:
                name = CheckFileName.parse(p.name)
                return name.period, name.party
            except SchemasError:
                pass
            try:
                check = CheckFile.parse(p.read_bytes())
                return check.period, check.party
            except (SchemasError, OSError):
                pass
    for p in files:
        try:
            data = DataFileName.parse(p.name)
            return data.period, data.party
        except SchemasError:
            continue
    return None


@main.command("fetch-list")
@click.pass_context
def fetch_list(ctx: click.Context) -> None:
    """Download HQ's published code lists and every list version's slice for this province not kept yet;
    verify, keep, show what is new."""
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        try:
            agent.fetch_code_lists(out)
            version = agent.fetch_list(out)
        finally:
            agent.close()
        if not ctx.obj["json"]:
            for ev in out.events:
                head = f"list {ev.get('version') or version or '-'}" if ev.get("event") == "list" \
                    else str(ev.get("event"))
                click.echo(f"{head}: " + ", ".join(f"{k} {v}" for k, v in ev.items() if k != "event"))
        _finish(ctx, out)

    _guarded(ctx, go)


@main.command()
@click.option("--cycle", required=True, help="The cycle to report, e.g. 202610.")
@click.option("--units", default=None, help="Only these units (names or codes, comma-separated).")
@click.option("--test", "test_mode", is_flag=True, help="A test delivery (T): judged, never stored by HQ.")
@click.option("--no-wait", is_flag=True, help="Send and return; `run` or `status` collect the verdict later.")
@click.pass_context
def submit(ctx: click.Context, cycle: str, units: str | None, test_mode: bool, no_wait: bool) -> None:
    """Build the cycle's delivery from the exports, validate it, send it, and wait for HQ's verdict.

    A delivery that would be rejected is not sent (exit 1). Sending again after any failure
    sends the same files; HQ recognises them.
    """
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        from .lock import RunLock

        try:
            with RunLock(agent.config.state_dir):
                rec = agent.submit(cycle, out, "T" if test_mode else "P",
                                   [u.strip() for u in units.split(",")] if units else None, wait=not no_wait)
        finally:
            agent.close()
        if not ctx.obj["json"]:
            if rec is None:
                click.echo(f"{cycle}: nothing new to send ({out.events[-1].get('result')})")
            else:
                click.echo(f"{rec.check_name}: {rec.status or rec.state}"
                           + (f" ({rec.errors} errors, {rec.warnings} warnings)" if rec.status else "")
                           + (f", HQ delivery {rec.server_id}" if rec.server_id else ""))
                for ev in out.events:
                    _print_comments(ev.get("hq_comments"))
        _finish(ctx, out)

    _guarded(ctx, go)


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """The scheduled job: fetch the list, send what is due and ready, collect pending verdicts."""
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        try:
            agent.run(out)
        finally:
            agent.close()
        if not ctx.obj["json"]:
            for ev in out.events:
                click.echo("  ".join(f"{k}={v}" for k, v in ev.items() if k != "hq_comments"))
                _print_comments(ev.get("hq_comments"))
        _finish(ctx, out)

    _guarded(ctx, go)


def _print_comments(comments: list[str] | None) -> None:
    """HQ's review comments, indented under the delivery they are about."""
    for c in comments or []:
        click.echo("    HQ 总部意见: " + c.replace("\n", "\n    "))


def _hq_comments(ctx: click.Context, records: list[Any]) -> dict[int, list[str]]:
    """HQ's comments per sent delivery, asked of HQ (nothing when it cannot be reached: status works offline)."""
    sent = [r for r in records if r.server_id is not None or r.state in ("sent", "judged")]
    if not sent:
        return {}
    agent = _agent(ctx)
    try:
        return {r.id: agent.comments(r) for r in sent}
    finally:
        agent.close()


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """What is pending, sent, accepted or rejected, per cycle."""
    def go() -> None:
        from .state import State

        config = _config(ctx)
        state = State(config.state_dir)
        try:
            records = state.all()
            lists = state.list_versions()
        finally:
            state.close()
        comments = _hq_comments(ctx, records)
        if ctx.obj["json"]:
            click.echo(json.dumps({"deliveries": [{**r.as_dict(), "hq_comments": comments.get(r.id, [])}
                                                  for r in records], "lists": lists},
                                  ensure_ascii=False, indent=2, default=str))
            return
        if not records:
            click.echo("no deliveries yet")
        for r in records:
            verdict = r.status or r.state
            counts = f" {r.errors}E/{r.warnings}W" if r.status else ""
            click.echo(f"{r.cycle:<7} {r.check_name:<20} {r.units:<36} {verdict:<24}{counts}"
                       f"{'  HQ #' + str(r.server_id) if r.server_id else ''}"
                       f"{'  last error: ' + r.last_error if r.last_error and not r.status else ''}")
            _print_comments(comments.get(r.id))
        for v in lists:  # newest first; each cycle counts the entries in force during its period
            click.echo(f"list: {v['version']} ({v['rows']} rows, fetched {v['fetched_at']})")

    _guarded(ctx, go)


@main.command()
@click.option("--at", "when", default="17 2 * * *", show_default=True, help="cron time fields.")
@click.option("--user", default="kam-agent", show_default=True, help="The system user the service runs as.")
@click.pass_context
def schedule(ctx: click.Context, when: str, user: str) -> None:
    """Print a crontab line and systemd service + timer units for the scheduled run."""
    exe = shutil.which("province-agent") or f"{sys.executable} -m province_agent.cli"
    config = Path(ctx.obj["config_path"]).resolve()
    log_dir = "/var/log/kam-agent"
    click.echo(f"""# --- crontab (crontab -e as {user}) ---
# Exit codes: 0 ok, 1 rejected, 2 configuration, 3 HQ unreachable; the lock stops overlapping runs.
{when} {exe} --config {config} run >> {log_dir}/agent.log 2>&1

# --- /etc/systemd/system/kam-agent.service ---
[Unit]
Description=Key-account exchange: province agent run
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
User={user}
ExecStart={exe} --config {config} run
# 1 (rejected) and 3 (HQ unreachable) are reported, not retried by systemd: the next timer run retries.
SuccessExitStatus=0
Nice=10

# --- /etc/systemd/system/kam-agent.timer ---
[Unit]
Description=Run the key-account province agent daily

[Timer]
OnCalendar=*-*-* 02:17:00
RandomizedDelaySec=15min
Persistent=true

[Install]
WantedBy=timers.target
# then: systemctl daemon-reload && systemctl enable --now kam-agent.timer""")


if __name__ == "__main__":
    main()
