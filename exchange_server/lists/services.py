"""Loading, comparing and publishing versions of the national top-500 list.

A list is loaded as a draft: every received file is archived first, then read and validated
(``importers``), then each customer's change type is computed against the version
currently published — the file's own CHANGE_TYPE is not trusted, except that a ``D`` row
tells which customers HQ removes and from which day. Publishing cuts one slice per province
(the customers it leads, removed ones included) and archives it as the spec's files, a
``D_<province>_<version>`` delivery the province fetches. Nothing here commits: the caller's
transaction makes a load or a publication visible all at once.

On SQLite every transaction takes the single writer lock (``BEGIN IMMEDIATE``), so a load
does its long work — archiving, validating, reading the published version and working out
each entry's change — before the caller's transaction starts, and only then stores the
prepared rows in bulk: the writer is held for the inserts, not for the whole load. That
needs a session with no transaction open yet (the command line's); in one already open,
the same work runs in it, as before.
"""
from __future__ import annotations

import datetime as dt
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, cast

from sqlalchemy import Engine, Row, Table, and_, case, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.lists import CycleList, ListHistory
from schemas.lists import ListEntry as SharedEntry
from schemas.validation import validate_delivery
from schemas.writer import DeliveryWriter

from ..audit.services import record
from ..clock import BEIJING, utcnow
from ..code_lists.services import live_spec
from ..db import AnySelect, Reader, outside_reader
from ..errors import BadRequest, Conflict, NotFound, Unprocessable
from ..org.services import OrgService
from ..storage.archive import Archive
from .importers import UNIT, ImportedList, check_version, import_list, source_files
from .models import (
    CLOSED,
    DRAFT,
    PUBLISHED,
    SUPERSEDED,
    ListDownload,
    ListEntry,
    ListSlice,
    ListVersion,
)

ADDED, CHANGED, REMOVED, UNCHANGED = "A", "M", "D", "U"
# Spec field id -> ListEntry attribute, for every field an entry keeps.
FIELD_ATTRS: dict[str, str] = {
    "NATIONAL_CUST_ID": "national_cust_id", "CUST_RANK": "rank", "CUST_NAME": "cust_name",
    "GROUP_PARENT_NAME": "group_parent_name", "C_TYPE_ID": "c_type_id", "LEVEL_ID": "level_id",
    "LEAD_PROV_ID": "lead_prov_id", "LEAD_LATN_ID": "lead_latn_id", "HQ_MANAGER_NAME": "hq_manager_name",
    "HQ_MANAGER_PHONE": "hq_manager_phone", "EFF_DATE": "eff_date", "EXP_DATE": "exp_date",
}
# The fields whose change makes an entry "M": everything but the key (the rank included,
# since a province's priorities follow it).
COMPARED = tuple(f for f in FIELD_ATTRS if f != "NATIONAL_CUST_ID")
CHUNK = 1 << 20
# A prepared entry is a tuple of these columns' values (list_version_id comes at insert time).
ENTRY_COLUMNS = (*FIELD_ATTRS.values(), "change_type")
# Rows per INSERT executemany: big enough to amortise each statement, small enough that a
# batch's parameters stay a few megabytes.
BATCH = 10_000
# A row of a loaded file: the values of ENTRY_COLUMNS but the change type, then the file's
# CHANGE_TYPE. A published entry it is compared with: its COMPARED values and its row id.
Values = tuple[Any, ...]
ENTRIES = cast(Table, ListEntry.__table__)  # the entries' table, for Core statements


def _date(text: str) -> dt.date | None:
    """A validated YYYYMMDD (empty is None)."""
    return dt.datetime.strptime(text, "%Y%m%d").date() if text else None


def _text(value: Any) -> str:
    """A stored value in the files' lexical form."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value)


@dataclass(frozen=True)
class _Moved:
    """An entry of a customer another province leads now, cut into the slice of the one that led it.

    Its attributes are ENTRY_COLUMNS, in that order (what a slice's rows are read as).
    """

    national_cust_id: str
    rank: int
    cust_name: str
    group_parent_name: str
    c_type_id: str
    level_id: str
    lead_prov_id: str
    lead_latn_id: str
    hq_manager_name: str
    hq_manager_phone: str
    eff_date: Any
    exp_date: Any
    change_type: str


def entry_fields(entry: ListEntry | Row[Any] | _Moved) -> dict[str, str]:
    """An entry's fields, by spec field id, as the files write them."""
    return {fid: _text(getattr(entry, attr)) for fid, attr in FIELD_ATTRS.items()}


def entry_row(entry: ListEntry | Row[Any] | _Moved, version: str) -> dict[str, str]:
    """An entry as a 31101 record of ``version``."""
    return {"LIST_VERSION": version, **entry_fields(entry), "CHANGE_TYPE": entry.change_type}


def _changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """{field: [old, new]} for each compared field that differs."""
    return {f: [old[f], new[f]] for f in COMPARED if old[f] != new[f]}


# In-process cache of list histories: (database, province, stamp) -> history. A stamp names the
# versions that count, so a publication (a new stamp) is never answered from an old entry.
_HISTORIES: dict[tuple[Any, ...], ListHistory] = {}
HISTORY_BUDGET = 1_200_000  # customers kept across the cached histories (about 150 MB at most)


def _as_date(value: Any) -> dt.date | None:
    """A stored date (a ``date``, or SQLite's ``YYYY-MM-DD`` text read through Core) as a date."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def beijing_today() -> dt.date:
    """Today in Beijing, the day the standard's dates are in."""
    return utcnow().astimezone(BEIJING).date()


@dataclass
class _Base:
    """The published version a load compares with: its id and its entries still on the list.

    ``rows`` maps each customer id to its entry's COMPARED values followed by the entry's row id.
    """

    id: int
    rows: dict[str, Values]


@dataclass
class _Plan:
    """A new version's change types against one base, worked out before they are stored."""

    base_id: int | None
    changes: list[str | None]  # per row of the file; None for a removal row that removes nothing
    dropped: list[Values]  # entries (ENTRY_COLUMNS) for the customers the file leaves out
    counts: dict[str, int]
    ignored: list[str]


class _Dates:
    """Dates in the form they are compared and bound in, each distinct one made once.

    ``date`` objects; for SQLite, the ``YYYY-MM-DD`` text SQLAlchemy stores them as, so that
    rows can go to the driver as they are (see ``ListService._insert``).
    """

    def __init__(self, iso: bool) -> None:
        self.iso = iso
        self.forms: dict[Any, Any] = {"": None, None: None}

    def _form(self, day: dt.date) -> Any:
        return day.isoformat() if self.iso else day

    def from_text(self, text: str) -> Any:
        """A validated YYYYMMDD (empty is None)."""
        found = self.forms.get(text, False)
        if found is False:
            found = self.forms[text] = self._form(_date(text))  # type: ignore[arg-type]
        return found

    def from_db(self, value: Any) -> Any:
        """A stored date: a ``date`` (PostgreSQL, or read through SQLAlchemy) or SQLite's own text."""
        found = self.forms.get(value, False)
        if found is False:
            found = self.forms[value] = self._form(value if isinstance(value, dt.date) else
                                                   dt.date.fromisoformat(value))
        return found

    def later(self, day: dt.date, form: Any) -> Any:
        """The later of ``day`` and a date in this form, in this form."""
        return self._form(max(day, dt.date.fromisoformat(form) if self.iso else form))


def _base_entries(version_id: int) -> AnySelect:
    """A version's entries still on the list: id, COMPARED values, row id."""
    c = ENTRIES.c
    return select(c.national_cust_id, *(c[FIELD_ATTRS[f]] for f in COMPARED), c.id).where(
        c.list_version_id == version_id, c.change_type != REMOVED)


def _published() -> AnySelect:
    """The id and name of the version in force."""
    return (select(ListVersion.id, ListVersion.version).where(ListVersion.state == PUBLISHED)
            .order_by(ListVersion.published_at.desc(), ListVersion.id.desc()).limit(1))


@dataclass(frozen=True)
class EntryPage:
    """One page of a version's entries as searched, with how many match in all, per province and per change.

    ``by_province`` counts the matches of the search alone (what each province filter would
    give); ``by_change`` those of the search and the province (what each change filter would
    give); ``total`` the matches of every filter. Each row is a dict of ENTRY_COLUMNS, plus
    ``changes`` ({field id: [old, new]}) for a changed entry.
    """

    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    per_page: int
    by_province: dict[str, int]
    by_change: dict[str, int]


class ListService:
    """The national list's versions: load a draft, diff it, publish it, serve the slices."""

    def __init__(self, session: Session, archive: Archive | None, spec: Spec, actor: str = "system") -> None:
        self.session = session
        self._archive = archive
        self.actor = actor
        with self._own_session() as own:
            # With the code-list versions published at run time; read without opening the
            # caller's transaction, which on SQLite would hold the writer lock from here on.
            self.spec = live_spec(own if own is not None else session, spec)

    @property
    def archive(self) -> Archive:
        """The archive loads and publications write to (reading needs none)."""
        if self._archive is None:
            raise RuntimeError("this ListService was made for reading only (no archive)")
        return self._archive

    # -- reading outside the caller's transaction ---------------------------------------
    def _outside(self) -> Engine | None:
        """The engine to read with outside the caller's transaction; None when the reads belong in it.

        None when the session already has a transaction open (its reads must see what it
        wrote, and on SQLite it holds the writer lock another connection would wait for)
        or is bound to a single connection.
        """
        bind = self.session.get_bind()
        if self.session.in_transaction() or not isinstance(bind, Engine):
            return None
        return bind

    @contextmanager
    def _own_session(self) -> Iterator[Session | None]:
        """A short session of our own for a few reads, or None (use the caller's)."""
        engine = self._outside()
        if engine is None:
            yield None
            return
        with Session(engine) as own:
            yield own

    @contextmanager
    def _reader(self) -> Iterator[Reader | None]:
        """A function running a read outside the caller's transaction, or None (read in it)."""
        engine = self._outside()
        if engine is None:
            yield None
        else:
            with outside_reader(engine) as read:
                yield read

    # -- reading ----------------------------------------------------------------------
    def current(self) -> ListVersion | None:
        """The version in force: the latest published one."""
        return self._current(lock=False)

    def _current(self, lock: bool) -> ListVersion | None:
        query = (select(ListVersion).where(ListVersion.state == PUBLISHED)
                 .order_by(ListVersion.published_at.desc(), ListVersion.id.desc()).limit(1))
        if lock:
            # PostgreSQL: two publications at once wait for each other here (SQLite
            # transactions are IMMEDIATE, so they never overlap in the first place).
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(query).first()

    def find(self, version: str) -> ListVersion | None:
        """A version by name, or None."""
        return self.session.scalars(select(ListVersion).where(ListVersion.version == version)).first()

    def get(self, version: str) -> ListVersion:
        """A version by name; NotFound when it was never loaded."""
        found = self.find(version)
        if found is None:
            raise NotFound(f"list version {version} does not exist", f"名单版本 {version} 不存在",
                           code="list_version_not_found")
        return found

    def versions(self) -> list[ListVersion]:
        """Every version, newest first."""
        return list(self.session.scalars(select(ListVersion).order_by(ListVersion.version.desc())))

    # -- loading ----------------------------------------------------------------------
    def load(self, path: Path, version: str | None = None, source_name: str | None = None, *,
             day: dt.date | None = None, party: str = "00") -> ListVersion:
        """Archive, validate and store a list as a draft with its changes against the published version.

        ``source_name`` is the name a CSV or XLSX file was sent under when ``path`` is a
        temporary file (it then names the file in findings and decides the format). ``day``
        is the load day (Beijing; today by default): customers that drop off the list are
        removed as of that day. ``party``: a province hub loads its province's slice from HQ.
        """
        path = Path(path)
        if version is not None:
            check_version(version)
        files = source_files(path, version, source_name)
        # Every received file is kept before anything else happens to it, rejected or not.
        digests = {p.name: self._archive_file(p) for p in files}
        source = files[0]
        imported = import_list(path, self.spec, version, name=source_name, party=party)
        name, fmt, warnings = imported.version, imported.format, len(imported.warnings)
        dates = _Dates(iso=self.session.get_bind().dialect.name == "sqlite")
        rows = self._rows(imported, dates)
        day = day or beijing_today()
        outside, seen = False, None
        with self._reader() as read:
            if read is not None:
                published = list(read(_published()))
                outside, seen = True, self._read_base(read, published[0][0] if published else None, dates)
        # Compared with the published version before taking the writer; checked again below.
        plan = self._plan(rows, seen, day, dates) if outside else None
        # From here on the caller's transaction: on SQLite, the writer lock.
        if self.find(name) is not None:
            raise Conflict(f"list version {name} already exists", f"名单版本 {name} 已存在",
                           code="list_version_exists", errors={"version": name})
        base = self.current()
        if base is not None and name <= base.version:
            raise Conflict(f"list version {name} is not newer than the published version {base.version}",
                           f"名单版本 {name} 不晚于已发布的版本 {base.version}", code="list_version_stale",
                           errors={"version": name, "published": base.version})
        if plan is None or plan.base_id != (base.id if base else None):
            # No reads outside, or another version was published in between: compare in here.
            plan = self._plan(rows, self._read_base(self.session.execute, base.id if base else None, dates), day,
                              dates)
        listv = ListVersion(version=name, state=DRAFT, source_name=source_name or source.name,
                            source_sha256=digests[source.name], based_on_id=base.id if base else None,
                            loaded_by=self.actor)
        counts = plan.counts
        listv.added, listv.changed = counts[ADDED], counts[CHANGED]
        listv.removed, listv.unchanged = counts[REMOVED], counts[UNCHANGED]
        try:
            # A savepoint, so that losing a race for the version name leaves the caller's
            # transaction usable and answers like the check above.
            with self.session.begin_nested():
                self.session.add(listv)
                self.session.flush()
        except IntegrityError:
            raise Conflict(f"list version {name} already exists", f"名单版本 {name} 已存在",
                           code="list_version_exists", errors={"version": name}) from None
        self._insert(listv.id, rows, plan)
        # The entries went in without the ORM: listv.entries loads them when asked.
        self.session.expire(listv, ["entries"])
        record(self.session, self.actor, "list.load", f"list:{name}", format=fmt,
               source=listv.source_name, files=digests, based_on=base.version if base else None,
               entries=sum(counts.values()), added=listv.added, changed=listv.changed, removed=listv.removed,
               unchanged=listv.unchanged, ignored_removals=plan.ignored, warnings=warnings)
        return listv

    @staticmethod
    def _rows(imported: ImportedList, dates: _Dates) -> list[Values]:
        """The file's records as entry values (ENTRY_COLUMNS but the last) and the file's CHANGE_TYPE.

        Uses up ``imported.records``, a record at a time, so that a big list is in memory once.
        """
        at = {f: i for i, f in enumerate(imported.fields)}
        i_id, i_rank, i_eff, i_exp, i_change = (at[f] for f in ("NATIONAL_CUST_ID", "CUST_RANK", "EFF_DATE",
                                                                "EXP_DATE", "CHANGE_TYPE"))
        texts = itemgetter(*(at[f] for f in COMPARED[1:-2]))  # from the name to the phone
        records = imported.records
        rows: list[Values] = []
        for k, rec in enumerate(records):
            records[k] = ()
            rows.append((rec[i_id], int(rec[i_rank]), *texts(rec), dates.from_text(rec[i_eff]),
                         dates.from_text(rec[i_exp]), rec[i_change]))
        records.clear()
        return rows

    @staticmethod
    def _read_base(read: Reader, base_id: int | None, dates: _Dates) -> _Base | None:
        """A version's entries still on the list, for comparing with (None for no version)."""
        if base_id is None:
            return None
        shared: dict[str, str] = {}
        rows: dict[str, Values] = {}
        for cid, rank, name, gp, ctype, level, prov, latn, manager, phone, eff, exp, row_id in read(
                _base_entries(base_id)):
            # Values many customers share kept once, as the importer keeps them.
            rows[cid] = (rank, name, shared.setdefault(gp, gp), shared.setdefault(ctype, ctype),
                         shared.setdefault(level, level), shared.setdefault(prov, prov),
                         shared.setdefault(latn, latn), shared.setdefault(manager, manager), phone,
                         dates.from_db(eff), dates.from_db(exp), row_id)
        return _Base(base_id, rows)

    @staticmethod
    def _plan(rows: list[Values], base: _Base | None, day: dt.date, dates: _Dates) -> _Plan:
        """Each row's change type against ``base``, and the entries of the customers the file dropped.

        ``base.rows`` is used up (what is left in it are the dropped customers); ``rows`` is not.
        """
        previous = base.rows if base is not None else {}
        changes: list[str | None] = []
        ignored: list[str] = []
        counts = dict.fromkeys((ADDED, CHANGED, REMOVED, UNCHANGED), 0)
        rank = 0
        for row in rows:
            cid = row[0]
            old = previous.pop(cid, None)
            if row[-1] == REMOVED:
                if old is None:
                    # A removal only means something for a customer that is on the list now;
                    # otherwise (first load, already removed) the row is history, not an entry.
                    ignored.append(cid)
                    changes.append(None)
                    continue
                change = REMOVED
            elif old is None:
                change = ADDED
            else:
                # Stored values against the file's, typed (dates in one form): equal exactly
                # when their text forms, which _changes compares, are.
                change = UNCHANGED if old[:-1] == row[1:-1] else CHANGED
            changes.append(change)
            counts[change] += 1
            rank = max(rank, row[1])
        dropped: list[Values] = []
        for cid, old in sorted(previous.items(), key=lambda item: (item[1][0], item[1][-1])):
            # Dropped silently by the new file: removed as of the load day, listed after
            # the ranked customers as the spec's own files list removals.
            rank += 1
            dropped.append((cid, rank, *old[1:-3], old[-3], dates.later(day, old[-3]), REMOVED))
            counts[REMOVED] += 1
        previous.clear()
        return _Plan(base.id if base is not None else None, changes, dropped, counts, ignored)

    def _insert(self, version_id: int, rows: list[Values], plan: _Plan) -> None:
        """Insert the version's entries in batches of executemany, without ORM objects."""
        entries = chain(((version_id, *row[:-1], change) for row, change in zip(rows, plan.changes)
                         if change is not None), ((version_id, *e) for e in plan.dropped))
        keys = ["list_version_id", *ENTRY_COLUMNS]
        conn = self.session.connection()
        if conn.dialect.name != "sqlite":
            while batch := [dict(zip(keys, e)) for e in islice(entries, BATCH)]:
                conn.execute(insert(ENTRIES), batch)
            return
        # SQLite holds its one writer lock while this runs: hand the driver tuples it binds
        # as they are (dates already in SQLAlchemy's stored form) rather than dicts that
        # SQLAlchemy processes row by row, which takes as long again as the inserts.
        compiled = insert(ENTRIES).compile(dialect=conn.dialect, column_keys=keys)
        if list(compiled.positiontup or ()) != keys:
            # A column added to the model (with a default, say) the tuples do not carry.
            raise RuntimeError(f"list_entry insert binds {compiled.positiontup}, not {keys}")
        sql = str(compiled)
        while rows_batch := list(islice(entries, BATCH)):
            conn.exec_driver_sql(sql, rows_batch)

    def _archive_file(self, path: Path) -> str:
        """Stream one file into the archive; its SHA-256."""
        staged = self.archive.stage(label=path.name)
        try:
            with path.open("rb") as fh:
                while block := fh.read(CHUNK):
                    staged.write(block)
        except OSError:
            staged.discard()
            raise
        return staged.commit()

    # -- comparing --------------------------------------------------------------------
    def diff(self, version: ListVersion) -> dict[str, Any]:
        """What the version adds, changes and removes against the version it was based on."""
        base = self.session.get(ListVersion, version.based_on_id) if version.based_on_id else None
        out: dict[str, Any] = {"version": version.version, "based_on": base.version if base else None,
                               "added": [], "changed": [], "removed": []}
        # One query for the entries that are not unchanged, each with the base's entry for
        # the same customer (whatever its change type) when there is one; unchanged ones are
        # only counted. No ORM objects: a big list's diff stays a read of the rows it reports.
        new = ENTRIES.alias("new")
        old = ENTRIES.alias("old")
        attrs = list(FIELD_ATTRS.values())
        source = new.outerjoin(old, and_(old.c.list_version_id == (base.id if base else -1),
                                         old.c.national_cust_id == new.c.national_cust_id))
        query = (select(new.c.change_type, *(new.c[a] for a in attrs), old.c.id, *(old.c[a] for a in attrs))
                 .select_from(source).where(new.c.list_version_id == version.id, new.c.change_type != UNCHANGED)
                 .order_by(new.c.rank, new.c.id))
        n = len(attrs)
        kinds = {ADDED: "added", CHANGED: "changed", REMOVED: "removed"}
        for row in self.session.execute(query):
            now = dict(zip(FIELD_ATTRS, map(_text, row[1:1 + n])))
            was = dict(zip(FIELD_ATTRS, map(_text, row[2 + n:]))) if row[1 + n] is not None else None
            out[kinds[row[0]]].append({"national_cust_id": now["NATIONAL_CUST_ID"], "cust_name": now["CUST_NAME"],
                                       "lead_prov_id": now["LEAD_PROV_ID"], "rank": row[1 + attrs.index("rank")],
                                       "changes": _changes(was, now) if was is not None else {}})
        c = ENTRIES.c
        total, unchanged = self.session.execute(
            select(func.count(), func.coalesce(func.sum(case((c.change_type == UNCHANGED, 1), else_=0)), 0))
            .where(c.list_version_id == version.id)).one()
        out["counts"] = {"added": len(out["added"]), "changed": len(out["changed"]),
                         "removed": len(out["removed"]), "unchanged": int(unchanged), "total": int(total)}
        return out

    # -- publishing -------------------------------------------------------------------
    def publish(self, version: ListVersion, actor: str | None = None, *, confirm_impact: bool = False,
                network_parts: bool = False) -> list[ListSlice]:
        """Publish a draft: supersede the current version and archive one slice per province with customers.

        Provinces that lead no customer (not even a removed one) get no slice: the spec
        does not allow an empty data file (E112), and ``slice_ids`` reports them as
        leading nobody. When accepted data of an open cycle would fail the list checks
        once the version is in force (``impact.py``), publishing needs ``confirm_impact``;
        without it a Conflict (``list_publish_impact``) carries the impact. Either way the
        impact is in the audit record. ``network_parts`` (a province hub) also cuts each local
        network of the served provinces its own part: the customers it leads (``LEAD_LATN_ID``),
        and those it led in the version before, so that it sees them leave.
        """
        from .impact import ListImpactService

        who = actor or self.actor
        impact = ListImpactService(self.session, self.spec).impact(version) if version.state == DRAFT else None
        if impact is not None and impact.failing and not confirm_impact:
            raise Conflict(f"publishing {version.version} makes accepted data of open cycles fail the list checks; "
                           f"confirm to publish anyway",
                           f"发布名单 {version.version} 将使开放周期中已采纳的数据不再通过名单校验；确认后方可发布",
                           code="list_publish_impact", errors=impact.as_dict())
        # Read the state again under a row lock: it may have changed since it was loaded.
        version = self.session.scalars(select(ListVersion).where(ListVersion.id == version.id).with_for_update()
                                       .execution_options(populate_existing=True)).one()
        if version.state != DRAFT:
            raise Conflict(f"list version {version.version} is {version.state}, not a draft",
                           f"名单版本 {version.version} 的状态为 {version.state}，不是草稿",
                           code="list_already_published" if version.state == PUBLISHED else "list_not_draft",
                           errors={"version": version.version, "state": version.state})
        base = self._current(lock=True)
        if (base.id if base else None) != version.based_on_id:
            # Its change types were computed against a version that is no longer in force.
            raise Conflict(f"list version {version.version} was compared with a version that is no longer "
                           f"published; load it again", f"名单版本 {version.version} 的比对基准已不是当前发布版本，请重新导入",
                           code="list_draft_outdated",
                           errors={"version": version.version, "published": base.version if base else None})
        # The entries as plain rows (attributes named as ListEntry's): a big list's slices
        # are cut without building an ORM object per customer.
        c = ENTRIES.c
        by_province: dict[str, list[Row[Any] | _Moved]] = {}
        for e in self.session.execute(select(*(c[a] for a in ENTRY_COLUMNS)).where(c.list_version_id == version.id)
                                      .order_by(c.rank, c.id)):
            by_province.setdefault(e.lead_prov_id, []).append(e)
        if version.based_on_id is not None:
            # A customer handed to another province is also in the slice of the province that
            # led it before, with its new entry: that province's agent sees it leave, from the
            # day the entry takes effect (schemas.lists), instead of keeping it forever.
            new, old = ENTRIES.alias("new"), ENTRIES.alias("old")
            moved = (select(old.c.lead_prov_id, *(new.c[a] for a in ENTRY_COLUMNS))
                     .join(old, and_(old.c.national_cust_id == new.c.national_cust_id,
                                     old.c.list_version_id == version.based_on_id))
                     .where(new.c.list_version_id == version.id, old.c.lead_prov_id != new.c.lead_prov_id,
                            old.c.change_type != REMOVED)
                     .order_by(new.c.rank, new.c.id))
            for before, *values in self.session.execute(moved):
                by_province.setdefault(before, []).append(_Moved(*values))
        provinces = [a.code for a in OrgService(self.session).provinces()]
        slices = [self._cut(version, p, by_province[p]) for p in provinces if p in by_province]
        if network_parts:
            slices += self._cut_networks(version, provinces)
        unsliced = {p: len(es) for p, es in sorted(by_province.items()) if p not in provinces}
        if base is not None:
            base.state = SUPERSEDED
        version.state = PUBLISHED
        version.published_at = utcnow()
        version.published_by = who
        self.session.flush()
        record(self.session, who, "list.publish", f"list:{version.version}",
               superseded=base.version if base else None, slices=len(slices),
               rows=sum(s.rows for s in slices), unsliced=unsliced,
               impact=impact.as_dict()["newly_failing"] if impact is not None else [],
               confirmed_impact=bool(impact is not None and impact.failing))
        return slices

    def _cut_networks(self, version: ListVersion, provinces: list[str]) -> list[ListSlice]:
        """Each active local network's part of the served provinces' entries (a hub serves its prefectures)."""
        c = ENTRIES.c
        by_network: dict[str, list[Row[Any] | _Moved]] = {}
        for e in self.session.execute(select(*(c[a] for a in ENTRY_COLUMNS))
                                      .where(c.list_version_id == version.id, c.lead_prov_id.in_(provinces))
                                      .order_by(c.rank, c.id)):
            by_network.setdefault(e.lead_latn_id, []).append(e)
        if version.based_on_id is not None:
            new, old = ENTRIES.alias("new"), ENTRIES.alias("old")
            moved = (select(old.c.lead_latn_id, *(new.c[a] for a in ENTRY_COLUMNS))
                     .join(old, and_(old.c.national_cust_id == new.c.national_cust_id,
                                     old.c.list_version_id == version.based_on_id))
                     .where(new.c.list_version_id == version.id, old.c.lead_latn_id != new.c.lead_latn_id,
                            old.c.lead_prov_id.in_(provinces), old.c.change_type != REMOVED)
                     .order_by(new.c.rank, new.c.id))
            for before, *values in self.session.execute(moved):
                by_network.setdefault(before, []).append(_Moved(*values))
        org = OrgService(self.session)
        networks = [n.code for p in provinces for n in org.networks_of(p)]
        return [self._cut(version, n, by_network[n]) for n in networks if n in by_network]

    def _cut(self, version: ListVersion, province: str, entries: Iterable[Row[Any] | _Moved]) -> ListSlice:
        """Write, check and archive one province's slice; the ListSlice (added to the version)."""
        with tempfile.TemporaryDirectory(prefix="list-slice-") as tmp:
            writer = DeliveryWriter(self.spec, Path(tmp), "D", province, version.version)
            with writer.unit(UNIT) as out:
                for e in sorted(entries, key=lambda e: (e.rank, e.national_cust_id)):
                    out.write(entry_row(e, version.version))
                data_path = Path(tmp) / out.name
                rows = out.rows
            check_path = writer.close()
            # Provinces validate what they fetch; never hand them a slice they would reject.
            report = validate_delivery([check_path, data_path], self.spec)
            if report.errors:
                raise Unprocessable(f"the slice for province {province} of list {version.version} is invalid",
                                    f"名单 {version.version} 的 {province} 省切片未通过校验", code="list_slice_invalid",
                                    errors=[f.as_dict() for f in report.sorted_findings()])
            piece = ListSlice(province=province, rows=rows, check_name=check_path.name,
                              check_sha256=self._archive_file(check_path), data_name=data_path.name,
                              data_sha256=self._archive_file(data_path), data_size=data_path.stat().st_size)
        version.slices.append(piece)
        return piece

    # -- slices -----------------------------------------------------------------------
    def slice_for(self, province: str, version: str | None = None) -> ListSlice:
        """A province's slice of a version (the published one by default); NotFound when there is none."""
        if version is None:
            listv = self.current()
            if listv is None:
                raise NotFound("no list version has been published", "尚未发布名单", code="list_not_published")
        else:
            listv = self.get(version)
        found = self.session.scalars(select(ListSlice).where(ListSlice.list_version_id == listv.id,
                                                             ListSlice.province == province)).first()
        if found is None:
            raise NotFound(f"list version {listv.version} has no slice for {province}",
                           f"名单版本 {listv.version} 没有 {province} 的切片", code="list_slice_not_found",
                           errors={"version": listv.version, "province": province})
        return found

    def slice_ids(self, province: str) -> tuple[frozenset[str], str] | None:
        """The ids a province reports on under the published version as it stands (removed ones left out).

        Checks of a cycle use :meth:`cycle_list` instead (the entries in force for the
        cycle's period); this is what the province's current slice lists.
        """
        listv = self.current()
        if listv is None:
            return None
        ids = self.session.scalars(select(ListEntry.national_cust_id).where(
            ListEntry.list_version_id == listv.id, ListEntry.lead_prov_id == province,
            ListEntry.change_type != REMOVED))
        return frozenset(ids), listv.version

    # -- what is in force for a cycle -------------------------------------------------
    def stamp(self, draft: ListVersion | None = None) -> tuple[int, ...]:
        """What the in-force answers depend on: the ids of the versions that count (published ones, a draft)."""
        # Published and superseded versions: neither a draft nor a closed draft was ever in force.
        ids = tuple(self.session.scalars(select(ListVersion.id).where(ListVersion.state.in_((PUBLISHED, SUPERSEDED)))
                                         .order_by(ListVersion.id)))
        return ids + ((-draft.id,) if draft is not None else ())

    def history(self, province: str | None = None, draft: ListVersion | None = None) -> ListHistory:
        """Every entry the published versions (and ``draft``, as if published) state.

        With ``province``: only the customers that province led in any of them, with every
        version's entry for each (also where another province leads it), so that a customer
        handed to another province is seen leaving.
        """
        stamp = self.stamp(draft)
        # A draft's id may be reused once it is deleted: histories with a draft are not kept.
        key = (str(self.session.get_bind().engine.url), province, stamp) if draft is None else None
        found = _HISTORIES.get(key) if key else None
        if found is not None:
            return found
        c = ENTRIES.c
        counted = [i for i in stamp if i > 0] + ([draft.id] if draft is not None else [])
        query = (select(ListVersion.version, c.national_cust_id, c.lead_prov_id, c.eff_date, c.exp_date,
                        c.change_type, c.lead_latn_id)
                 .join(ListVersion, ListVersion.id == c.list_version_id)
                 .where(c.list_version_id.in_(counted)))
        if province is not None:
            led = select(c.national_cust_id).where(c.list_version_id.in_(counted), c.lead_prov_id == province)
            query = query.where(c.national_cust_id.in_(led))
        history = ListHistory()
        for version, cust, lead, eff, exp, change, latn in self.session.execute(query):
            history.add(SharedEntry(version, cust, lead, _as_date(eff) or dt.date.min, _as_date(exp), change, latn))
        if key is not None:
            # Bounded by entries, not histories: a national list at scale is a million of them.
            while _HISTORIES and sum(len(h) for h in _HISTORIES.values()) + len(history) > HISTORY_BUDGET:
                _HISTORIES.pop(next(iter(_HISTORIES)))
            _HISTORIES[key] = history
        return history

    def cycle_list(self, cycle: str, province: str, draft: ListVersion | None = None,
                   network: str | None = None) -> CycleList | None:
        """The province's list for a cycle (or one local network's part of it): the entries in force during
        its period; None when no list is published."""
        if draft is None and not self.stamp():
            return None
        return self.history(province, draft).for_cycle(cycle, province, network)

    def serves_network_part(self, party: str) -> bool:
        """Whether a local network is served its own part of the list (a province hub cuts one per network).

        A sender is checked against the list it is served: its network's part where it gets
        one, else its province's slice (as at HQ).
        """
        return self.session.scalar(select(ListSlice.id).where(ListSlice.province == party).limit(1)) is not None

    # -- acknowledgements -------------------------------------------------------------
    def record_download(self, slice: ListSlice, account_id: int, file_name: str, channel: str) -> ListDownload:
        """Note that an account fetched one of a slice's two files."""
        if file_name not in (slice.check_name, slice.data_name):
            raise BadRequest(f"{file_name} is not a file of slice {slice.check_name}",
                             f"{file_name} 不是切片 {slice.check_name} 的文件", code="list_file_unknown",
                             errors={"file": file_name, "expected": [slice.check_name, slice.data_name]})
        download = ListDownload(slice_id=slice.id, account_id=account_id, file_name=file_name, channel=channel)
        self.session.add(download)
        self.session.flush()
        return download

    def downloads(self, version: ListVersion | str) -> list[ListDownload]:
        """Who fetched which file of a version's slices, and when, oldest first."""
        listv = self.get(version) if isinstance(version, str) else version
        return list(self.session.scalars(
            select(ListDownload).join(ListSlice, ListSlice.id == ListDownload.slice_id)
            .where(ListSlice.list_version_id == listv.id).order_by(ListDownload.at, ListDownload.id)))

    # -- browsing a version: search, pages, per-province changes, every entry in order ---
    def entries(self, version: ListVersion, *, search: str = "", province: str | None = None,
                change: str | None = None, page: int = 1, per_page: int = 100) -> EntryPage:
        """A page of the version's entries by rank, searched by customer id or name (any part, any case).

        Only the page's rows are read (LIMIT/OFFSET) and the counts are SQL aggregates, so a
        national list of a million entries pages as quickly as one of 500. A page past the
        last is the last.
        """
        c = ENTRIES.c
        where: list[Any] = [c.list_version_id == version.id]
        text = search.strip()
        if text:
            where.append(or_(c.national_cust_id.icontains(text, autoescape=True),
                             c.cust_name.icontains(text, autoescape=True),
                             c.group_parent_name.icontains(text, autoescape=True)))
        by_province = {str(p): int(n) for p, n in self.session.execute(
            select(c.lead_prov_id, func.count()).where(*where).group_by(c.lead_prov_id))}
        if province:
            where.append(c.lead_prov_id == province)
        if text or province:
            by_change = {str(k): int(n) for k, n in self.session.execute(
                select(c.change_type, func.count()).where(*where).group_by(c.change_type))}
        else:
            # The whole version: the counts stored at load time (no index covers the change type).
            by_change = {ADDED: version.added, CHANGED: version.changed, REMOVED: version.removed,
                         UNCHANGED: version.unchanged}
        if change:
            where.append(c.change_type == change)
            total = by_change.get(change, 0)
        else:
            total = sum(by_change.values())
        pages = max(1, math.ceil(total / per_page))
        page = min(max(page, 1), pages)
        # A changed entry is shown with what changed: the base version's entry for the same customer.
        old = ENTRIES.alias("old")
        base_id = version.based_on_id if version.based_on_id is not None else -1
        source = ENTRIES.outerjoin(old, and_(old.c.list_version_id == base_id,
                                             old.c.national_cust_id == c.national_cust_id, c.change_type == CHANGED))
        attrs = list(FIELD_ATTRS.values())
        query = (select(*(c[a] for a in ENTRY_COLUMNS), old.c.id, *(old.c[a] for a in attrs)).select_from(source)
                 .where(*where).order_by(c.rank, c.id).limit(per_page).offset((page - 1) * per_page))
        rows: list[dict[str, Any]] = []
        n = len(ENTRY_COLUMNS)
        for row in self.session.execute(query):
            entry = dict(zip(ENTRY_COLUMNS, row[:n]))
            if row[n] is not None:
                was = dict(zip(FIELD_ATTRS, map(_text, row[n + 1:])))
                entry["changes"] = _changes(was, {f: _text(entry[a]) for f, a in FIELD_ATTRS.items()})
            else:
                entry["changes"] = {}
            rows.append(entry)
        return EntryPage(rows, total, page, pages, per_page, by_province, by_change)

    def changes_by_province(self, version: ListVersion) -> list[dict[str, Any]]:
        """Per lead province, how many customers the version adds, changes and removes (untouched ones left out)."""
        c = ENTRIES.c
        out: dict[str, dict[str, Any]] = {}
        for prov, kind, n in self.session.execute(
                select(c.lead_prov_id, c.change_type, func.count()).where(
                    c.list_version_id == version.id, c.change_type != UNCHANGED)
                .group_by(c.lead_prov_id, c.change_type)):
            counts = out.setdefault(str(prov), {"prov_id": str(prov), ADDED: 0, CHANGED: 0, REMOVED: 0})
            counts[str(kind)] = int(n)
        return [out[p] for p in sorted(out)]

    def iter_entries(self, version: ListVersion) -> Iterator[Row[Any]]:
        """Every entry of the version by rank (as ``_cut`` orders a slice), ENTRY_COLUMNS as attributes, streamed."""
        c = ENTRIES.c
        query = (select(*(c[a] for a in ENTRY_COLUMNS)).where(c.list_version_id == version.id)
                 .order_by(c.rank, c.national_cust_id).execution_options(yield_per=BATCH))
        yield from self.session.execute(query)

    # -- closing a draft ---------------------------------------------------------------
    def close(self, version: ListVersion, actor: str | None = None) -> ListVersion:
        """Close a draft without publishing it: never in force, never sliced; kept, with its name, for the record.

        Nothing reaches the provinces, so nothing of theirs changes. A published version is
        not closed: provinces already hold its slice and check their data against it; HQ
        corrects it by publishing a newer version.
        """
        who = actor or self.actor
        # Read the state again under a row lock: a publication may have come first.
        version = self.session.scalars(select(ListVersion).where(ListVersion.id == version.id).with_for_update()
                                       .execution_options(populate_existing=True)).one()
        if version.state != DRAFT:
            raise Conflict(f"list version {version.version} is {version.state}, not a draft; only a draft can be "
                           f"closed",
                           f"名单版本 {version.version} 的状态为 {version.state}，不是草稿；只有草稿可以关闭",
                           code="list_not_draft", errors={"version": version.version, "state": version.state})
        version.state = CLOSED
        self.session.flush()
        record(self.session, who, "list.close", f"list:{version.version}", added=version.added,
               changed=version.changed, removed=version.removed, unchanged=version.unchanged)
        return version
