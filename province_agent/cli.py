"""``province-agent``: what province IT runs, by hand or on a schedule.

Exit codes (for cron and monitoring):
  0  everything accepted (warnings allowed), or nothing to do, or another run is in progress
  1  a problem in the data: rejected by HQ, or found locally (check, or before sending)
  2  usage or configuration error
  3  transport failure after retries (HQ unreachable, transfer failed)
  4  HQ refused our credentials (API token revoked or wrong, SSH key not registered)
  5  a person must act, nothing was sent: the cycle is closed and no exception is in force, or HQ
     asked for a resend and the exports have not changed
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
    REJECTED,
    Report,
    ValidationOptions,
    file_feedback_xml,
    group_deliveries,
    record_feedback_xml,
    render_text,
    validate_delivery,
)

from ._exceptions import (
    EXIT_ACTION,
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TRANSPORT,
    AgentError,
    CredentialsError,
)
from .config import AgentConfig, load_config
from .transport.base import Progress

EXIT_USAGE = EXIT_CONFIG
__all__ = ["main", "EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "EXIT_TRANSPORT", "EXIT_CREDENTIALS", "EXIT_ACTION"]
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
@click.option("--findings", "per_code", type=click.IntRange(min=1), envvar="KAM_AGENT_FINDINGS", default=5,
              show_default=True, help="HQ's findings printed per error code (the full report is kept in the state "
                                      "directory's reports/; or KAM_AGENT_FINDINGS).")
@click.pass_context
def main(ctx: click.Context, config_path: Path, as_json: bool, verbose: bool, per_code: int) -> None:
    """Province agent for the key-account exchange with Group HQ.

    Exit codes: 0 ok / nothing to do; 1 a problem in the data (rejected by HQ or locally); 2 configuration;
    3 HQ unreachable; 4 HQ refused our credentials; 5 a person must act (cycle closed without an exception,
    or HQ asked for a resend and the exports have not changed).
    """
    _setup_logging(verbose)
    ctx.obj = {"config_path": config_path, "json": as_json, "per_code": per_code}


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
    """Run a command; the agent's errors become one clear line (both languages) and their exit status."""
    from .reports import problem_line
    from .transport.http import HttpError

    try:
        fn()
    except AgentError as exc:
        found = list(getattr(exc, "problems", None) or [])
        if ctx.obj["json"]:
            listed = [p.as_dict() if callable(getattr(p, "as_dict", None)) else problem_line(p).strip() for p in found]
            click.echo(json.dumps({"exit_code": exc.exit_code, "error": str(exc), "kind": type(exc).__name__,
                                   **({"problems": listed} if listed else {})},
                                  ensure_ascii=False, indent=2, default=str))
        elif found and callable(report := getattr(exc, "report", None)):
            # every problem, both languages, with the export's cell and the generated line (the mapping's own words)
            head, *rest = str(report()).splitlines() or [""]
            click.echo(f"{exc.label} ({type(exc).__name__}): {head}", err=True)
            for line in rest:
                click.echo("    " + line, err=True)
        else:
            click.echo(f"{exc.label} ({type(exc).__name__}): {exc}", err=True)
            for p in found:
                click.echo(problem_line(p), err=True)
        sys.exit(exc.exit_code)
    except HttpError as exc:  # an answer the agent did not expect (4xx): HQ refuses the request itself
        message = f"总部拒绝了请求 / HQ refused the request: {exc}"
        if ctx.obj["json"]:
            click.echo(json.dumps({"exit_code": EXIT_TRANSPORT, "error": message, "kind": "HttpError"},
                                  ensure_ascii=False, indent=2))
        else:
            click.echo(message, err=True)
        sys.exit(EXIT_TRANSPORT)
    except SchemasError as exc:
        click.echo(f"配置错误 / configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _agent(ctx: click.Context) -> Any:
    from .runner import Agent

    agent = Agent(_config(ctx), progress=_progress_factory(ctx.obj["json"]))
    agent.per_code = ctx.obj.get("per_code") or agent.per_code
    return agent


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


def _info_line(ev: dict[str, Any]) -> str | None:
    """What a refresh or build found, as one line for people (None: not an informational event)."""
    kind = ev.get("event")
    if kind == "code_lists":
        line = f"code lists 代码表: {ev.get('result')}"
        if ev.get("versions") is not None:
            line += f" ({ev['versions']} version(s) beyond the standard)"
        return line + (f" — {ev['changes']}" if ev.get("changes") else "")
    if kind == "list":
        if ev.get("result") == "new":
            counts = ", ".join(f"{ev.get(k, 0)} {k}" for k in ("added", "removed", "changed", "unchanged"))
            line = f"list 名单 {ev.get('version')}: new — {counts}"
            return line + (f" — {ev['customers']}" if ev.get("customers") else "")
        if ev.get("version"):
            return (f"list 名单 {ev['version']}: {ev.get('result')} ({ev.get('rows')} rows, "
                    f"{ev.get('versions')} version(s) kept)")
        return f"list 名单: {ev.get('result')}"
    if kind == "calendar":
        line = f"calendar 日历: {ev.get('result')} ({ev.get('cycles')} cycles)"
        return line + (f" — {ev['changes']}" if ev.get("changes") else "")
    if kind == "since_last_build":
        line = f"{ev.get('cycle')} since the last build 自上次生成以来: {ev.get('result')}, list {ev.get('list')}, " \
               f"{ev.get('customers')} customers"
        if "customers_added" in ev:
            line += f" (+{ev['customers_added']} -{ev['customers_removed']})"
        for k in ("added", "removed"):
            if ev.get(k):
                line += f"; {k} {ev[k]}"
        return line + (f" — see what it means / 查看影响: {ev['hint']}" if ev.get("hint") else "")
    if kind == "check" and ev.get("problems") is not None:
        return f"{ev.get('delivery')}: {ev.get('status')} / 导出文件有误，未生成; full report 完整报告: {ev.get('report')}"
    if kind in ("hq_request", "offline"):
        return f"{ev.get('cycle', '')} {ev.get('delivery', '')} {ev.get('result')}".strip()
    return None


def _print_events(events: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> None:
    """Every event as one line (findings and comments indented under their delivery)."""
    for ev in events:
        if ev.get("event") in skip:
            continue
        if ev.get("event") == "cycle":
            click.echo(f"cycle {ev['cycle']}: {ev['result']}  [{ev['calendar']}]  {ev['delivery']}"
                       + (f"  {ev['hq_request']}" if ev.get("hq_request") else ""))
            continue
        info = _info_line(ev)
        click.echo(info if info is not None else
                   "  ".join(f"{k}={v}" for k, v in ev.items() if k not in ("hq_comments", "hq_findings")))
        _print_findings(ev.get("hq_findings"))
        _print_comments(ev.get("hq_comments"))


def _print_so_far(ctx: click.Context, events: list[dict[str, Any]]) -> None:
    """When a command stops on an error: the lines of what it found so far (refresh, since the last build)."""
    if ctx.obj["json"]:
        return
    for ev in events:
        line = _info_line(ev)
        if line is not None:
            click.echo(line)


def _print_findings(lines: list[str] | None) -> None:
    for line in lines or []:
        click.echo("  " + line)


@main.command("fetch-list")
@click.pass_context
def fetch_list(ctx: click.Context) -> None:
    """Download HQ's published code lists and every list version's slice for this province not kept yet;
    verify, keep, show what changed (customers added, removed, changed; codes)."""
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        try:
            agent.fetch_code_lists(out)
            agent.fetch_list(out)
        finally:
            agent.close()
        if not ctx.obj["json"]:
            _print_events(out.events)
        _finish(ctx, out)

    _guarded(ctx, go)


@main.command()
@click.option("--cycle", required=True, help="The cycle to check, e.g. 202611.")
@click.option("--units", default=None, help="Only these units (names or codes, comma-separated).")
@click.option("--test", "test_mode", is_flag=True, help="Check it as a test delivery (T).")
@click.option("--max-per-code", type=click.IntRange(min=1), default=1000, show_default=True,
              help="List at most this many occurrences of each code (totals are always exact), as HQ does.")
@click.pass_context
def check(ctx: click.Context, cycle: str, units: str | None, test_mode: bool, max_per_code: int) -> None:
    """Build the cycle's delivery from the exports and check it exactly as HQ will; send nothing.

    Lists every problem at once, in Chinese and English, in the exports' terms where known; the
    full report is kept in the state directory (reports/check_<delivery>.json and .txt). Exit 0
    when HQ would accept it, 1 for problems in the data, 2 for a broken configuration.
    """
    from .reports import render_report, source_map
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        try:
            report, folder, json_path, text_path = agent.check(
                cycle, out, "T" if test_mode else "P", [u.strip() for u in units.split(",")] if units else None,
                cap=max_per_code)
        except AgentError:
            _print_so_far(ctx, out.events)
            raise
        finally:
            agent.close()
        if ctx.obj["json"]:
            _finish(ctx, out, {"report": json.loads(json_path.read_text("utf-8")), "built": str(folder)})
        _print_events(out.events, skip=("check",))
        click.echo(render_report(report, source_map(folder), None,
                                 f"built 已生成: {folder}; full report 完整报告: {text_path} ({json_path.name})"))
        if any(e.get("event") == "calendar" for e in out.events) and any(
                f.code == "E601" for f in report.findings):
            from .runner import ask_for_exception

            click.echo(ask_for_exception(cycle, agent.config.party))
        sys.exit(out.exit_code)

    _guarded(ctx, go)


@main.command()
@click.option("--cycle", required=True, help="The cycle to report, e.g. 202610.")
@click.option("--units", default=None, help="Only these units (names or codes, comma-separated).")
@click.option("--test", "test_mode", is_flag=True, help="A test delivery (T): judged, never stored by HQ.")
@click.option("--no-wait", is_flag=True, help="Send and return; `run` or `status` collect the verdict later.")
@click.option("--no-refresh", is_flag=True, help="Do not fetch the code lists, list and calendar first: check with "
                                                  "what was fetched before (HQ still judges with its own).")
@click.pass_context
def submit(ctx: click.Context, cycle: str, units: str | None, test_mode: bool, no_wait: bool,
           no_refresh: bool) -> None:
    """Refresh the list and calendar, build the cycle's delivery from the exports, validate it, send it,
    and wait for HQ's verdict (its findings printed, the full report kept).

    A delivery that would be rejected is not sent (exit 1); nor is one for a closed cycle without an
    exception (exit 5). Sending again after any failure sends the same files; HQ recognises them.
    """
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        from .lock import RunLock

        try:
            with RunLock(agent.config.state_dir):
                rec = agent.submit_cycle(cycle, out, "T" if test_mode else "P",
                                         [u.strip() for u in units.split(",")] if units else None, wait=not no_wait,
                                         refresh=not no_refresh)
        except AgentError:
            _print_so_far(ctx, out.events)  # what the refresh found, before the line that says why it stopped
            raise
        finally:
            agent.close()
        if not ctx.obj["json"]:
            for ev in out.events:
                line = _info_line(ev)
                if line is not None:
                    click.echo(line)
            if rec is None:
                result = next((e.get("result") for e in reversed(out.events) if e.get("event") == "submit"), "-")
                click.echo(f"{cycle}: nothing new to send ({result})")
            else:
                click.echo(f"{rec.check_name}: {rec.status or rec.state}"
                           + (f" ({rec.errors} errors, {rec.warnings} warnings)" if rec.status else "")
                           + (f", HQ delivery {rec.server_id}" if rec.server_id else ""))
                for ev in out.events:
                    _print_findings(ev.get("hq_findings"))
                    _print_comments(ev.get("hq_comments"))
        _finish(ctx, out)

    _guarded(ctx, go)


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """The scheduled job: refresh the code lists, list and calendar, send what is due and ready, collect
    pending verdicts, and print one line per cycle (exit 5 when HQ asked for a resend and nothing changed)."""
    from .runner import Outcome

    def go() -> None:
        agent = _agent(ctx)
        out = Outcome()
        try:
            agent.run(out)
        except AgentError:
            _print_so_far(ctx, out.events)
            raise
        finally:
            agent.close()
        if not ctx.obj["json"]:
            _print_events(out.events)
        _finish(ctx, out)

    _guarded(ctx, go)


def _print_comments(comments: list[str] | None) -> None:
    """HQ's review comments, indented under the delivery they are about."""
    for c in comments or []:
        click.echo("    HQ 总部意见: " + c.replace("\n", "\n    "))


def _reminders(ctx: click.Context) -> list[dict[str, Any]]:
    """HQ's reminders before deadlines still ahead (none when HQ cannot be reached or refuses us)."""
    agent = _agent(ctx)
    try:
        return agent.reminders()
    except CredentialsError:
        return []  # said once by the deliveries' part of status (exit 4)
    finally:
        agent.close()


def _print_reminders(reminders: list[dict[str, Any]]) -> None:
    """One block per reminder: the cycle, its deadline (Beijing) and the units HQ has not accepted yet."""
    for r in reminders:
        stamp = str(r.get("deadline_beijing") or "")
        when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}" if len(stamp) == 14 else stamp
        units = r.get("missing_units") or []
        click.echo(f"REMINDER 催报: cycle {r.get('cycle')} is due {when} Beijing / 周期 {r.get('cycle')} 截止 {when}（北京时间）; "
                   f"missing 尚缺: " + ", ".join(f"{u.get('code')} {u.get('name_en') or ''}".strip()
                                                  for u in units if isinstance(u, dict)))


def _from_hq(ctx: click.Context, records: list[Any]) -> tuple[dict[int, list[str]], dict[int, list[str]], str | None]:
    """HQ's comments per sent delivery and HQ's findings per judged one (read from the reports kept, fetched
    when missing), plus the credentials error when HQ refused us. HQ unreachable: what is kept (status
    works offline)."""
    from .reports import render_findings

    sent = [r for r in records if r.server_id is not None or r.state in ("sent", "judged")]
    comments: dict[int, list[str]] = {}
    findings: dict[int, list[str]] = {}
    refused = None
    if not sent:
        return comments, findings, refused
    agent = _agent(ctx)
    try:
        for r in sent:
            json_path, text_path = agent.state.report_paths(r.check_name)
            review = None
            try:
                comments[r.id] = agent.comments(r)
                if r.state == "judged" and not json_path.exists():
                    agent.keep_hq_report(r)
                if r.state == "judged" and r.status in ("accepted_with_warnings", "rejected"):
                    review = agent.review_state(r)
            except CredentialsError as exc:
                refused = f"{exc.label}: {exc}"
                break
            if json_path.exists():
                doc = json.loads(json_path.read_text("utf-8"))
                lines = render_findings(doc.get("counts") or [], doc.get("findings") or [], agent.per_code) \
                    if doc.get("findings") or doc.get("counts") else []
                if (review or doc.get("review_state")) == "resend_requested":
                    lines.insert(0, "  HQ asks for a resend / 总部要求重报")
                findings[r.id] = [*lines, f"  full report / 完整报告: {text_path}"]
    finally:
        agent.close()
    return comments, findings, refused


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """What is pending, sent, accepted or rejected, per cycle, with HQ's findings and where the full reports are.

    Works offline (from what is kept); exit 4 when HQ refuses our credentials, else 0.
    """
    def go() -> None:
        from .state import State

        config = _config(ctx)
        state = State(config.state_dir)
        try:
            records = state.all()
            lists = state.list_versions()
        finally:
            state.close()
        comments, findings, refused = _from_hq(ctx, records)
        reminders = _reminders(ctx) if not refused else []
        if ctx.obj["json"]:
            click.echo(json.dumps({"reminders": reminders,
                                   "deliveries": [{**r.as_dict(), "hq_comments": comments.get(r.id, []),
                                                   "report": str(config.state_dir / "reports" / f"{r.check_name}.json")
                                                   if r.id in findings else None}
                                                  for r in records], "lists": lists,
                                   **({"error": refused, "exit_code": EXIT_CREDENTIALS} if refused else {})},
                                  ensure_ascii=False, indent=2, default=str))
            sys.exit(EXIT_CREDENTIALS if refused else EXIT_OK)
        _print_reminders(reminders)
        if not records:
            click.echo("no deliveries yet")
        for r in records:
            verdict = r.status or r.state
            counts = f" {r.errors}E/{r.warnings}W" if r.status else ""
            click.echo(f"{r.cycle:<7} {r.check_name:<20} {r.units:<36} {verdict:<24}{counts}"
                       f"{'  HQ #' + str(r.server_id) if r.server_id else ''}"
                       f"{'  last error: ' + r.last_error if r.last_error and not r.status else ''}")
            if r.state == "local_rejected":
                local = config.state_dir / "reports" / f"check_{r.check_name}.txt"
                if local.exists():
                    click.echo(f"    report 报告: {local}")
            _print_findings(findings.get(r.id))
            _print_comments(comments.get(r.id))
        for v in lists:  # newest first; each cycle counts the entries in force during its period
            click.echo(f"list: {v['version']} ({v['rows']} rows, fetched {v['fetched_at']})")
        if refused:
            click.echo(refused, err=True)
            sys.exit(EXIT_CREDENTIALS)

    _guarded(ctx, go)


SCHEDULE_USER = "kam-agent"
SCHEDULE_LOG_DIR = Path("/var/log/kam-agent")


def _schedule_needs(user: str, log_dir: Path, config: Path, state_dir: Path | None) -> list[tuple[str, bool, str]]:
    """What the scheduled run needs on this machine: (what, present, how to create it)."""
    import pwd

    try:
        pwd.getpwnam(user)
        has_user = True
    except KeyError:
        has_user = False
    needs = [(f"system user {user} 系统用户", has_user,
              f"useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin {user}"),
             (f"log folder {log_dir} 日志目录, writable by {user}", log_dir.is_dir() and os.access(log_dir, os.W_OK),
              f"install -d -o {user} -m 750 {log_dir}"),
             (f"configuration {config} 配置文件, readable by {user}", config.is_file(),
              f"province-agent init {config}")]
    if state_dir is not None:
        needs.append((f"state folder {state_dir} 状态目录, writable by {user}",
                      state_dir.is_dir() and os.access(state_dir, os.W_OK), f"install -d -o {user} -m 750 {state_dir}"))
    return needs


@main.command()
@click.option("--at", "when", default="17 2 * * *", show_default=True, help="cron time fields.")
@click.option("--user", default=SCHEDULE_USER, show_default=True, help="The system user the service runs as.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=SCHEDULE_LOG_DIR,
              show_default=True, help="Where cron's run appends its log.")
@click.option("--create", is_flag=True, help="Create the log folder (and state folder) that are missing "
                                             "(run as root to create them for another user).")
@click.pass_context
def schedule(ctx: click.Context, when: str, user: str, log_dir: Path, create: bool) -> None:
    """Print what the scheduled run needs on this machine (user, log folder, configuration) and whether it is
    there, then a crontab line and systemd service + timer units. --create makes the folders that are missing."""
    exe = shutil.which("province-agent") or f"{sys.executable} -m province_agent.cli"
    config = Path(ctx.obj["config_path"]).resolve()
    state_dir = None
    if config.is_file():
        try:
            state_dir = load_config(config).state_dir
        except AgentError:
            state_dir = None
    click.echo("# --- what the scheduled run needs 定时运行所需 ---")
    missing = 0
    for what, present, how in _schedule_needs(user, log_dir, config, state_dir):
        if not present and create and ("install -d" in how):
            folder = Path(how.rsplit(" ", 1)[1])
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o750)
                try:
                    import pwd

                    entry = pwd.getpwnam(user)
                    os.chown(folder, entry.pw_uid, entry.pw_gid)
                except (KeyError, PermissionError):
                    pass
                present = folder.is_dir()
                click.echo(f"# created 已创建: {folder}")
            except OSError as exc:
                click.echo(f"# could not create 无法创建 {folder}: {exc.strerror} (run as root)")
        missing += not present
        click.echo(f"#   [{'ok' if present else 'MISSING 缺少'}] {what}" + ("" if present else f"   ->  {how}"))
    if missing:
        click.echo(f"# {missing} item(s) missing: create them (as root) before enabling the schedule; "
                   f"`province-agent schedule --create` makes the folders / 请先创建缺少的项目")
    click.echo(f"""
# --- crontab (crontab -e as {user}) ---
# Exit codes: 0 ok, 1 data problem (rejected), 2 configuration, 3 HQ unreachable, 4 credentials refused,
# 5 a person must act (closed cycle, HQ's resend request); the lock stops overlapping runs.
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
# 1, 3, 4 and 5 are reported, not retried by systemd: the next timer run retries.
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
