"""Which top-500 list entries are in force for a reporting cycle, across list versions.

Both ends decide the same way (the server for its checks and roll-ups, the agent for its
local checks), so the rule lives here, in the contract.

Every published list version states, for each customer it lists, an entry valid from its
``EFF_DATE`` until its ``EXP_DATE`` (open-ended when empty; a removed entry, ``D``, carries
its last valid day). A newer version restates a customer from the day its own entry takes
effect; the days before that stay as the older versions said. So on a day ``d`` a
customer's *governing* entry is the one of the newest version that lists the customer with
``EFF_DATE <= d``, and the customer is on the list that day when that entry has not expired
(``EXP_DATE`` empty or ``>= d``).

A customer is **in force for a cycle** when it is on the list on at least one day of the
cycle's period; the entry that counts for the cycle (its lead province, level, ...) is the
one governing the last such day. A version that does not mention a customer says nothing
about it (the loader turns a customer dropped from the list into an explicit ``D`` entry, so
every removal is stated).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from .conventions import Cycle

CHANGE_NAMES = {"A": ("新增", "added"), "M": ("变更", "changed"), "D": ("删除", "removed"),
                "U": ("未变", "unchanged")}


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One customer's entry in one list version: what decides whether it is in force."""

    version: str  # 2026V02; versions order by name (the year, then the publication's number)
    cust_id: str
    lead_prov: str
    eff: dt.date
    exp: dt.date | None
    change: str = "U"
    lead_latn: str = ""  # the lead local network (a province hub serves each network its part)

    def valid_on(self, day: dt.date) -> bool:
        """Whether this entry, when it governs ``day``, keeps the customer on the list that day."""
        return self.eff <= day and (self.exp is None or day <= self.exp)

    def describe(self) -> str:
        """The entry for people, in both languages: version, change and validity."""
        zh, en = CHANGE_NAMES.get(self.change, (self.change, self.change))
        since = self.eff.strftime("%Y%m%d")
        until = self.exp.strftime("%Y%m%d") if self.exp else ""
        return (f"名单{self.version}{zh}，有效期{since}至{until or '长期'} / "
                f"list {self.version} {en}, valid {since}–{until or 'open-ended'}")


def _parse_day(text: str) -> dt.date | None:
    return dt.datetime.strptime(text, "%Y%m%d").date() if text else None


def entry_from_row(row: Mapping[str, str]) -> ListEntry:
    """A ListEntry from a 31101 record (field id -> text), as read from a list file."""
    eff = _parse_day(row["EFF_DATE"])
    assert eff is not None, "EFF_DATE is required (validated before)"
    return ListEntry(row["LIST_VERSION"], row["NATIONAL_CUST_ID"], row["LEAD_PROV_ID"], eff,
                     _parse_day(row.get("EXP_DATE", "")), row.get("CHANGE_TYPE", "U") or "U",
                     row.get("LEAD_LATN_ID", ""))


class ListHistory:
    """Every stated entry of every list version, per customer; answers what is in force when."""

    def __init__(self, entries: Iterable[ListEntry] = ()) -> None:
        self._by_customer: dict[str, list[ListEntry]] = {}
        for e in entries:
            self.add(e)

    def add(self, entry: ListEntry) -> None:
        """Add one version's entry for a customer (a version states a customer at most once)."""
        found = self._by_customer.setdefault(entry.cust_id, [])
        found.append(entry)
        if len(found) > 1 and found[-2].version > entry.version:
            found.sort(key=lambda e: e.version)

    def __len__(self) -> int:
        return len(self._by_customer)

    @property
    def versions(self) -> list[str]:
        """The versions that state at least one customer, oldest first."""
        return sorted({e.version for es in self._by_customer.values() for e in es})

    def customers(self) -> Iterator[str]:
        """Every customer any version states."""
        return iter(self._by_customer)

    def entries(self, cust_id: str) -> list[ListEntry]:
        """What every version stated about one customer, oldest version first."""
        return list(self._by_customer.get(cust_id, ()))

    @staticmethod
    def _governing(entries: list[ListEntry], day: dt.date) -> ListEntry | None:
        for e in reversed(entries):  # newest version first
            if e.eff <= day:
                return e
        return None

    def counted_entry(self, cust_id: str, begin: dt.date, end: dt.date) -> ListEntry | None:
        """The entry that counts for the period [begin, end], or None when the customer is not in force then."""
        entries = self._by_customer.get(cust_id)
        if not entries:
            return None
        # The governing entry changes only where some version's entry takes effect.
        days = sorted({begin} | {e.eff for e in entries if begin < e.eff <= end})
        counted = None
        for day in days:
            g = self._governing(entries, day)
            if g is not None and (g.exp is None or g.exp >= day):
                counted = g
        return counted

    def in_force(self, begin: dt.date, end: dt.date, province: str | None = None,
                 network: str | None = None) -> dict[str, ListEntry]:
        """Customer id -> the entry that counts, for every customer in force during [begin, end].

        With ``province``, only the customers that province leads for the period; with
        ``network`` also, only those that local network leads (its part, as a hub serves it).
        """
        out: dict[str, ListEntry] = {}
        for cust in self._by_customer:
            e = self.counted_entry(cust, begin, end)
            if e is not None and (province is None or e.lead_prov == province) and \
                    (network is None or e.lead_latn == network):
                out[cust] = e
        return out

    def for_cycle(self, cycle: str, province: str | None = None, network: str | None = None) -> "CycleList":
        """The list as it counts for one cycle (and one province, or one local network's part): ids, entries, explanations."""
        period = Cycle.parse(cycle)
        counted = self.in_force(period.begin, period.end, province, network)
        return CycleList(cycle, counted, self, period.begin, period.end, province, network)

    def latest_statement(self, cust_id: str) -> ListEntry | None:
        """The newest version's entry for a customer (whatever its dates)."""
        entries = self._by_customer.get(cust_id)
        return entries[-1] if entries else None


@dataclass
class CycleList:
    """The list in force for one cycle, for one province (or all), with what explains each customer."""

    cycle: str
    entries: dict[str, ListEntry]
    history: ListHistory
    begin: dt.date
    end: dt.date
    province: str | None
    network: str | None = None  # a local network's part of the province's list (at a province hub)

    @property
    def ids(self) -> frozenset[str]:
        """The customers in force for the cycle."""
        return frozenset(self.entries)

    @property
    def label(self) -> str:
        """The versions the cycle's list comes from, newest last (``2026V01+2026V02``); '' when none."""
        return "+".join(sorted({e.version for e in self.entries.values()})) or "+".join(self.history.versions[-1:])

    def explain(self, cust_id: str) -> str:
        """Why a customer is, or is not, on the cycle's list: the entry that decided it, in both languages."""
        counted = self.entries.get(cust_id)
        if counted is not None:
            return counted.describe()
        entries = self.history.entries(cust_id)
        if not entries:
            return f"{self.cycle}期名单{self.label}中没有该客户 / not on the list for {self.cycle} ({self.label})"
        elsewhere = self.history.counted_entry(cust_id, self.begin, self.end)
        if elsewhere is not None and elsewhere.lead_prov != self.province:  # led by another province
            return elsewhere.describe() + f"，牵头省份{elsewhere.lead_prov} / lead province {elsewhere.lead_prov}"
        if elsewhere is not None:  # the province's, but another local network's part
            return elsewhere.describe() + (f"，牵头本地网{elsewhere.lead_latn} / lead local network "
                                           f"{elsewhere.lead_latn}")
        # Not in force during the cycle: the entry governing its end (expired), else the first
        # one to take effect (not yet valid) says why.
        decisive = ListHistory._governing(entries, self.end) or min(entries, key=lambda e: e.eff)
        return decisive.describe()

    def notes(self, ids: Iterable[str]) -> dict[str, str]:
        """Explanations for several customers (those any version mentions)."""
        return {c: self.explain(c) for c in ids if self.history.entries(c)}
