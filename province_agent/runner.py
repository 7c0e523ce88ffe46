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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from schemas import Spec, SpecError, load_spec, with_code_versions
from schemas.conventions import CheckFile, Cycle, DataFileName
from schemas.lists import ListHistory, entry_from_row
from schemas.validation import REJECTED, ValidationContext, render_text, validate_delivery
from schemas.validation.readers import text_lines

from ._exceptions import AgentError, RejectedError, TransportError
from .config import AgentConfig
from .lock import RunLock
from .retry import with_retries
from .state import BUILT, GOOD, JUDGED, LOCAL_REJECTED, SENT, Record, State
from .transport.base import CycleInfo, Progress, Receipt, Transport
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
        """Keep the most serious exit status (3 transport > 1 rejected > 0)."""
        order = {0: 0, 1: 1, 3: 2, 2: 3}
        if order.get(code, 0) > order.get(self.exit_code, 0):
            self.exit_code = code


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
        return with_retries(what, fn, self.config.retry, self.transport.transient, sleep=self.sleep)

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
        target = self.config.state_dir / CODE_LISTS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(additions, ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, target)  # a crash leaves the old file or the new one, never half of one
        self.spec = spec
        out.add(event="code_lists", result=result, versions=len(additions), generation=doc.get("generation", ""))
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
                                         f"({report.errors} error(s)): {render_text(report, 5)}")
                changes = self._changes(files)
                folder = self.config.lists_dir / version
                shutil.rmtree(folder, ignore_errors=True)
                folder.parent.mkdir(parents=True, exist_ok=True)
                files[0].parent.rename(folder)
                self.state.add_list_version(version, folder, sum(changes.values()))
                kept[version] = {"version": version, "rows": sum(changes.values())}
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

        server_max = None
        try:
            server_max = self.transport.max_resend(cycle)
        except self.transport.transient as exc:
            log.warning("could not ask HQ for the last resend number (%s); using the local record", exc)
        resend = self.state.next_resend(cycle, mode, server_max)
        spool = self.config.spool_dir / cycle / f"{mode}_{self.config.party}_{cycle}_{resend:02d}"
        shutil.rmtree(spool, ignore_errors=True)
        check = build_delivery(self.config, self.spec, cycle, resend, spool, mode=mode, units=units)
        files = sorted(p for p in spool.iterdir() if p.is_file())
        content = content_digest(files)
        done = self.state.accepted(cycle, mode)
        if done is not None and done.content == content:
            shutil.rmtree(spool, ignore_errors=True)
            out.add(event="submit", cycle=cycle, result="unchanged since accepted", resend=f"{done.resend:02d}",
                    delivery=done.server_id)
            return None
        report = validate_delivery(files, self.spec, self.list_context(cycle))
        unit_codes = sorted({DataFileName.parse(p.name).unit for p in files if p != check})
        if report.status == REJECTED:
            self.state.add(cycle, mode, resend, check.name[:-4], spool, unit_codes, content, LOCAL_REJECTED)
            out.add(event="submit", cycle=cycle, result="rejected locally, not sent", errors=report.errors,
                    warnings=report.warnings)
            raise RejectedError(f"{check.name[:-4]} would be rejected; not sent.\n{render_text(report, 50)}")
        rec = self.state.add(cycle, mode, resend, check.name[:-4], spool, unit_codes, content)
        out.add(event="built", cycle=cycle, delivery=rec.check_name, units=",".join(unit_codes),
                warnings=report.warnings)
        return rec

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
                out.add(event="verdict", cycle=rec.cycle, delivery=rec.check_name, id=rec.server_id,
                        status=verdict.status, errors=verdict.errors, warnings=verdict.warnings,
                        codes=",".join(f"{c['code']}x{c['count']}" for c in verdict.counts) or "-",
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

    def run(self, out: Outcome) -> Outcome:
        """The scheduled job; does nothing when everything due is already accepted."""
        with RunLock(self.config.state_dir):
            self.fetch_code_lists(out)
            self.fetch_list(out)
            for rec in self.state.pending():
                if rec.state == BUILT:
                    rec = self.send(rec, out)
                if rec.state == SENT:
                    self.collect(rec, out)
            calendar = self._retry("reading the calendar", self.transport.calendar)
            for c in self.due_cycles(calendar):
                if self.state.accepted(c.id) is not None:
                    continue
                if any(r.state in (BUILT, SENT) for r in self.state.for_cycle(c.id)):
                    continue  # sent above; its verdict is still pending
                last = self.state.for_cycle(c.id)
                if last and last[-1].state == JUDGED and last[-1].status not in GOOD:
                    out.add(event="cycle", cycle=c.id, result="rejected by HQ; fix the exports and run submit",
                            delivery=last[-1].check_name)
                    out.worst(1)
                    continue
                if not self.ready(c.id):
                    out.add(event="cycle", cycle=c.id, result="exports not ready yet")
                    continue
                try:
                    self.submit(c.id, out)
                except RejectedError as exc:
                    log.error("%s", exc)
                    out.worst(1)
            if not out.events:
                out.add(event="run", result="nothing to do")
        return out

    def status(self) -> list[Record]:
        """Every delivery the agent knows, newest first."""
        return self.state.all()

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
        except (OSError, http.client.HTTPException, AgentError, HttpError) as exc:  # HQ unreachable or refusing: not fatal here
            log.info("HQ's comments on %s could not be read (%s)", rec.check_name, exc)
            return []
