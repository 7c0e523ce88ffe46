"""Forwarding: the province's delivery for HQ, assembled from the approved versions, checked before it leaves.

When every local network of the province is approved, one province delivery
(``P_42_<cycle>_<rr>``) carries them all. A partial set, chosen explicitly, goes as one
delivery per network (``P_<network>_<cycle>_<rr>``): at HQ each counts for its own network,
and a province delivery must cover the whole list (X-007), which a partial one cannot.

Each unit's file holds, per approved network, the rows of the approved version that fall
to that network (its ``LATN_ID``; a contact by its customer's home network), read back
from the archived prefecture files. Which forwarded lines came from which prefecture
file and line is kept in runs (``ForwardLine``), so HQ's findings can be sent back to the
prefecture whose row they are about. The assembled delivery is validated with the same
engine and the context HQ will use (its deadline and state, the forward's resend order,
the province's list, the previous cycle as HQ holds it); a delivery HQ would reject never
leaves, and the refusal names the prefecture files and lines at fault. Files, the
approval manifest and the hub's own report are archived and the forward recorded in one
transaction; the forwarder sends it (``forwarder.py``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.conventions import DELIMITERS, Cycle
from schemas.validation import ValidationContext, validate_delivery
from schemas.validation.report import REJECTED, Report
from schemas.writer import DeliveryWriter, UnitWriter

from ..admin.services import CycleExceptionService
from ..audit.services import record
from ..clock import as_utc, beijing_stamp, iso, utcnow
from ..code_lists.services import live_spec
from ..consolidation.models import ContactFact
from ..cycles.models import ReportingCycle
from ..errors import Conflict, NotFound, Unprocessable
from ..lists.services import ListService
from ..runtime import Runtime
from ..storage.scratch import make_dir
from ..submissions.annexes import MANIFEST_FORMAT, MANIFEST_SUFFIX
from ..submissions.models import ACCEPTED, ACCEPTED_WITH_WARNINGS, Delivery, UnitVersion
from ..submissions.rows import located_rows
from .approval import ApprovalService, NetworkApproval
from .models import BUILT, JUDGED, Forward, ForwardLine, ForwardSource, HubCycle

log = logging.getLogger(__name__)
FORWARD_KIND = "kam-forward"  # scratch folders (storage/scratch.py): swept if the process is killed
CONTACTS = "31202"
MAX_RESEND = 99


@dataclass
class _Run:
    """Consecutive forwarded lines that came from consecutive lines of one prefecture file."""

    unit: str
    file: str
    first_line: int
    count: int
    source_delivery_id: int
    source_file: str
    source_first_line: int

    def extends(self, line: int, delivery_id: int, source_file: str, source_line: int) -> bool:
        return (line == self.first_line + self.count and delivery_id == self.source_delivery_id
                and source_file == self.source_file and source_line == self.source_first_line + self.count)


class _DelimiterInValue(Exception):
    """A row's value holds the delimiter the forward is being written with."""


@dataclass
class Assembly:
    """A forward being built: its files on disk, where their lines came from, what it carries."""

    party: str
    cycle: str
    resend: int
    folder: Path
    paths: list[Path] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)
    sources: list[ForwardSource] = field(default_factory=list)
    networks: list[NetworkApproval] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)  # file name -> unit

    @property
    def check_name(self) -> str:
        """``P_42_202611_03`` (no .chk)."""
        return f"P_{self.party}_{self.cycle}_{self.resend:02d}"

    def locate(self, file: str | None, line: int | None) -> tuple[int, str, int] | None:
        """(prefecture delivery id, its file, its line) of a forwarded file's line."""
        return locate(self.runs, file, line)


def locate(runs: Any, file: str | None, line: int | None) -> tuple[int, str, int] | None:
    """Where a forwarded line came from, given its runs (``ForwardLine`` rows or ``_Run``)."""
    if file is None or line is None:
        return None
    for r in runs:
        if r.file == file and r.first_line <= line < r.first_line + r.count:
            return r.source_delivery_id, r.source_file, r.source_first_line + (line - r.first_line)
    return None


class ForwardService:
    """Builds forwards from approved versions and answers what has been forwarded."""

    def __init__(self, rt: Runtime, session: Session) -> None:
        self.rt = rt
        self.session = session
        self.province = rt.settings.hub_party
        self.approvals = ApprovalService(session, self.province, rt.archive)

    # -- reading ----------------------------------------------------------------------------------
    def forwards(self, cycle_id: str | None = None, limit: int = 200) -> list[Forward]:
        """Forwards, newest first."""
        q = select(Forward).order_by(Forward.created_at.desc(), Forward.id.desc()).limit(limit)
        if cycle_id:
            q = q.where(Forward.cycle == cycle_id)
        return list(self.session.scalars(q))

    def get(self, forward_id: int) -> Forward:
        """One forward; NotFound when there is none."""
        f = self.session.get(Forward, forward_id)
        if f is None:
            raise NotFound(f"no forward {forward_id}", f"转报 {forward_id} 不存在", code="forward_not_found")
        return f

    def containing(self, delivery_id: int) -> list[Forward]:
        """The forwards that carry rows of a prefecture delivery, newest first."""
        ids = select(ForwardSource.forward_id).join(UnitVersion, UnitVersion.id == ForwardSource.version_id) \
            .where(UnitVersion.delivery_id == delivery_id)
        return list(self.session.scalars(select(Forward).where(Forward.id.in_(ids))
                                         .order_by(Forward.created_at.desc(), Forward.id.desc())))

    def next_resend(self, cycle_id: str, upstream_max: int | None = None) -> int:
        """One past the highest resend number the hub has used for the cycle (and HQ reports, where it can)."""
        used = self.session.scalar(select(func.max(Forward.resend)).where(Forward.cycle == cycle_id))
        highest = max([n for n in (used, upstream_max) if n is not None], default=-1)
        return highest + 1

    # -- building -----------------------------------------------------------------------------------
    def build(self, cycle_id: str, actor: str, networks: list[str] | None = None,
              upstream_max: int | None = None) -> list[Forward]:
        """Assemble, check, archive and queue the forward(s) of a cycle; returns them (committed by the caller).

        ``networks`` None: every network of the province, which must all be approved (one
        province delivery). A list: exactly those networks, each approved, one delivery
        each (unless the list is every network).
        """
        cycle = self.session.get(ReportingCycle, cycle_id)
        if cycle is None:
            raise NotFound(f"no cycle {cycle_id}", f"周期 {cycle_id} 不存在", code="cycle_not_found")
        board = {n.latn_id: n for n in self.approvals.board(cycle_id)}
        chosen = list(board) if networks is None else list(dict.fromkeys(networks))
        unknown = [n for n in chosen if n not in board]
        if unknown:
            raise NotFound(f"not local networks of province {self.province}: {', '.join(unknown)}",
                           f"不是本省（{self.province}）的本地网：{', '.join(unknown)}", code="network_not_found",
                           errors={"networks": unknown})
        waiting = {n: board[n].state for n in chosen if board[n].state != "approved"}
        if waiting:
            hint = (" — approve them, or forward an explicit set of approved networks" if networks is None else "")
            raise Conflict(f"not approved for {cycle_id}: " + ", ".join(f"{n} ({s})" for n, s in waiting.items()) + hint,
                           f"{cycle_id} 期以下本地网尚未审批：" + "、".join(f"{n}（{s}）" for n, s in waiting.items()),
                           code="forward_not_approved", errors={"networks": waiting})
        if not chosen:
            raise Conflict("the province has no local networks to forward", "本省没有可转报的本地网",
                           code="forward_nothing")
        whole = set(chosen) == set(board)
        groups = [(self.province, [board[n] for n in chosen])] if whole else [(n, [board[n]]) for n in chosen]
        resend = self.next_resend(cycle_id, upstream_max)
        made = []
        for party, nets in groups:
            self._unchanged(party, cycle_id, nets)
            if resend > MAX_RESEND:
                raise Conflict(f"cycle {cycle_id} has used every resend number up to {MAX_RESEND}",
                               f"{cycle_id} 期重报序号已用尽（{MAX_RESEND}）", code="resend_exhausted")
            made.append(self._build_one(cycle, party, nets, resend, actor))
            resend += 1
        return made

    def _unchanged(self, party: str, cycle_id: str, nets: list[NetworkApproval]) -> None:
        """Refuse to forward again exactly what the last forward of this party carried (unless HQ rejected it)."""
        last = self.session.scalar(select(Forward).where(Forward.party == party, Forward.cycle == cycle_id)
                                   .order_by(Forward.resend.desc()).limit(1))
        if last is None or (last.state == JUDGED and last.hq_status not in (ACCEPTED, ACCEPTED_WITH_WARNINGS)) \
                or last.hq_review_state == "resend_requested":
            return
        carried = {(s.unit, s.latn_id, s.version_id) for s in last.sources}
        now = {(c.unit, n.latn_id, c.version_id) for n in nets for c in n.counted.values()}
        if carried == now:
            raise Conflict(f"{last.check_name} already carries exactly these approved versions ({last.state})",
                           f"{last.check_name} 已包含完全相同的已审批版本（{last.state}）", code="forward_unchanged",
                           errors={"forward": last.id, "check": last.check_name})

    def _build_one(self, cycle: ReportingCycle, party: str, nets: list[NetworkApproval], resend: int,
                   actor: str) -> Forward:
        spec = live_spec(self.session, self.rt.spec)
        folder = make_dir(FORWARD_KIND)
        try:
            asm = Assembly(party, cycle.id, resend, folder, networks=nets)
            try:
                self._write(spec, cycle, asm, "PIPE")
            except _DelimiterInValue:
                # A value from an XML source holds a '|': the forward goes with the standard's
                # unit separator instead, which no valid value can hold (a control character, E310).
                shutil.rmtree(folder)
                folder.mkdir()
                asm = Assembly(party, cycle.id, resend, folder, networks=nets)
                self._write(spec, cycle, asm, "US")
            report = self._validate(spec, cycle, asm)
            if report.status == REJECTED:
                # The caller's transaction is rolled back: it records the refusal (record_refused).
                raise Unprocessable(
                    f"{asm.check_name} would be rejected by HQ ({report.errors} error(s)); nothing was sent",
                    f"{asm.check_name} 会被总部拒收（{report.errors} 个错误），未发送", code="forward_invalid",
                    errors=[self._mapped(asm, f.as_dict()) for f in report.sorted_findings()][:200])
            return self._record(asm, report, actor)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _mapped(self, asm: Assembly, finding: dict[str, Any]) -> dict[str, Any]:
        """A finding on a forwarded file, with the prefecture delivery, file and line it is about."""
        where = asm.locate(finding.get("file"), finding.get("line"))
        if where is not None:
            d = self.session.get(Delivery, where[0])
            finding.update(source_delivery=where[0], source_check=d.check_name if d else None, source_file=where[1],
                           source_line=where[2])
        return finding

    # -- writing the files ------------------------------------------------------------------------------
    def _write(self, spec: Spec, cycle: ReportingCycle, asm: Assembly, delimiter: str) -> None:
        writer = DeliveryWriter(spec, asm.folder, "P", asm.party, cycle.id, asm.resend, delimiter=delimiter)
        sep = DELIMITERS[delimiter]
        due = [u for u in cycle.units if spec.has_unit(u)]
        for unit in due:
            # One pass over each approved version's file(s), keeping the rows of its networks.
            by_version: dict[int, list[str]] = {}
            for n in asm.networks:
                c = n.counted.get(unit)
                if c is not None:
                    by_version.setdefault(c.version_id, []).append(n.latn_id)
            if not by_version:
                continue
            out: UnitWriter | None = None  # opened at the first row: the spec allows no empty file (E112)
            try:
                for version_id, latns in sorted(by_version.items()):
                    version = self.session.get(UnitVersion, version_id)
                    assert version is not None
                    for src_file, src_line, row in self._rows_of(spec, version, unit, set(latns)):
                        if any(isinstance(v, str) and sep in v for v in row.values()):
                            raise _DelimiterInValue(unit)
                        out = out or writer.unit(unit)
                        out.write(row)
                        self._note(asm, unit, out.name, out.rows, version.delivery_id, src_file, src_line)
                    for n in asm.networks:
                        if n.latn_id in latns:
                            asm.sources.append(ForwardSource(unit=unit, latn_id=n.latn_id, version_id=version_id,
                                                             rows=n.counted[unit].rows))
            except BaseException:
                if out is not None:
                    out.out.abort()
                raise
            if out is not None:
                out.close()
                asm.units[out.name] = unit
        check = writer.close()
        asm.paths = sorted(p for p in asm.folder.iterdir() if p.is_file() and p != check) + [check]

    def _rows_of(self, spec: Spec, version: UnitVersion, unit: str,
                 latns: set[str]) -> Iterator[tuple[str, int, dict[str, str]]]:
        """The rows of a version that fall to the given networks, with their file and line."""
        delivery = version.delivery
        if unit == CONTACTS:  # no LATN_ID: a contact goes with its customer's home network
            home = dict(self.session.execute(select(ContactFact.national_cust_id, ContactFact.latn_id)
                                             .where(ContactFact.version_id == version.id).distinct()).all())
            for file, line, row in located_rows(self.rt.archive, spec, delivery, unit):
                if home.get(row.get("NATIONAL_CUST_ID", "")) in latns:
                    yield file, line, row
            return
        for file, line, row in located_rows(self.rt.archive, spec, delivery, unit):
            if row.get("LATN_ID", "") in latns:
                yield file, line, row

    @staticmethod
    def _note(asm: Assembly, unit: str, file: str, line: int, delivery_id: int, src_file: str, src_line: int) -> None:
        last = asm.runs[-1] if asm.runs else None
        if last is not None and last.file == file and last.extends(line, delivery_id, src_file, src_line):
            last.count += 1
        else:
            asm.runs.append(_Run(unit, file, line, 1, delivery_id, src_file, src_line))

    # -- checking it as HQ will ------------------------------------------------------------------------------
    def _validate(self, spec: Spec, cycle: ReportingCycle, asm: Assembly) -> Report:
        ctx = self.context(cycle, asm.party)
        return validate_delivery(asm.paths, spec, ctx, self.rt.validation_options(asm.folder))

    def context(self, cycle: ReportingCycle, party: str) -> ValidationContext:
        """What HQ will know when it judges a forward: its calendar, our rights, the resend order, the list."""
        org_nets = [n.latn_id for n in self.approvals.board(cycle.id)] if party == self.province else []
        hub = self.session.get(HubCycle, cycle.id)
        state = hub.hq_state if hub is not None else cycle.state
        deadline = as_utc(hub.hq_deadline) if hub is not None else as_utc(cycle.deadline)
        granted = CycleExceptionService(self.session).valid(cycle.id, self.province, utcnow())
        if granted is not None:
            state, deadline = "open", as_utc(granted.until)
        last = self.session.scalar(select(func.max(Forward.resend)).where(Forward.party == party,
                                                                          Forward.cycle == cycle.id))
        ctx = ValidationContext(
            authorised_parties=frozenset({self.province, *org_nets, party}), account=f"hub {self.province}",
            received_at=beijing_stamp(utcnow()), known_cycles=frozenset(self.session.scalars(select(ReportingCycle.id))),
            cycle_state=state, units_due=frozenset(cycle.units), deadline=beijing_stamp(deadline), last_resend=last)
        listed = ListService(self.session, self.rt.archive, self.rt.spec).cycle_list(cycle.id, self.province)
        if listed is not None:  # HQ checks a network's delivery against the province's list, not its part
            ctx.list_ids, ctx.list_version, ctx.list_explain = listed.ids, listed.label, listed.explain
            ctx.list_complete = party == self.province
        ctx.previous = self._previous(party, cycle.id)
        return ctx

    def _previous(self, party: str, cycle_id: str) -> dict[str, dict[str, dict[str, str]]] | None:
        """Last cycle's rows as HQ holds them: the newest forward of the party that HQ accepted."""
        try:
            prev = Cycle.parse(cycle_id).previous().id
        except ValueError:
            return None
        last = self.session.scalar(select(Forward).where(
            Forward.party == party, Forward.cycle == prev, Forward.state == JUDGED,
            Forward.hq_status.in_((ACCEPTED, ACCEPTED_WITH_WARNINGS))).order_by(Forward.resend.desc()).limit(1))
        if last is None:
            return None
        spec = self.rt.spec
        holder = _ArchivedDelivery(last)
        out: dict[str, dict[str, dict[str, str]]] = {}
        for unit in spec.units:
            wanted = [f.opening_of or f.id for f in unit.fields if f.opening_of or f.watch]
            if unit.direction != "up" or not wanted:
                continue
            keys = [k for k in unit.primary_key if k != "CYCLE_ID"]
            rows = {"\x1f".join(r.get(k, "") for k in keys): {f: r.get(f, "") for f in wanted}
                    for _f, _l, r in located_rows(self.rt.archive, spec, holder, unit.code)}  # type: ignore[arg-type]
            if rows:
                out[unit.name] = rows
        return out or None

    # -- recording ---------------------------------------------------------------------------------------
    def _record(self, asm: Assembly, report: Report, actor: str) -> Forward:
        archive = self.rt.archive
        files = []
        for p in asm.paths:
            staged = archive.stage(label=p.name)
            with p.open("rb") as fh:
                while block := fh.read(1 << 20):
                    staged.write(block)
            files.append({"name": p.name, "sha256": staged.commit(), "size": staged.size,
                          "unit": asm.units.get(p.name)})
        approvals = [{"latn_id": n.latn_id, "by": n.last_approval.by if n.last_approval else "",
                      "at": iso(n.last_approval.at) if n.last_approval else "",
                      "versions": [{"unit": c.unit, "delivery": c.check_name, "version": c.version_number,
                                    "party": c.party} for c in sorted(n.counted.values(), key=lambda c: c.unit)]}
                     for n in asm.networks]
        manifest = {"format": MANIFEST_FORMAT, "hub": self.province, "check": asm.check_name, "party": asm.party,
                    "cycle": asm.cycle, "forwarded_by": actor, "forwarded_at": iso(utcnow()), "networks": approvals}
        manifest_key = archive.put_bytes(json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
        report_key = archive.put_bytes(json.dumps(report.as_dict(), ensure_ascii=False).encode("utf-8"))
        fwd = Forward(party=asm.party, cycle=asm.cycle, resend=asm.resend, check_name=asm.check_name, state=BUILT,
                      files=files, manifest_sha256=manifest_key, report_sha256=report_key,
                      hub_warnings=report.warnings, networks=[n.latn_id for n in asm.networks], approvals=approvals,
                      created_by=actor, created_at=utcnow())
        fwd.sources = asm.sources
        try:
            with self.session.begin_nested():
                self.session.add(fwd)
                self.session.flush()
        except IntegrityError:
            raise Conflict(f"{asm.check_name} was just built by someone else; look at the forwards and try again",
                           f"{asm.check_name} 刚被他人生成，请查看转报记录后重试", code="forward_race") from None
        self.session.add_all(ForwardLine(forward_id=fwd.id, unit=r.unit, file=r.file, first_line=r.first_line,
                                         count=r.count, source_delivery_id=r.source_delivery_id,
                                         source_file=r.source_file, source_first_line=r.source_first_line)
                             for r in asm.runs)
        record(self.session, actor, "hub.forward", f"forward:{fwd.id}", check=asm.check_name, cycle=asm.cycle,
               party=asm.party, networks=fwd.networks, files=[f["name"] for f in files], warnings=report.warnings,
               sources=len(asm.sources))
        self.session.flush()
        return fwd

    # -- the files, for sending ----------------------------------------------------------------------------------
    def materialise(self, fwd: Forward, folder: Path) -> list[Path]:
        """The forward's files and manifest under their names in ``folder``, data files first, check file last."""
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for f in [*fwd.files, {"name": fwd.check_name + MANIFEST_SUFFIX, "sha256": fwd.manifest_sha256}]:
            target = folder / f["name"]
            with self.rt.archive.open(f["sha256"]) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.append(target)
        checks = [p for p in out if p.name.endswith(".chk")]
        return [p for p in out if p not in checks] + checks


class _ArchivedDelivery:
    """A forward's archived files seen as a delivery's (``located_rows`` reads ``files``)."""

    @dataclass(frozen=True)
    class _File:
        name: str
        sha256: str
        unit: str | None

    def __init__(self, fwd: Forward) -> None:
        self.files = [self._File(f["name"], f["sha256"], f.get("unit")) for f in fwd.files]


def record_refused(session: Session, cycle_id: str, actor: str, exc: Unprocessable) -> None:
    """Put a refused forward on the audit record in a fresh transaction of the caller, who commits it."""
    if exc.code != "forward_invalid":
        return
    findings = exc.errors if isinstance(exc.errors, list) else []
    codes: dict[str, int] = {}
    for f in findings:
        codes[str(f.get("code"))] = codes.get(str(f.get("code")), 0) + 1
    record(session, actor, "hub.forward_refused", f"cycle:{cycle_id}", message=exc.message, codes=codes,
           sources=sorted({f"{f['source_check']}:{f.get('source_file')}" for f in findings
                           if f.get("source_check")})[:50])


def forward_deadline_passed(session: Session, cycle_id: str, now: dt.datetime | None = None) -> bool:
    """Whether HQ's deadline for the cycle is past (a forward now is late at HQ)."""
    hub = session.get(HubCycle, cycle_id)
    return hub is not None and as_utc(hub.hq_deadline) < (now or utcnow())


def wait_until_judged(rt: Runtime, forward_id: int, timeout: float, interval: float = 0.1) -> Forward:
    """Block until HQ's verdict on a forward is recorded at the hub; the forward, detached (TimeoutError if not)."""
    end = time.monotonic() + timeout
    while True:
        with rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            if fwd is None:
                raise LookupError(f"no forward {forward_id}")
            if fwd.state == JUDGED:
                s.expunge(fwd)
                return fwd
            last_error = fwd.last_error
        if time.monotonic() > end:
            raise TimeoutError(f"HQ did not judge {fwd.check_name} within {timeout:.0f} s "
                               f"(last error: {last_error or '-'})")
        time.sleep(interval)
