"""Down the tree: what the hub fetches from HQ and serves its prefectures.

HQ's calendar (states, deadlines, this province's exceptions), every published list
version's slice for the province, and the code-list versions HQ has published. The hub's
own calendar is HQ's, except that the province may set an earlier internal deadline per
cycle (``set_internal_deadline``): its prefectures see that one, forwards are judged late
against HQ's. Each list version is loaded and published at the hub as HQ published it, and
each local network gets its own part (``ListService.publish(network_parts=True)``).

A sync is idempotent: what the hub has already is left as it is. HQ unreachable is not an
error for the hub's own work: prefectures keep delivering against what was fetched last.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from province_agent.transport.base import CycleInfo, Transport
from schemas import SpecError, with_code_versions
from schemas.conventions import Cycle

from ..admin.models import CycleException
from ..audit.services import record
from ..clock import as_utc, parse_beijing_stamp, utcnow
from ..code_lists.models import PUBLISHED, CodeListVersionRecord
from ..code_lists.services import published_additions
from ..cycles.models import CLOSED, OPEN, ReportingCycle
from ..cycles.services import cycle_name
from ..errors import BadRequest, Conflict, NotFound
from ..lists.models import ListVersion
from ..lists.services import ListService
from ..runtime import Runtime
from .models import HubCycle

log = logging.getLogger(__name__)
HQ = "hq"  # the actor HQ's decisions are recorded under at the hub


@dataclass
class SyncResult:
    """What one sync changed at the hub."""

    cycles_added: list[str] = field(default_factory=list)
    cycles_changed: list[str] = field(default_factory=list)
    list_versions: list[str] = field(default_factory=list)
    code_versions: int = 0
    exceptions: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything changed."""
        return bool(self.cycles_added or self.cycles_changed or self.list_versions or self.code_versions
                    or self.exceptions)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"cycles_added": self.cycles_added, "cycles_changed": self.cycles_changed,
                "list_versions": self.list_versions, "code_versions": self.code_versions,
                "exceptions": self.exceptions}


def prefecture_deadline(hub_cycle: HubCycle) -> dt.datetime:
    """The deadline the hub's prefectures deliver by: the internal one where set, else HQ's."""
    return as_utc(hub_cycle.internal_deadline or hub_cycle.hq_deadline)


class HubSync:
    """Fetches HQ's calendar, list versions and code lists into the hub."""

    def __init__(self, rt: Runtime, transport: Transport) -> None:
        self.rt = rt
        self.transport = transport
        self.province = rt.settings.hub_party

    def run(self) -> SyncResult:
        """One sync; raises the transport's errors when HQ cannot be reached."""
        result = SyncResult()
        calendar = self.transport.calendar()
        with self.rt.db.session() as s:
            self._calendar(s, calendar, result)
        doc = self.transport.code_lists()
        if doc is not None:
            with self.rt.db.session() as s:
                result.code_versions = self._code_lists(s, doc)
        self._lists(result)
        with self.rt.db.session() as s:
            record(s, HQ, "hub.sync", f"party:{self.province}", **result.as_dict())
        self._to_outboxes(result)
        return result

    # -- the calendar ---------------------------------------------------------------------------
    def _calendar(self, s: Session, calendar: list[CycleInfo], result: SyncResult) -> None:
        for info in calendar:
            try:
                parsed = Cycle.parse(info.id)
                hq_deadline = parse_beijing_stamp(info.deadline)
            except ValueError:
                log.warning("HQ's calendar has an unusable cycle %r (deadline %r); skipped", info.id, info.deadline)
                continue
            state = info.state if info.state in ("planned", OPEN, CLOSED) else OPEN  # an old HQ's SFTP: no state
            hub = s.get(HubCycle, info.id)
            if hub is None:
                hub = HubCycle(cycle=info.id, hq_deadline=hq_deadline, hq_state=state)
                s.add(hub)
            hub.hq_deadline, hub.hq_state, hub.synced_at = hq_deadline, state, utcnow()
            units = ",".join(info.units_due)
            cycle = s.get(ReportingCycle, info.id)
            deadline = prefecture_deadline(hub)
            if cycle is None:
                s.add(ReportingCycle(id=info.id, freq=parsed.freq, name=cycle_name(parsed), begin_date=parsed.begin,
                                     end_date=parsed.end, deadline=deadline, units_due=units, state=state,
                                     remark="HQ / 总部"))
                result.cycles_added.append(info.id)
            elif (cycle.state, as_utc(cycle.deadline), cycle.units_due) != (state, deadline, units):
                cycle.state, cycle.deadline, cycle.units_due = state, deadline, units
                result.cycles_changed.append(info.id)
            if info.exception_until:
                result.exceptions += self._exception(s, info.id, parse_beijing_stamp(info.exception_until))
        s.flush()

    def _exception(self, s: Session, cycle: str, until: dt.datetime) -> int:
        """HQ's exception for this province, granted to all its prefectures at the hub."""
        known = s.scalar(select(CycleException).where(CycleException.cycle_id == cycle,
                                                      CycleException.province == self.province,
                                                      CycleException.until == until))
        if known is not None or until <= utcnow():
            return 0
        s.add(CycleException(cycle_id=cycle, province=self.province, until=until, reason="HQ / 总部",
                             granted_by=HQ))
        return 1

    # -- code lists ---------------------------------------------------------------------------------
    def _code_lists(self, s: Session, doc: dict[str, Any]) -> int:
        additions = list(doc.get("additions") or [])
        have = {(a["domain"], a["version"]["version"]) for a in published_additions(s)}
        new = [a for a in additions if (a.get("domain"), (a.get("version") or {}).get("version")) not in have]
        if not new:
            return 0
        try:
            with_code_versions(self.rt.spec, additions)  # exactly what HQ validates with, or nothing
        except (SpecError, KeyError, TypeError) as exc:
            raise BadRequest(f"HQ's code lists do not fit this hub's standard ({self.rt.spec.version}): {exc}",
                             f"总部的代码表与本枢纽的标准（{self.rt.spec.version}）不符：{exc}",
                             code="upstream_code_lists") from None
        now = utcnow()
        for a in new:
            v = a["version"]
            s.add(CodeListVersionRecord(
                domain=a["domain"], version=v["version"], effective_from=dt.date.fromisoformat(v["effective_from"]),
                based_on=v.get("based_on", ""), add=v.get("add", []), update=v.get("update", []),
                remove=v.get("remove", []), note_zh=v.get("note_zh", ""), note_en=v.get("note_en", ""),
                state=PUBLISHED, created_by=HQ, created_at=now, published_by=HQ, published_at=now))
            # Published in HQ's order: the loader lays them over each other in that order.
            s.flush()
        record(s, HQ, "hub.code_lists", f"party:{self.province}", versions=[
            f"{a['domain']} {a['version']['version']}" for a in new])
        return len(new)

    # -- the list --------------------------------------------------------------------------------
    def _lists(self, result: SyncResult) -> None:
        with self.rt.db.session() as s:
            known = frozenset(s.scalars(select(ListVersion.version)))
        tmp = Path(tempfile.mkdtemp(prefix="hub-lists-", dir=self.rt.settings.data_path))
        try:
            for version, files in self.transport.fetch_lists(tmp, known):
                check = next((p for p in files if p.name.endswith(".chk")), None)
                if check is None or version in known:
                    continue
                with self.rt.db.session() as s:
                    service = ListService(s, self.rt.archive, self.rt.spec, actor=HQ)
                    try:
                        listv = service.load(check, version, party=self.province)
                    except Conflict as exc:
                        if exc.code == "list_version_stale":  # HQ's older version, after a newer one: history only
                            log.warning("list version %s from HQ is older than the one in force; not loaded", version)
                            continue
                        raise
                    # HQ decided; the hub serves it (its impact is HQ's to weigh).
                    service.publish(listv, HQ, confirm_impact=True, network_parts=True)
                result.list_versions.append(version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- serving the prefectures --------------------------------------------------------------------
    def _to_outboxes(self, result: SyncResult) -> None:
        from ..sftp.outbox import place_calendar, place_code_lists, place_list_slices

        if result.cycles_added or result.cycles_changed or result.exceptions:
            place_calendar(self.rt)
        if result.code_versions:
            place_code_lists(self.rt)
        for version in result.list_versions:
            place_list_slices(self.rt, version)


def set_internal_deadline(session: Session, cycle_id: str, deadline: dt.datetime | None, actor: str) -> HubCycle:
    """Set (or with None clear) the province's deadline for its prefectures; it must not be after HQ's.

    In the caller's transaction; once it commits, ``sftp.outbox.place_calendar`` gives the
    prefectures' SFTP outboxes the new calendar.
    """
    hub = session.get(HubCycle, cycle_id)
    cycle = session.get(ReportingCycle, cycle_id)
    if hub is None or cycle is None:
        raise NotFound(f"cycle {cycle_id} has not come from HQ (run a sync)", f"周期 {cycle_id} 尚未从总部同步",
                       code="cycle_not_found")
    if deadline is not None:
        if deadline.tzinfo is None:
            raise BadRequest("the deadline needs a time zone", "截止时间需要时区", code="bad_deadline")
        if as_utc(deadline) > as_utc(hub.hq_deadline):
            raise BadRequest(f"the internal deadline must not be after HQ's ({as_utc(hub.hq_deadline).isoformat()})",
                             f"内部截止时间不能晚于总部截止时间（{as_utc(hub.hq_deadline).isoformat()}）",
                             code="internal_deadline_after_hq")
    hub.internal_deadline = as_utc(deadline) if deadline is not None else None
    hub.set_by, hub.set_at = actor, utcnow()
    cycle.deadline = prefecture_deadline(hub)
    record(session, actor, "hub.internal_deadline", f"cycle:{cycle_id}",
           deadline=hub.internal_deadline.isoformat() if hub.internal_deadline else None,
           hq_deadline=as_utc(hub.hq_deadline).isoformat())
    session.flush()
    return hub
