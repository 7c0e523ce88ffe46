"""What publishing a list version would do to the data provinces have already delivered.

Before a draft is published the admin sees, for every cycle still open (or reopened for a
province by an exception), which provinces' accepted data would fail the list checks the
moment the version is in force: customers the cycle's list would then require that the
province has not reported (X-007), and customers it reported that would no longer be on its
list for the cycle (E604) — each with the entry that decides it. Publishing with such an
impact is allowed, but only knowingly (the console asks for a confirmation; ``list
publish`` for ``--yes``), and the impact is kept in the audit log.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import Spec

from ..admin.models import CycleException
from ..clock import utcnow
from ..consolidation.models import CustomerFact
from ..cycles.models import ReportingCycle
from ..org.services import OrgService
from .models import ListVersion
from .services import ListService

EXAMPLES = 20  # customers listed per province and check (the counts are exact)


@dataclass
class ProvinceImpact:
    """One province's accepted data of one cycle against the list with and without the draft."""

    prov_id: str
    name_zh: str
    name_en: str
    customers: int  # customers in its accepted 31201 for the cycle
    listed_before: int
    listed_after: int
    x007: int = 0  # listed after, not reported: would be rejected with X-007
    e604: int = 0  # reported, not listed after: would be rejected with E604
    x007_before: int = 0
    e604_before: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def newly_failing(self) -> bool:
        """Whether data that passes the list checks today would fail them once the draft is in force."""
        return (self.x007 > self.x007_before) or (self.e604 > self.e604_before)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {**self.__dict__, "newly_failing": self.newly_failing}


@dataclass
class CycleImpact:
    """One open cycle: the provinces whose accepted data the draft changes."""

    cycle: str
    state: str
    provinces: list[ProvinceImpact]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"cycle": self.cycle, "state": self.state, "provinces": [p.as_dict() for p in self.provinces]}


@dataclass
class PublishImpact:
    """Every open cycle the draft would change, and whether any province's data would newly fail."""

    version: str
    cycles: list[CycleImpact]

    @property
    def failing(self) -> list[tuple[str, ProvinceImpact]]:
        """(cycle, province) pairs whose accepted data would newly fail."""
        return [(c.cycle, p) for c in self.cycles for p in c.provinces if p.newly_failing]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (for the audit log and the console)."""
        return {"version": self.version, "cycles": [c.as_dict() for c in self.cycles],
                "newly_failing": [{"cycle": c, "prov_id": p.prov_id, "x007": p.x007, "e604": p.e604}
                                  for c, p in self.failing]}

    def summary(self) -> str:
        """One line per province that would newly fail, for the command line."""
        if not self.failing:
            return f"publishing {self.version} changes no accepted data of an open cycle into a failure"
        lines = [f"publishing {self.version} makes accepted data of open cycles fail the list checks:"]
        for cycle, p in self.failing:
            lines.append(f"  {cycle} {p.prov_id} {p.name_en}: {p.x007} listed customer(s) not reported (X-007), "
                         f"{p.e604} reported customer(s) no longer listed (E604)")
            for e in p.examples[:5]:
                lines.append(f"      {e['code']} {e['customer']}: {e['entry']}")
        return "\n".join(lines)


class ListImpactService:
    """Works out a draft's impact on the open cycles' accepted data."""

    def __init__(self, session: Session, spec: Spec) -> None:
        self.session = session
        self.lists = ListService(session, None, spec)

    def open_cycles(self, now: dt.datetime | None = None) -> list[ReportingCycle]:
        """Cycles that still take deliveries: open ones, and closed ones a province holds an exception for."""
        now = now or utcnow()
        excepted = {e.cycle_id for e in self.session.scalars(select(CycleException).where(
            CycleException.revoked_at.is_(None))) if e.valid_at(now)}
        return [c for c in self.session.scalars(select(ReportingCycle).order_by(ReportingCycle.begin_date))
                if c.state == "open" or c.id in excepted]

    def impact(self, draft: ListVersion) -> PublishImpact:
        """The draft's impact on every open cycle's accepted data, province by province."""
        org = OrgService(self.session)
        provinces = {a.code: a for a in org.provinces()}
        published = bool(self.lists.stamp())
        rows: dict[str, list[ProvinceImpact]] = {}
        cycles = self.open_cycles()
        for prov, area in provinces.items():
            reported_by_cycle = {c.id: set(self.session.scalars(select(CustomerFact.national_cust_id).where(
                CustomerFact.cycle == c.id, CustomerFact.prov_id == prov, CustomerFact.current.is_(True))))
                for c in cycles}
            if not any(reported_by_cycle.values()):
                continue  # nothing accepted: nothing the version could make fail
            # Each province's history is read once (with and without the draft), then asked per cycle.
            before_history = self.lists.history(prov) if published else None
            after_history = self.lists.history(prov, draft)
            for cycle in cycles:
                reported = reported_by_cycle[cycle.id]
                if not reported:
                    continue
                before = before_history.for_cycle(cycle.id, prov) if before_history is not None else None
                after = after_history.for_cycle(cycle.id, prov)
                before_ids = before.ids if before is not None else frozenset()
                if before_ids == after.ids:
                    continue
                x007, e604 = sorted(after.ids - reported), sorted(reported - after.ids)
                impact = ProvinceImpact(prov, area.name_zh, area.name_en, len(reported), len(before_ids),
                                        len(after.ids), len(x007), len(e604),
                                        len(before_ids - reported) if before is not None else 0,
                                        len(reported - before_ids) if before is not None else 0)
                changed = before_ids ^ after.ids
                for code, ids in (("X-007", x007), ("E604", e604)):
                    for cust in [c for c in ids if c in changed][:EXAMPLES]:
                        impact.examples.append({"code": code, "customer": cust, "entry": after.explain(cust)})
                rows.setdefault(cycle.id, []).append(impact)
        return PublishImpact(draft.version, [CycleImpact(c.id, c.state, rows[c.id]) for c in cycles if c.id in rows])
