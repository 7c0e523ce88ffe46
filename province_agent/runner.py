"""What the agent does: fetch the list, build, check, send, and collect verdicts — resumably.

Every step leaves a record in the state store before the next begins, so a run that is cut
short anywhere (network, HQ, the machine, ``kill -9``) is finished by the next run:

    built   -> the spooled files are sent (the same bytes: HQ answers with the same receipt)
    sent    -> the verdict is collected
    judged  -> done; ``run`` does not touch the cycle again

A delivery HQ would reject is never sent: it is validated locally first, with the list as
it counts for the delivery's cycle, from every list version fetched from HQ.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from schemas import Spec, SpecError, load_spec, with_code_versions
from schemas.conventions import CheckFile, Cycle, DataFileName
from schemas.lists import ListHistory, entry_from_row
from schemas.validation import (
    REJECTED,
    Report,
    ValidationContext,
    ValidationOptions,
    validate_delivery,
)
from schemas.validation.readers import text_lines

from ._exceptions import (
    EXIT_ACTION,
    EXIT_ORDER,
    ActionNeeded,
    AgentError,
    CredentialsError,
    ExportProblems,
    RejectedError,
    TransportError,
)
from .config import AgentConfig, RetryPolicy
from .lock import RunLock
from .reports import (
    DEFAULT_PER_CODE,
    annotate,
    problem_line,
    render_findings,
    render_report,
    source_map,
    write_report_files,
)
from .retry import with_retries
from .state import BUILT, GOOD, JUDGED, LOCAL_REJECTED, SENT, Record, State
from .transport.base import CycleInfo, Progress, Receipt, Transport, Verdict
from .transport.http import HttpError

log = logging.getLogger(__name__)


def make_transport(config: AgentConfig) -> Transport:
    """The transport the configuration names."""
    if config.transport == "sftp":
        from .transport.sftp import SftpTransport

        s = config.sftp
        return SftpTransport(s.host, s.port, s.user, s.key_file, s.known_hosts, config.party, timeout=config.timeout)
    from .transport.http import HttpTransport

    return HttpTransport(config.url, config.token(), timeout=config.timeout, verify_tls=config.verify_tls,
                         ca_file=config.ca_file or None)


@dataclass
class Outcome:
    """What one command did, for people and for ``--json``."""

    events: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0

    def add(self, **event: Any) -> None:
        """Record an event and log it as a plain line."""
        self.events.append(event)
        log.info(" ".join(f"{k}={v}" for k, v in event.items()))

    def worst(self, code: int) -> None:
        """Keep the most serious exit status (2 configuration > 4 credentials > 3 transport > 1 rejected
        > 5 action needed > 0)."""
        if EXIT_ORDER.get(code, 0) > EXIT_ORDER.get(self.exit_code, 0):
            self.exit_code = code


# -- findings, in the export's terms where the build left a map --------------------------------------
def _is_cycle(cid: str) -> bool:
    try:
        Cycle.parse(cid)
    except ValueError:
        return False
    return True


def exception_valid(c: CycleInfo) -> bool:
    """Whether HQ's exception for our province on a closed cycle is still in force."""
    now_beijing = dt.datetime.now(BEIJING).strftime("%Y%m%d%H%M%S")
    return bool(c.exception_until and c.exception_until > now_beijing)


def ask_for_exception(cycle: str, party: str) -> str:
    """How to deliver to a closed cycle, in both languages."""
    return (f"如需补报，请本省联系总部管理员为 {party} 开通周期 {cycle} 的例外（exception），开通后重新运行 / "
            f"to deliver late, ask HQ's admin to grant {party} an exception for cycle {cycle}, then run again")


def content_digest(files: list[Path]) -> str:
    """The identity of a delivery's data, whatever its resend number: units and data file digests."""
    lines = []
    for p in files:
        if p.name.endswith(".chk"):
            continue
        dn = DataFileName.parse(p.name)
        lines.append(f"{dn.unit} {dn.seq} {dn.ext} {hashlib.sha256(p.read_bytes()).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


BEIJING = dt.timezone(dt.timedelta(hours=8))  # the standard's stamps are Beijing time (China keeps no DST)
CODE_LISTS_FILE = "code_lists.json"  # in the state dir: HQ's published code-list versions, as last fetched


def saved_spec(state_dir: Path) -> Spec:
    """The standard with the code-list versions last fetched from HQ (just the standard if none were)."""
    path = state_dir / CODE_LISTS_FILE
    try:
        additions = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return load_spec()
    except (OSError, ValueError):
        log.warning("%s cannot be read; validating with the standard's own code lists", path)
        return load_spec()
    try:
        return with_code_versions(load_spec(), additions) if additions else load_spec()
    except (SpecError, KeyError, TypeError) as exc:
        log.warning("%s does not fit this standard (%s); validating with the standard's own code lists", path, exc)
        return load_spec()


def code_changes(old: Spec, new: Spec, most: int = 5) -> list[str]:
    """What the code-list versions in ``new`` and not in ``old`` change: codes added, removed, renamed."""
    out = []
    for name, dom in new.domains.items():
        known = {v.version for v in old.domains[name].versions} if name in old.domains else set()
        for i, v in enumerate(dom.versions):
            if v.version in known:
                continue
            prev = dom.versions[i - 1].codes if i else {}
            added = [c for c in v.codes if c not in prev]
            removed = [c for c in prev if c not in v.codes]
            renamed = [c for c in v.codes if c in prev and (prev[c].name_zh, prev[c].name_en)
                       != (v.codes[c].name_zh, v.codes[c].name_en)]
            parts = []
            for label, codes, entries in (("added 新增", added, v.codes), ("removed 删除", removed, prev),
                                          ("renamed 更名", renamed, v.codes)):
                if codes:
                    shown = ", ".join(f"{c} {entries[c].name_zh}" for c in codes[:most])
                    parts.append(f"{label} {len(codes)}: {shown}" + (" ..." if len(codes) > most else ""))
            out.append(f"{name} {v.version} (from {v.effective_from.isoformat()}): "
                       + ("; ".join(parts) or "no code changed"))
    return out


class Agent:
    """The province agent's operations over one configuration."""

    def __init__(self, config: AgentConfig, transport: Transport | None = None, spec: Spec | None = None,
                 progress: Callable[[str, int], Progress | None] | None = None,
                 today: dt.date | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.spec = spec or saved_spec(config.state_dir)
        self._transport = transport
        self.state = State(config.state_dir)
        self.progress = progress
        self.today = today or dt.date.today()
        self.sleep = sleep
        self.retry_policy: RetryPolicy = config.retry
        self.per_code: int = DEFAULT_PER_CODE  # HQ's findings printed per code after a verdict
        self.calendar: list[CycleInfo] | None = None  # HQ's calendar as last read in this run
        # The kept list versions' history, with what it was read from (see _list_history).
        self._history: tuple[tuple[tuple[str, str], ...], ListHistory | None] | None = None

    @property
    def transport(self) -> Transport:
        """The transport, created on first use (so offline commands never need credentials)."""
        if self._transport is None:
            self._transport = make_transport(self.config)
        return self._transport

    def close(self) -> None:
        """Release the transport and the state database."""
        if self._transport is not None:
            self._transport.close()
        self.state.close()

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        return with_retries(what, fn, self.retry_policy, self.transport.transient, sleep=self.sleep)

    # -- what HQ publishes --------------------------------------------------------------------------
    def fetch_code_lists(self, out: Outcome) -> int | None:
        """Fetch the code-list versions HQ has published, check them, keep them; validation uses them from now on."""
        doc = self._retry("fetch-code-lists", self.transport.code_lists)
        if doc is None:
            return None
        base = load_spec()
        theirs = str(doc.get("spec_version") or base.version)
        if theirs.split(".")[0] != base.version.split(".")[0]:  # a new MAJOR changes file layouts (E119)
            out.add(event="code_lists", result=f"HQ runs standard {doc.get('spec_version')}, this agent "
                                               f"{base.version}: update the agent")
            out.worst(1)
        additions = list(doc.get("additions") or [])
        try:
            spec = with_code_versions(base, additions)
        except (SpecError, KeyError, TypeError) as exc:
            raise TransportError(f"the code lists from HQ do not fit this agent's standard: {exc}") from None
        result = "unchanged" if spec.code_additions == self.spec.code_additions else "new"
        changes = code_changes(self.spec, spec) if result == "new" else []
        target = self.config.state_dir / CODE_LISTS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(additions, ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, target)  # a crash leaves the old file or the new one, never half of one
        self.spec = spec
        out.add(event="code_lists", result=result, versions=len(additions),
                **({"changes": "; ".join(changes)} if changes else {}))
        return len(additions)

    # -- the list -------------------------------------------------------------------------------
    def fetch_list(self, out: Outcome) -> str | None:
        """Download every list version's slice not kept yet, verify each, keep it, report what is new.

        Every version is kept, not only the newest: a cycle is checked against the entries in
        force during its period (``list_context``), which an older version may decide — a
        cycle delivered late must not be judged by a version published after it. Returns the
        newest version kept, None when HQ has published none.
        """
        tmp = self.config.state_dir / ".fetching"
        shutil.rmtree(tmp, ignore_errors=True)
        kept = {v["version"]: v for v in self.state.list_versions() if Path(v["folder"]).is_dir()}
        got = self._retry("fetch-list", lambda: self.transport.fetch_lists(tmp, frozenset(kept)))
        new: list[str] = []
        try:
            for version, files in got:
                if version in kept:
                    continue
                report = validate_delivery(files, self.spec)
                if report.errors:
                    raise TransportError(f"the list slice {version} from HQ does not validate "
                                         f"({report.errors} error(s)); tell HQ:\n{render_report(report, None, 5)}")
                changes: dict[str, Any] = dict(self._changes(files))
                which = self._changed_customers(files)
                if which:
                    changes["customers"] = which
                folder = self.config.lists_dir / version
                shutil.rmtree(folder, ignore_errors=True)
                folder.parent.mkdir(parents=True, exist_ok=True)
                files[0].parent.rename(folder)
                rows = sum(v for v in changes.values() if isinstance(v, int))
                self.state.add_list_version(version, folder, rows)
                kept[version] = {"version": version, "rows": rows}
                new.append(version)
                out.add(event="list", version=version, result="new", **changes)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not kept:
            out.add(event="list", result="none published yet")
            return None
        newest = max(kept)
        if not new:
            out.add(event="list", version=newest, result="unchanged", rows=kept[newest]["rows"],
                    versions=len(kept))
        return newest

    def _changes(self, files: list[Path]) -> dict[str, int]:
        unit = self.spec.unit("TOP500_LIST")
        i = unit.field_ids.index("CHANGE_TYPE")
        names = {"A": "added", "M": "changed", "D": "removed", "U": "unchanged"}
        counts = {v: 0 for v in names.values()}
        for row in self._list_rows(files):
            counts[names.get(row[i], "unchanged")] += 1
        return counts

    def _changed_customers(self, files: list[Path], most: int = 10) -> str:
        """Which customers a list version adds, changes and removes (the first ``most`` of each), by id and name."""
        unit = self.spec.unit("TOP500_LIST")
        ids = unit.field_ids
        i, n, t = ids.index("NATIONAL_CUST_ID"), ids.index("CUST_NAME"), ids.index("CHANGE_TYPE")
        by: dict[str, list[str]] = {"A": [], "M": [], "D": []}
        for row in self._list_rows(files):
            if len(row) > max(i, n, t) and row[t] in by:
                by[row[t]].append(f"{row[i]} {row[n]}".strip())
        parts = []
        for kind, zh, en in (("A", "新增", "added"), ("M", "变更", "changed"), ("D", "移出", "removed")):
            found = by[kind]
            if found:
                more = f" +{len(found) - most} more" if len(found) > most else ""
                parts.append(f"{en} {zh}: " + ", ".join(found[:most]) + more)
        return "; ".join(parts)

    def _list_rows(self, files: list[Path]) -> list[list[str]]:
        check = next(p for p in files if p.name.endswith(".chk"))
        parsed = CheckFile.parse(check.read_bytes())
        rows = []
        for e in parsed.entries:
            if e.name.endswith(".txt"):
                rows += [ln.rstrip("\r").split(parsed.delimiter) for ln in text_lines(check.parent / e.name,
                                                                                      parsed.encoding)]
        return rows

    def _list_history(self) -> ListHistory | None:
        """Every kept version's entries as one history (None when no version is kept)."""
        versions = [v for v in self.state.list_versions() if Path(v["folder"]).is_dir()]
        key = tuple((v["version"], v["folder"]) for v in versions)
        if self._history is not None and self._history[0] == key:
            return self._history[1]
        field_ids = self.spec.unit("TOP500_LIST").field_ids
        history = ListHistory()
        for v in versions:
            files = sorted(p for p in Path(v["folder"]).iterdir() if p.is_file())
            if any(p.name.endswith(".chk") for p in files):
                for row in self._list_rows(files):
                    history.add(entry_from_row(dict(zip(field_ids, row))))
        found = history if len(history) else None
        self._history = (key, found)
        return found

    def list_context(self, cycle: str, party: str | None = None) -> ValidationContext | None:
        """The list as it counts for ``cycle`` as validation context (rules E604 and X-007).

        One history of every kept version's entries (``schemas.lists``) decides: a customer
        is on the cycle's list when an entry keeps it on the list on at least one day of the
        cycle's period, and it is the party's province's when that entry names the province
        as lead. A province's delivery must cover that list (X-007); a local network's
        carries only its part, so every customer it sends must be on the list (E604) but it
        need not cover it. ``party`` is the delivery's sender, this agent's party by default.
        None when no version is kept, the cycle is not a cycle id, or the sender is not of
        this agent's province (the agent keeps only its own province's slices).
        """
        history = self._list_history()
        if history is None:
            return None
        try:
            day = Cycle.parse(cycle).begin
        except ValueError:
            return None  # not a cycle: the file name checks say so
        areas = self.spec.domain("Domain_area_id").version_on(day).codes

        def province_of(code: str) -> str | None:
            entry = areas.get(code)
            if entry is None:
                return None
            if entry.level == "province":
                return code
            return entry.parent if entry.level == "local_network" else None

        sender = party or self.config.party
        province = province_of(sender)
        if province is None or province != province_of(self.config.party):
            return None
        # A local network's agent fed by its province hub keeps its network's part of the list
        # (D_<network>_... slices): the hub checks it against that part, and so does the agent.
        network = sender if sender != province and self._network_part(sender) else None
        cl = history.for_cycle(cycle, province, network)
        return ValidationContext(list_ids=cl.ids, list_version=cl.label, list_explain=cl.explain,
                                 list_complete=sender == province)

    def _network_part(self, network: str) -> bool:
        """Whether the kept list slices are a local network's own part (cut by a province hub)."""
        for v in self.state.list_versions():
            folder = Path(v["folder"])
            if folder.is_dir() and any(p.name.startswith(f"D_{network}_") and p.name.endswith(".chk")
                                       for p in folder.iterdir()):
                return True
        return False

    # -- building and sending ---------------------------------------------------------------------
    def build(self, cycle: str, out: Outcome, mode: str = "P", units: list[str] | None = None) -> Record | None:
        """Build the cycle's delivery from the exports, check it locally; None if nothing new to send."""
        from .mapping import build_delivery

        resend = self._next_resend(cycle, mode)
        spool = self.config.spool_dir / cycle / f"{mode}_{self.config.party}_{cycle}_{resend:02d}"
        shutil.rmtree(spool, ignore_errors=True)
        check = build_delivery(self.config, self.spec, cycle, resend, spool, mode=mode, units=units)
        files = sorted(p for p in spool.iterdir() if p.is_file())
        content = content_digest(files)
        context = self.context_for(cycle, mode, out)  # says what changed in the list since the last build
        done = self.state.accepted(cycle, mode)
        if done is not None and done.content == content:
            shutil.rmtree(spool, ignore_errors=True)
            out.add(event="submit", cycle=cycle, result="unchanged since accepted", resend=f"{done.resend:02d}",
                    delivery=done.server_id)
            return None
        report = validate_delivery(files, self.spec, context)
        unit_codes = sorted({DataFileName.parse(p.name).unit for p in files if p != check})
        if report.status == REJECTED:
            self.state.add(cycle, mode, resend, check.name[:-4], spool, unit_codes, content, LOCAL_REJECTED)
            json_path, text_path = self.keep_local_report(report, spool)
            out.add(event="submit", cycle=cycle, result="rejected locally, not sent", errors=report.errors,
                    warnings=report.warnings, report=str(text_path))
            hint = (f"full report / 完整报告: {text_path} ({json_path.name}); "
                    f"`province-agent check --cycle {cycle}` lists every problem / 列出全部问题")
            raise RejectedError(f"{check.name[:-4]} would be rejected; not sent.\n"
                                + render_report(report, source_map(spool), self.per_code, hint))
        rec = self.state.add(cycle, mode, resend, check.name[:-4], spool, unit_codes, content)
        out.add(event="built", cycle=cycle, delivery=rec.check_name, units=",".join(unit_codes),
                warnings=report.warnings)
        return rec

    def _soft_errors(self) -> tuple[type[BaseException], ...]:
        """Failures that leave a side question unanswered (HQ unreachable, refusing one request), not the run."""
        transient = self._transport.transient if self._transport is not None else (OSError,)
        return (*transient, AgentError, HttpError)

    def _next_resend(self, cycle: str, mode: str) -> int:
        """The next resend number for the cycle in this mode (P and T are numbered on their own, from 00)."""
        server_max = None
        try:
            server_max = self.transport.max_resend(cycle, mode)
        except self.transport.transient as exc:
            log.warning("could not ask HQ for the last resend number (%s); using the local record", exc)
        return self.state.next_resend(cycle, mode, server_max)

    def context_for(self, cycle: str, mode: str = "P", out: Outcome | None = None,
                    received: bool = False) -> ValidationContext | None:
        """What HQ will check the cycle's delivery against, as far as the agent knows it: the list as it
        counts for the cycle, and from HQ's calendar the cycle's state (an exception in force counts as
        open), the units due and the deadline. Says what changed in the list since the last build."""
        ctx = self.list_context(cycle)
        if out is not None:
            self._since_last_build(cycle, mode, ctx, out)
        info = next((c for c in self.calendar or [] if c.id == cycle), None)
        if info is None:
            return ctx
        ctx = ctx or ValidationContext()
        extra: dict[str, Any] = {"units_due": frozenset(info.units_due) if info.units_due else None}
        if info.state in ("open", "closed", "planned"):
            extra["cycle_state"] = "open" if info.state == "closed" and exception_valid(info) else info.state
        if received:  # judged now: late (W603) after the deadline, or after the exception's end
            extra["deadline"] = info.exception_until if exception_valid(info) else info.deadline
            extra["received_at"] = dt.datetime.now(BEIJING).strftime("%Y%m%d%H%M%S")
        return replace(ctx, **extra)

    def _since_last_build(self, cycle: str, mode: str, ctx: ValidationContext | None, out: Outcome) -> None:
        """Say what changed in the cycle's list since its last build, and remember this one's."""
        if ctx is None or ctx.list_ids is None:
            return
        before = self.state.basis(cycle, mode)
        now = sorted(ctx.list_ids)
        if before is None:
            out.add(event="since_last_build", cycle=cycle, result="first build of this cycle",
                    list=ctx.list_version or "-", customers=len(now))
        else:
            added = sorted(set(now) - set(before["ids"]))
            removed = sorted(set(before["ids"]) - set(now))
            label = ctx.list_version or "-"
            changed = label != (before["label"] or "-") or added or removed
            out.add(event="since_last_build", cycle=cycle, result="list changed" if changed else "list unchanged",
                    list=label if label == (before["label"] or "-") else f"{before['label'] or '-'} -> {label}",
                    customers=len(now), customers_added=len(added), customers_removed=len(removed),
                    **({"added": ",".join(added[:10])} if added else {}),
                    **({"removed": ",".join(removed[:10])} if removed else {}),
                    **({"hint": f"province-agent check --cycle {cycle}"} if changed else {}))
        self.state.set_basis(cycle, mode, ctx.list_version, now)

    def keep_local_report(self, report: Report, folder: Path) -> tuple[Path, Path]:
        """Keep a local check's full report beside HQ's: ``reports/check_<delivery>.json`` and ``.txt``."""
        smap = source_map(folder)
        json_path, text_path = self.state.report_paths(f"check_{report.delivery or folder.name}")
        doc = {**report.as_dict(), "findings": annotate([f.as_dict() for f in report.sorted_findings()], smap),
               "built": str(folder)}
        write_report_files(json_path, text_path, doc, render_report(report, smap))
        return json_path, text_path

    def send(self, rec: Record, out: Outcome) -> Record:
        """Send a built delivery (again, if a previous attempt may or may not have arrived)."""
        files = rec.files
        total = sum(p.stat().st_size for p in files)
        progress = self.progress(rec.check_name, total) if self.progress else None

        def attempt_failed(_n: int, exc: BaseException) -> None:
            self.state.mark_attempt(rec.id, str(exc)[:500])

        receipt: Receipt = with_retries(f"sending {rec.check_name}", lambda: self.transport.send(files, progress),
                                        self.config.retry, self.transport.transient, attempt_failed, self.sleep)
        self.state.mark_sent(rec.id, receipt.delivery_id)
        out.add(event="sent", cycle=rec.cycle, delivery=rec.check_name, id=receipt.delivery_id,
                duplicate=receipt.duplicate)
        return self.state.get(rec.id)

    def collect(self, rec: Record, out: Outcome, timeout: float | None = None) -> Record:
        """Wait for HQ's verdict on a sent delivery (network trouble in between is waited out)."""
        receipt = Receipt(rec.server_id, rec.check_name)
        limit = time.monotonic() + (self.config.retry.verdict_timeout if timeout is None else timeout)
        wait = 0.5
        unreachable: BaseException | None = None  # the last question went unanswered
        while True:
            try:
                verdict = self.transport.verdict(receipt)
                unreachable = None
            except self.transport.transient as exc:
                log.warning("asking for the verdict on %s failed (%s); trying again", rec.check_name, exc)
                verdict, unreachable = None, exc
            if verdict is not None:
                self.state.mark_judged(rec.id, verdict.status, verdict.errors, verdict.warnings)
                rec = self.state.get(rec.id)
                shown, text_path = self.keep_hq_report(rec, verdict)
                out.add(event="verdict", cycle=rec.cycle, delivery=rec.check_name, id=rec.server_id,
                        status=verdict.status, errors=verdict.errors, warnings=verdict.warnings,
                        codes=",".join(f"{c['code']}x{c['count']}" for c in verdict.counts) or "-",
                        **({"report": str(text_path)} if text_path else {}),
                        **({"hq_findings": shown} if shown else {}),
                        **({"hq_comments": verdict.comments} if verdict.comments else {}))
                if verdict.status not in GOOD:
                    out.worst(1)
                return rec
            if time.monotonic() > limit:
                if unreachable is not None:
                    # HQ went away while we waited: that is "HQ unreachable" (exit 3), not success.
                    out.add(event="verdict", cycle=rec.cycle, delivery=rec.check_name, status="pending",
                            note=f"HQ unreachable while waiting for the verdict ({unreachable}); "
                                 "the next run collects it")
                    out.worst(3)
                else:
                    out.add(event="verdict", cycle=rec.cycle, delivery=rec.check_name, status="pending",
                            note="no verdict yet; the next run collects it")
                return rec
            self.sleep(wait)
            wait = min(wait * 2, 10.0)

    def keep_hq_report(self, rec: Record, verdict: Verdict | None = None) -> tuple[list[str], Path | None]:
        """Fetch HQ's findings on a judged delivery, map them to the exports, keep the full report as
        ``reports/<delivery>.json`` and ``.txt``; returns the lines to print (the first ``per_code`` of
        each code) and the text report's path. HQ unreachable: nothing kept now, ``status`` tries again."""
        receipt = Receipt(rec.server_id, rec.check_name)
        try:
            if verdict is None:
                verdict = self.transport.verdict(receipt)
                if verdict is None:
                    return [], None
            found = self.transport.findings(receipt) if verdict.errors or verdict.warnings else []
            review = self.transport.review_state(receipt)
        except CredentialsError:
            raise
        except self._soft_errors() as exc:
            log.warning("HQ's findings on %s could not be read (%s); `status` tries again", rec.check_name, exc)
            return [], None
        spool = Path(rec.spool)
        smap = source_map(spool if spool.is_dir() else None)
        findings = annotate(found, smap)
        counts = [dict(c) for c in verdict.counts]
        for c in counts:
            if not c.get("title_zh"):
                try:
                    c["title_zh"], c["title_en"] = Report(self.spec).titles(str(c["code"]))
                except KeyError:
                    pass
        head = (f"{rec.check_name}: {verdict.status} ({verdict.errors} errors, {verdict.warnings} warnings), "
                f"HQ delivery {rec.server_id}" + (f", review {review}" if review else ""))
        json_path, text_path = self.state.report_paths(rec.check_name)
        doc = {"delivery": rec.check_name, "hq_delivery_id": rec.server_id, "cycle": rec.cycle,
               "status": verdict.status, "errors": verdict.errors, "warnings": verdict.warnings,
               "review_state": review, "counts": counts, "findings": findings, "comments": verdict.comments,
               "built": rec.spool}
        full = "\n".join([head, *render_findings(counts, findings, None),
                          *(f"  HQ 总部意见: {c}" for c in verdict.comments)]) + "\n"
        write_report_files(json_path, text_path, doc, full)
        shown = render_findings(counts, findings, self.per_code) if findings or counts else []
        if shown and findings:
            shown.append(f"  full report / 完整报告: {text_path} ({json_path.name})")
        return shown, text_path

    def submit(self, cycle: str, out: Outcome, mode: str = "P", units: list[str] | None = None,
               wait: bool = True) -> Record | None:
        """Build, check, send, and (unless ``wait`` is off) wait for the verdict of one cycle."""
        pending = [r for r in self.state.for_cycle(cycle, mode) if r.state in (BUILT, SENT)]
        rec = pending[-1] if pending else self.build(cycle, out, mode, units)
        if rec is None:
            return None
        if rec.state == BUILT:
            rec = self.send(rec, out)
        if wait and rec.state == SENT:
            rec = self.collect(rec, out)
        return rec

    # -- the scheduled job -------------------------------------------------------------------------
    def due_cycles(self, calendar: list[CycleInfo]) -> list[CycleInfo]:
        """Cycles to report now: whose period has ended and which are open, closed with a valid exception
        for our province, or (from an old HQ's SFTP outbox) of unknown state."""
        due = []
        now_beijing = dt.datetime.now(BEIJING).strftime("%Y%m%d%H%M%S")
        for c in calendar:
            if c.end_date >= self.today:
                continue
            if c.state == "open" or (c.state == "closed" and c.exception_until and c.exception_until > now_beijing):
                due.append(c)
            elif c.state == "unknown":
                deadline = dt.date(int(c.deadline[:4]), int(c.deadline[4:6]), int(c.deadline[6:8]))
                if self.today <= deadline + dt.timedelta(days=60):
                    due.append(c)
        return sorted(due, key=lambda c: c.id)

    def ready(self, cycle: str) -> bool:
        """Whether every configured unit's export for the cycle is there."""
        from schemas.conventions import Cycle

        from ._exceptions import BuildError
        from .mapping import load_mappings, placeholders

        values = placeholders(self.config.party, Cycle.parse(cycle))
        for m in load_mappings(self.config, self.spec).values():
            try:
                m.source_files(self.config.export_dir, values)
            except BuildError:
                return False
        return True

    # -- what HQ says now -----------------------------------------------------------------------
    def refresh(self, out: Outcome) -> list[CycleInfo]:
        """Fetch the code lists, the list and the calendar, and say what changed since the last time."""
        self.fetch_code_lists(out)
        self.fetch_list(out)
        calendar: list[CycleInfo] = self._retry("reading the calendar", self.transport.calendar)
        self.calendar = calendar
        now = {c.id: {"state": c.state, "deadline": c.deadline, "exception_until": c.exception_until,
                      "units_due": list(c.units_due)} for c in calendar}
        before = self.state.memo("calendar")
        if before is None:
            out.add(event="calendar", result="read", cycles=len(now))
        else:
            changes = []
            for cid in sorted(set(now) | set(before)):
                a, b = before.get(cid), now.get(cid)
                if a is None:
                    changes.append(f"{cid} new ({b['state']}, deadline {b['deadline']})")  # type: ignore[index]
                elif b is None:
                    changes.append(f"{cid} gone")
                else:
                    for k in ("state", "deadline", "exception_until", "units_due"):
                        if a.get(k) != b.get(k):
                            changes.append(f"{cid} {k} {a.get(k) or '-'} -> {b.get(k) or '-'}")
            out.add(event="calendar", result="changed" if changes else "unchanged", cycles=len(now),
                    **({"changes": "; ".join(changes)} if changes else {}))
        self.state.set_memo("calendar", now)
        return calendar

    def refresh_offline_ok(self, out: Outcome) -> list[CycleInfo] | None:
        """``refresh``, trying once: when HQ cannot be reached, check with what was fetched before (said so)."""
        policy, self.retry_policy = self.retry_policy, replace(self.retry_policy, attempts=1)
        try:
            return self.refresh(out)
        except CredentialsError:
            raise
        except TransportError as exc:
            out.add(event="offline", result="HQ unreachable: checked with the code lists, list versions and "
                                            f"calendar fetched before / 无法连通总部，使用上次获取的名单与代码表 ({exc})")
            saved = self.state.memo("calendar") or {}
            self.calendar = [CycleInfo(cid, v["state"], Cycle.parse(cid).end, v["deadline"], tuple(v["units_due"]),
                                       v.get("exception_until")) for cid, v in saved.items()
                             if _is_cycle(cid)]
            return None
        finally:
            self.retry_policy = policy

    def gate(self, cycle: str) -> None:
        """Refuse to send into a cycle HQ's calendar says is closed (without an exception in force) or not open."""
        info = next((c for c in self.calendar or [] if c.id == cycle), None)
        if info is None:
            return
        if info.state == "closed" and not exception_valid(info):
            raise ActionNeeded(f"周期 {cycle} 已关闭（截止 {info.deadline} 北京时间），未发送 / cycle {cycle} is closed "
                               f"(deadline {info.deadline} Beijing time); nothing was sent. "
                               + ask_for_exception(cycle, self.config.party))
        if info.state == "planned":
            raise ActionNeeded(f"周期 {cycle} 尚未开放，未发送 / cycle {cycle} is not open yet; nothing was sent")

    def review_state(self, rec: Record) -> str | None:
        """Where HQ's review of a delivery stands now (None when HQ cannot be asked; credentials refused: raised)."""
        try:
            return self.transport.review_state(Receipt(rec.server_id, rec.check_name))
        except CredentialsError:
            raise
        except self._soft_errors() as exc:
            log.warning("HQ's review of %s could not be read (%s)", rec.check_name, exc)
            return None

    def resend_requested(self, cycle: str, mode: str = "P") -> Record | None:
        """The accepted delivery of the cycle HQ asked to have sent again (review ``resend_requested``), if any."""
        done = self.state.accepted(cycle, mode)
        if done is None:
            return None
        return done if self.review_state(done) == "resend_requested" else None

    def submit_cycle(self, cycle: str, out: Outcome, mode: str = "P", units: list[str] | None = None,
                     wait: bool = True, refresh: bool = True) -> Record | None:
        """``submit`` as the command runs it: refresh the list and calendar first (unless ``refresh`` is off),
        refuse a closed cycle, send, and say so when HQ asked for a resend and the exports have not changed
        (exit 5)."""
        if refresh:
            self.refresh(out)
            pending = [r for r in self.state.for_cycle(cycle, mode) if r.state in (BUILT, SENT)]
            if not pending or pending[-1].state == BUILT:  # a sent delivery's verdict is collected regardless
                self.gate(cycle)
        asked = self.resend_requested(cycle, mode) if mode == "P" else None
        rec = self.submit(cycle, out, mode, units, wait)
        if rec is None and asked is not None:
            self._nothing_new_for_resend(asked, out)
        return rec

    def _nothing_new_for_resend(self, asked: Record, out: Outcome) -> None:
        out.add(event="hq_request", cycle=asked.cycle, delivery=asked.check_name,
                result="HQ asked for a resend, but the exports have not changed: nothing sent. Correct the exports "
                       "(see HQ's comments: province-agent status), then run again / 总部要求重报，但导出文件未变化，"
                       "未发送；请按总部意见修改导出文件后重新运行")
        out.worst(EXIT_ACTION)

    def check(self, cycle: str, out: Outcome, mode: str = "P", units: list[str] | None = None,
              cap: int = 1000) -> tuple[Report, Path, Path, Path]:
        """Build the cycle's delivery from the exports and validate it as HQ will, sending nothing.

        Fetches what HQ publishes first when it can be reached (else checks with what was fetched
        before, and says so). The delivery is written to ``<state_dir>/check/<cycle>/<name>/``
        (never the spool, never recorded as a delivery); the full report is kept as
        ``reports/check_<name>.json`` and ``.txt``. Returns (report, folder, json, text).
        """
        from .mapping import build_delivery

        self.refresh_offline_ok(out)
        try:
            resend = self._next_resend(cycle, mode)
        except (CredentialsError, TransportError, HttpError):
            resend = self.state.next_resend(cycle, mode)
        folder = self.config.state_dir / "check" / cycle / f"{mode}_{self.config.party}_{cycle}_{resend:02d}"
        shutil.rmtree(folder.parent, ignore_errors=True)
        try:
            build_delivery(self.config, self.spec, cycle, resend, folder, mode=mode, units=units)
        except ExportProblems as exc:  # kept like a report, so the whole list can be read again or mailed
            json_path, text_path = self.state.report_paths(f"check_{folder.name}")
            found = [p.as_dict() if callable(getattr(p, "as_dict", None)) else problem_line(p).strip()
                     for p in exc.problems]
            report_fn = getattr(exc, "report", None)
            text = str(report_fn()) if callable(report_fn) else "\n".join([str(exc), *map(problem_line, exc.problems)])
            write_report_files(json_path, text_path, {"delivery": folder.name, "status": "not built",
                                                      "problems": found}, text + "\n")
            out.add(event="check", cycle=cycle, delivery=folder.name, status="not built: problems in the exports",
                    problems=len(exc.problems), report=str(text_path))
            raise
        files = sorted(p for p in folder.iterdir() if p.is_file())
        report = validate_delivery(files, self.spec, self.context_for(cycle, mode, out, received=True),
                                   ValidationOptions(cap=cap))
        json_path, text_path = self.keep_local_report(report, folder)
        out.add(event="check", cycle=cycle, delivery=report.delivery, status=report.status, errors=report.errors,
                warnings=report.warnings, report=str(text_path))
        if report.status == REJECTED:
            out.worst(1)
        return report, folder, json_path, text_path

    def run(self, out: Outcome) -> Outcome:
        """The scheduled job: refresh, finish what is pending, send what is due and ready, one line per cycle."""
        with RunLock(self.config.state_dir):
            calendar = self.refresh(out)
            touched: dict[str, str] = {}  # cycle -> what this run found or did, for its line
            for rec in self.state.pending():
                try:
                    if rec.state == BUILT:  # a sent delivery's verdict is collected whatever the calendar says now
                        self.gate(rec.cycle)
                except ActionNeeded as exc:
                    touched[rec.cycle] = "built, not sent: cycle closed / 周期已关闭"
                    log.error("%s", exc)
                    out.worst(EXIT_ACTION)
                    continue
                if rec.state == BUILT:
                    rec = self.send(rec, out)
                if rec.state == SENT:
                    self.collect(rec, out)
                touched.setdefault(rec.cycle, "")
            due = self.due_cycles(calendar)
            for c in due:
                if any(r.state in (BUILT, SENT) for r in self.state.for_cycle(c.id)):
                    continue  # sent above; its verdict is still pending
                asked = self.resend_requested(c.id)
                if self.state.accepted(c.id) is not None and asked is None:
                    continue
                last = self.state.for_cycle(c.id)
                if asked is None and last and last[-1].state == JUDGED and last[-1].status not in GOOD:
                    touched[c.id] = "rejected by HQ: fix the exports, then `province-agent submit --cycle " \
                                    f"{c.id}` / 总部拒收：请修改导出文件后重新报送"
                    out.worst(1)
                    continue
                if not self.ready(c.id):
                    touched[c.id] = "exports not ready yet / 导出文件尚未就绪"
                    if asked is not None:
                        out.worst(EXIT_ACTION)
                    continue
                try:
                    sent = self.submit(c.id, out)
                    if sent is None and asked is not None:
                        self._nothing_new_for_resend(asked, out)
                        touched[c.id] = "HQ asked for a resend; exports unchanged, nothing sent / 总部要求重报，导出未变"
                except RejectedError as exc:
                    log.error("%s", exc)
                    touched[c.id] = f"rejected locally, not sent: `province-agent check --cycle {c.id}` / 本地校验未通过"
                    out.worst(1)
                except AgentError as exc:
                    if exc.exit_code in (2, 3, 4):
                        raise
                    log.error("%s", exc)
                    touched[c.id] = f"{exc.label}: {exc}"
                    out.worst(exc.exit_code)
            for cid in sorted(set(touched) | {c.id for c in due}):
                self._cycle_line(cid, calendar, touched.get(cid, ""), out)
            if not any(e["event"] == "cycle" for e in out.events):
                out.add(event="run", result="nothing due / 没有到期的周期")
        return out

    def _cycle_line(self, cycle: str, calendar: list[CycleInfo], note: str, out: Outcome) -> None:
        """One line for a cycle: its calendar state, its latest delivery and how it stands, HQ's requests."""
        info = next((c for c in calendar if c.id == cycle), None)
        when = "-"
        if info is not None:
            when = f"{info.state}, deadline {info.deadline[:8]}"
            if info.state == "closed" and exception_valid(info):
                when += f", exception until {info.exception_until}"
        records = self.state.for_cycle(cycle)
        last = records[-1] if records else None
        if note:
            stands = note
        elif last is None:
            stands = "nothing sent yet / 尚未报送"
        elif last.state == SENT:
            stands = "sent, waiting for HQ's verdict / 已发送，等待总部结果"
        elif last.state == BUILT:
            stands = "built, not sent yet / 已生成，未发送"
        elif last.state == LOCAL_REJECTED:
            stands = "rejected locally, not sent / 本地校验未通过"
        else:
            stands = {"accepted": "accepted / 已接收", "accepted_with_warnings": "accepted with warnings / 已接收（有警告）",
                      "rejected": "rejected by HQ / 总部拒收"}.get(last.status or "", last.status or "-")
        asked = ""
        if last is not None and last.status in GOOD and any(e.get("event") == "hq_request" and e.get("cycle") == cycle
                                                            for e in out.events):
            asked = "HQ asks for a resend / 总部要求重报"
        out.add(event="cycle", cycle=cycle, due=info is not None and info in self.due_cycles(calendar),
                calendar=when, delivery=last.check_name if last else "-", result=stands,
                **({"hq_request": asked} if asked else {}))

    def status(self) -> list[Record]:
        """Every delivery the agent knows, newest first."""
        return self.state.all()

    def reminders(self) -> list[dict[str, Any]]:
        """HQ's reminders before deadlines whose deadline is still ahead (empty when HQ cannot be reached)."""
        try:
            found = self.transport.reminders()
        except CredentialsError:
            raise
        except (OSError, http.client.HTTPException, AgentError, HttpError) as exc:  # offline: status still works
            log.info("HQ's reminders could not be read (%s)", exc)
            return []
        now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m%d%H%M%S")
        return [r for r in found if str(r.get("deadline_beijing") or "99999999999999") > now]

    def comments(self, rec: Record) -> list[str]:
        """HQ's review comments on a sent delivery (empty when HQ cannot be reached: status works offline)."""
        if rec.state not in (SENT, JUDGED):
            return []
        try:
            transport = self.transport
        except AgentError as exc:  # e.g. no token configured
            log.info("HQ's comments on %s could not be read (%s)", rec.check_name, exc)
            return []
        try:
            return transport.comments(Receipt(rec.server_id, rec.check_name))
        except CredentialsError:
            raise  # the token is refused: say so once, clearly (exit 4), rather than show nothing
        except (OSError, http.client.HTTPException, AgentError, HttpError) as exc:  # HQ unreachable or refusing: not fatal here
            log.info("HQ's comments on %s could not be read (%s)", rec.check_name, exc)
            return []
