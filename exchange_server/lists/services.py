"""Loading, comparing and publishing versions of the national top-500 list.

A list is loaded as a draft: every received file is archived first, then read and validated
(``importers``), then each customer's change type is computed against the version
currently published — the file's own CHANGE_TYPE is not trusted, except that a ``D`` row
tells which customers HQ removes and from which day. Publishing cuts one slice per province
(the customers it leads, removed ones included) and archives it as the spec's files, a
``D_<province>_<version>`` delivery the province fetches. Nothing here commits: the caller's
transaction makes a load or a publication visible all at once.
"""
from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.validation import validate_delivery
from schemas.writer import DeliveryWriter

from ..audit.services import record
from ..clock import BEIJING, utcnow
from ..code_lists.services import live_spec
from ..errors import BadRequest, Conflict, NotFound, Unprocessable
from ..org.services import OrgService
from ..storage.archive import Archive
from .importers import UNIT, ImportedList, check_version, import_list, source_files
from .models import DRAFT, PUBLISHED, SUPERSEDED, ListDownload, ListEntry, ListSlice, ListVersion

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


def entry_fields(entry: ListEntry) -> dict[str, str]:
    """An entry's fields, by spec field id, as the files write them."""
    return {fid: _text(getattr(entry, attr)) for fid, attr in FIELD_ATTRS.items()}


def entry_row(entry: ListEntry, version: str) -> dict[str, str]:
    """An entry as a 31101 record of ``version``."""
    return {"LIST_VERSION": version, **entry_fields(entry), "CHANGE_TYPE": entry.change_type}


def _changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """{field: [old, new]} for each compared field that differs."""
    return {f: [old[f], new[f]] for f in COMPARED if old[f] != new[f]}


def beijing_today() -> dt.date:
    """Today in Beijing, the day the standard's dates are in."""
    return utcnow().astimezone(BEIJING).date()


class ListService:
    """The national list's versions: load a draft, diff it, publish it, serve the slices."""

    def __init__(self, session: Session, archive: Archive, spec: Spec, actor: str = "system") -> None:
        self.session = session
        self.archive = archive
        self.spec = live_spec(session, spec)  # with the code-list versions published at run time
        self.actor = actor

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
             day: dt.date | None = None) -> ListVersion:
        """Archive, validate and store a list as a draft with its changes against the published version.

        ``source_name`` is the name a CSV or XLSX file was sent under when ``path`` is a
        temporary file (it then names the file in findings and decides the format). ``day``
        is the load day (Beijing; today by default): customers that drop off the list are
        removed as of that day.
        """
        path = Path(path)
        if version is not None:
            check_version(version)
        files = source_files(path, version, source_name)
        # Every received file is kept before anything else happens to it, rejected or not.
        digests = {p.name: self._archive_file(p) for p in files}
        source = files[0]
        imported = import_list(path, self.spec, version, name=source_name)
        name = imported.version
        if self.find(name) is not None:
            raise Conflict(f"list version {name} already exists", f"名单版本 {name} 已存在",
                           code="list_version_exists", errors={"version": name})
        base = self.current()
        if base is not None and name <= base.version:
            raise Conflict(f"list version {name} is not newer than the published version {base.version}",
                           f"名单版本 {name} 不晚于已发布的版本 {base.version}", code="list_version_stale",
                           errors={"version": name, "published": base.version})
        listv = ListVersion(version=name, state=DRAFT, source_name=source_name or source.name,
                            source_sha256=digests[source.name], based_on_id=base.id if base else None,
                            loaded_by=self.actor)
        entries, ignored = self._entries(imported, base, day or beijing_today())
        for e in entries:
            listv.entries.append(e)
        counts = {c: sum(1 for e in entries if e.change_type == c) for c in (ADDED, CHANGED, REMOVED, UNCHANGED)}
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
        record(self.session, self.actor, "list.load", f"list:{name}", format=imported.format,
               source=listv.source_name, files=digests, based_on=base.version if base else None,
               entries=len(entries), added=listv.added, changed=listv.changed, removed=listv.removed,
               unchanged=listv.unchanged, ignored_removals=ignored, warnings=len(imported.warnings))
        return listv

    def _entries(self, imported: ImportedList, base: ListVersion | None,
                 day: dt.date) -> tuple[list[ListEntry], list[str]]:
        """The new version's entries with change types, and the ids of removal rows that removed nothing."""
        previous = {e.national_cust_id: e for e in (base.entries if base else []) if e.change_type != REMOVED}
        entries: list[ListEntry] = []
        ignored: list[str] = []
        present: set[str] = set()
        for row in imported.rows:
            cid = row["NATIONAL_CUST_ID"]
            present.add(cid)
            old = previous.get(cid)
            if row["CHANGE_TYPE"] == REMOVED:
                # A removal only means something for a customer that is on the list now;
                # otherwise (first load, already removed) the row is history, not an entry.
                if old is None:
                    ignored.append(cid)
                    continue
                entries.append(self._entry(row, REMOVED))
                continue
            entry = self._entry(row, ADDED)
            if old is not None:
                entry.change_type = CHANGED if _changes(entry_fields(old), entry_fields(entry)) else UNCHANGED
            entries.append(entry)
        rank = max((e.rank for e in entries), default=0)
        for old in sorted(previous.values(), key=lambda e: e.rank):
            if old.national_cust_id in present:
                continue
            # Dropped silently by the new file: removed as of the load day, listed after
            # the ranked customers as the spec's own files list removals.
            rank += 1
            fields = entry_fields(old)
            fields["CUST_RANK"] = str(rank)
            fields["EXP_DATE"] = _text(max(day, old.eff_date))
            entries.append(self._entry(fields, REMOVED))
        return entries, ignored

    @staticmethod
    def _entry(row: dict[str, str], change_type: str) -> ListEntry:
        """A ListEntry from a record's text values."""
        return ListEntry(national_cust_id=row["NATIONAL_CUST_ID"], rank=int(row["CUST_RANK"]),
                         cust_name=row["CUST_NAME"], group_parent_name=row.get("GROUP_PARENT_NAME") or "",
                         c_type_id=row["C_TYPE_ID"], level_id=row["LEVEL_ID"], lead_prov_id=row["LEAD_PROV_ID"],
                         lead_latn_id=row["LEAD_LATN_ID"], hq_manager_name=row["HQ_MANAGER_NAME"],
                         hq_manager_phone=row["HQ_MANAGER_PHONE"], eff_date=_date(row["EFF_DATE"]),
                         exp_date=_date(row.get("EXP_DATE") or ""), change_type=change_type)

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
        previous = {e.national_cust_id: entry_fields(e) for e in (base.entries if base else [])}
        out: dict[str, Any] = {"version": version.version, "based_on": base.version if base else None,
                               "added": [], "changed": [], "removed": []}
        unchanged = 0
        for e in version.entries:
            if e.change_type == UNCHANGED:
                unchanged += 1
                continue
            now = entry_fields(e)
            old = previous.get(e.national_cust_id)
            item = {"national_cust_id": e.national_cust_id, "cust_name": e.cust_name, "lead_prov_id": e.lead_prov_id,
                    "rank": e.rank, "changes": _changes(old, now) if old is not None else {}}
            key = {ADDED: "added", CHANGED: "changed", REMOVED: "removed"}[e.change_type]
            out[key].append(item)
        out["counts"] = {"added": len(out["added"]), "changed": len(out["changed"]),
                         "removed": len(out["removed"]), "unchanged": unchanged,
                         "total": len(version.entries)}
        return out

    # -- publishing -------------------------------------------------------------------
    def publish(self, version: ListVersion, actor: str | None = None) -> list[ListSlice]:
        """Publish a draft: supersede the current version and archive one slice per province with customers.

        Provinces that lead no customer (not even a removed one) get no slice: the spec
        does not allow an empty data file (E112), and ``slice_ids`` reports them as
        leading nobody.
        """
        who = actor or self.actor
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
        by_province: dict[str, list[ListEntry]] = {}
        for e in version.entries:
            by_province.setdefault(e.lead_prov_id, []).append(e)
        provinces = [a.code for a in OrgService(self.session).provinces()]
        slices = [self._cut(version, p, by_province[p]) for p in provinces if p in by_province]
        unsliced = {p: len(es) for p, es in sorted(by_province.items()) if p not in provinces}
        if base is not None:
            base.state = SUPERSEDED
        version.state = PUBLISHED
        version.published_at = utcnow()
        version.published_by = who
        self.session.flush()
        record(self.session, who, "list.publish", f"list:{version.version}",
               superseded=base.version if base else None, slices=len(slices),
               rows=sum(s.rows for s in slices), unsliced=unsliced)
        return slices

    def _cut(self, version: ListVersion, province: str, entries: Iterable[ListEntry]) -> ListSlice:
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
        """The ids a province reports on (its published slice, removed ones left out) and the version.

        None when no list is published yet (the checks that need it are then skipped); an
        empty set when the published list has no customer led by the province.
        """
        listv = self.current()
        if listv is None:
            return None
        ids = self.session.scalars(select(ListEntry.national_cust_id).where(
            ListEntry.list_version_id == listv.id, ListEntry.lead_prov_id == province,
            ListEntry.change_type != REMOVED))
        return frozenset(ids), listv.version

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
