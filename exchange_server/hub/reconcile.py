"""Reconciliation: what a forward carried against the approved prefecture versions, to the fen.

For each local network of a forward and each unit: the rows and money of the approved
versions as the hub consolidated them (its facts), and the rows and money read back from
the forwarded files as HQ received them. They are equal by construction; this shows it,
per network and unit, and with HQ's verdict says what HQ now counts for the province.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from ..consolidation.models import FACTS, MONEY_SCALE
from ..storage import Archive
from ..submissions.rows import located_rows
from .forward import CONTACTS, _ArchivedDelivery
from .models import Forward, ForwardSource

# The money each unit carries that HQ's roll-ups add up (fact column, field id).
MONEY = {"32001": ("income_amt", "INCOME_AMT"), "32003": ("income_amt", "INCOME_AMT"),
         "31203": ("income_amt", "INCOME_AMT")}


@dataclass
class Line:
    """One network × unit: approved at the hub against forwarded to HQ."""

    latn_id: str
    unit: str
    approved_rows: int = 0
    forwarded_rows: int = 0
    approved_fen: int | None = None
    forwarded_fen: int | None = None

    @property
    def equal(self) -> bool:
        """Rows and money agree."""
        return self.approved_rows == self.forwarded_rows and self.approved_fen == self.forwarded_fen

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, money as exact yuan text."""
        def yuan(fen: int | None) -> str | None:
            return None if fen is None else format(Decimal(fen).scaleb(-2), "f")

        return {"latn_id": self.latn_id, "unit": self.unit, "approved_rows": self.approved_rows,
                "forwarded_rows": self.forwarded_rows, "approved_amount": yuan(self.approved_fen),
                "forwarded_amount": yuan(self.forwarded_fen), "equal": self.equal}


@dataclass
class Reconciliation:
    """A forward's reconciliation."""

    forward: Forward
    lines: list[Line] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """Everything agrees."""
        return all(line.equal for line in self.lines)

    def totals(self) -> dict[str, dict[str, int | None]]:
        """Per unit: rows and fen, approved and forwarded."""
        out: dict[str, dict[str, int | None]] = {}
        for line in self.lines:
            t = out.setdefault(line.unit, {"approved_rows": 0, "forwarded_rows": 0, "approved_fen": None,
                                           "forwarded_fen": None})
            t["approved_rows"] = int(t["approved_rows"] or 0) + line.approved_rows
            t["forwarded_rows"] = int(t["forwarded_rows"] or 0) + line.forwarded_rows
            for key in ("approved_fen", "forwarded_fen"):
                value = getattr(line, key)
                if value is not None:
                    t[key] = int(t[key] or 0) + value
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        f = self.forward
        return {"forward": f.check_name, "hq_status": f.hq_status, "hq_delivery_id": f.hq_delivery_id,
                "equal": self.equal, "lines": [line.as_dict() for line in self.lines]}


def reconcile(session: Session, archive: Archive, spec: Any, fwd: Forward) -> Reconciliation:
    """Compare a forward's files with the approved versions it was built from."""
    result: dict[tuple[str, str], Line] = {}
    sources = list(session.scalars(select(ForwardSource).where(ForwardSource.forward_id == fwd.id)))
    for s in sources:
        line = result.setdefault((s.latn_id, s.unit), Line(s.latn_id, s.unit))
        table = sa_inspect(FACTS[s.unit]).local_table
        money = MONEY.get(s.unit)
        cols = [func.count()] + ([func.coalesce(func.sum(table.c[money[0]]), 0)] if money else [])
        got = session.execute(select(*cols).where(table.c.version_id == s.version_id,
                                                  table.c.latn_id == s.latn_id)).one()
        line.approved_rows += int(got[0])
        if money:
            line.approved_fen = (line.approved_fen or 0) + int(got[1])
    holder = _ArchivedDelivery(fwd)
    home: dict[str, str] = {}
    for unit in sorted({s.unit for s in sources}):
        money = MONEY.get(unit)
        for _file, _line, row in located_rows(archive, spec, holder, unit):  # type: ignore[arg-type]
            if unit == "31201":
                home[row.get("NATIONAL_CUST_ID", "")] = row.get("LATN_ID", "")
            latn = home.get(row.get("NATIONAL_CUST_ID", ""), "") if unit == CONTACTS else row.get("LATN_ID", "")
            line = result.setdefault((latn, unit), Line(latn, unit))
            line.forwarded_rows += 1
            if money:
                amount = row.get(money[1], "")
                fen = int(Decimal(amount).scaleb(MONEY_SCALE[money[0]])) if amount else 0
                line.forwarded_fen = (line.forwarded_fen or 0) + fen
    return Reconciliation(fwd, sorted(result.values(), key=lambda x: (x.latn_id, x.unit)))
