"""The top-500 list: loading (spec files, CSV, XLSX), diffs, publication, slices, acknowledgements."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy.orm
from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.audit.models import AuditEvent
from exchange_server.db import Base, import_models, make_engine
from exchange_server.errors import BadRequest, Conflict, NotFound, Unprocessable
from exchange_server.lists.importers import import_list
from exchange_server.lists.models import DRAFT, PUBLISHED, SUPERSEDED, ListEntry, ListVersion
from exchange_server.lists.services import ListService, entry_fields
from exchange_server.org.services import OrgService
from exchange_server.sample_data.generator import generate
from exchange_server.storage.archive import LocalArchive
from schemas import Spec
from schemas.validation import validate_delivery
from schemas.writer import DeliveryWriter

Row = dict[str, str]


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> Path:
    """HQ's sample files: the national list 2026V01 as D_00_2026V01_00.chk + one txt data file."""
    out = tmp_path_factory.mktemp("sample")
    generate(spec, "202610", out, provinces=["42"], scale=1, fmt="txt", seed=2002)
    return out / "00"


@pytest.fixture(scope="module")
def sample_rows(sample_dir: Path, spec: Spec) -> list[Row]:
    """The sample list's records as text (506: 500 listed, 6 removal notes)."""
    ids = spec.unit("TOP500_LIST").field_ids
    text = (sample_dir / "D_00_2026V01_31101_00_001.txt").read_text("utf-8")
    return [dict(zip(ids, line.split("|"))) for line in text.splitlines()]


@pytest.fixture
def session(tmp_path: Path, spec: Spec) -> Iterator[sqlalchemy.orm.Session]:
    """A fresh SQLite database with the org tree (one session: SQLite begins IMMEDIATE)."""
    import_models()
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    Base.metadata.create_all(engine)
    maker = sqlalchemy.orm.sessionmaker(engine, expire_on_commit=False)
    with maker() as s:
        OrgService(s).sync_from_spec(spec, dt.date(2026, 10, 1))
        s.commit()
        yield s
    engine.dispose()


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchive:
    """An empty archive."""
    return LocalArchive(tmp_path / "archive")


@pytest.fixture
def service(session: sqlalchemy.orm.Session, archive: LocalArchive, spec: Spec) -> ListService:
    """The list service acting as an HQ administrator."""
    return ListService(session, archive, spec, actor="hq-admin")


# -- helpers ----------------------------------------------------------------------------
def active(rows: list[Row]) -> list[Row]:
    """The rows that are on the list (removal notes left out)."""
    return [r for r in rows if r["CHANGE_TYPE"] != "D"]


def write_spec(spec: Spec, out: Path, version: str, rows: list[Row]) -> Path:
    """A national list delivery in the spec's format; its check file."""
    w = DeliveryWriter(spec, out, "D", "00", version)
    with w.unit("TOP500_LIST") as u:
        for r in rows:
            u.write(dict(r, LIST_VERSION=version))
    return w.close()


def write_csv(path: Path, header: list[str], rows: list[list[Any]], encoding: str) -> Path:
    """A CSV file with a header row."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def snapshot(version: ListVersion) -> dict[str, tuple[dict[str, str], str]]:
    """An entry per customer: its fields and change type, for comparing loads."""
    return {e.national_cust_id: (entry_fields(e), e.change_type) for e in version.entries}


def findings(exc: pytest.ExceptionInfo[Unprocessable], code: str) -> list[dict[str, Any]]:
    """The findings of one code an Unprocessable carries."""
    return [f for f in exc.value.errors if f.get("code") == code]


# -- loading ----------------------------------------------------------------------------
def test_load_sample_spec_format(service: ListService, session: sqlalchemy.orm.Session, archive: LocalArchive,
                                 sample_dir: Path) -> None:
    v = service.load(sample_dir / "D_00_2026V01_00.chk")
    session.commit()
    assert (v.version, v.state, v.based_on_id, v.loaded_by) == ("2026V01", DRAFT, None, "hq-admin")
    assert len(v.entries) == 500
    assert {e.change_type for e in v.entries} == {"A"}
    assert (v.added, v.changed, v.removed, v.unchanged) == (500, 0, 0, 0)
    assert [e.rank for e in v.entries] == list(range(1, 501))
    # The file's removal notes remove nothing on a first load: they are not entries.
    assert all(e.exp_date is None for e in v.entries)
    assert v.source_name == "D_00_2026V01_00.chk"
    assert archive.read_bytes(v.source_sha256) == (sample_dir / "D_00_2026V01_00.chk").read_bytes()
    data = (sample_dir / "D_00_2026V01_31101_00_001.txt").read_bytes()
    assert archive.exists(hashlib.sha256(data).hexdigest())
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "list.load")).one()
    assert event.target == "list:2026V01" and event.detail["added"] == 500
    assert len(event.detail["ignored_removals"]) == 6
    assert service.versions() == [v] and service.get("2026V01") is v and service.current() is None


def test_load_directory_and_duplicate_version(service: ListService, sample_dir: Path) -> None:
    v = service.load(sample_dir)  # the folder also holds the calendar delivery; only the list is taken
    assert v.version == "2026V01" and len(v.entries) == 500
    with pytest.raises(Conflict) as exc:
        service.load(sample_dir / "D_00_2026V01_00.chk")
    assert exc.value.code == "list_version_exists"
    with pytest.raises(NotFound) as nf:
        service.get("2026V09")
    assert nf.value.code == "list_version_not_found" and nf.value.message_zh


def test_csv_and_xlsx_give_identical_entries(service: ListService, spec: Spec, sample_dir: Path,
                                             sample_rows: list[Row], tmp_path: Path) -> None:
    unit = spec.unit("TOP500_LIST")
    reference = snapshot(service.load(sample_dir))

    # UTF-8 with BOM, field ids, no LIST_VERSION / CHANGE_TYPE columns: the version is given.
    ids = [f for f in unit.field_ids if f not in ("LIST_VERSION", "CHANGE_TYPE")]
    a = write_csv(tmp_path / "list_v2.csv", ids, [[r[f] for f in ids] for r in active(sample_rows)], "utf-8-sig")
    v2 = service.load(a, version="2026V02")

    # GB18030 with the Chinese names, every column, removal notes included; the version comes from the rows.
    zh = [unit.field(f).name_zh for f in unit.field_ids]
    b = write_csv(tmp_path / "名单.csv", zh, [[r[f] if f != "LIST_VERSION" else "2026V03" for f in unit.field_ids]
                                             for r in sample_rows], "gb18030")
    v3 = service.load(b)

    # XLSX with typed cells (numbers, dates) and Chinese headers.
    wb = pytest.importorskip("openpyxl").Workbook()
    ws = wb.active
    ws.append(zh)
    for r in sample_rows:
        cells: list[Any] = []
        for f in unit.field_ids:
            value = r[f]
            if f == "LIST_VERSION":
                value = "2026V04"
            elif f == "CUST_RANK":
                value = int(value)
            elif f in ("EFF_DATE", "EXP_DATE") and value:
                value = dt.datetime.strptime(value, "%Y%m%d")
            cells.append(value or None)
        ws.append(cells)
    ws.append([None] * len(zh))  # trailing empty row, as spreadsheets leave
    c = tmp_path / "list.xlsx"
    wb.save(c)
    v4 = service.load(c)

    assert [v.version for v in (v2, v3, v4)] == ["2026V02", "2026V03", "2026V04"]
    for v in (v2, v3, v4):
        assert snapshot(v) == reference
    assert v2.source_name == "list_v2.csv" and v4.source_name == "list.xlsx"


def test_csv_without_version_is_refused(service: ListService, spec: Spec, sample_rows: list[Row],
                                        tmp_path: Path) -> None:
    ids = [f for f in spec.unit("TOP500_LIST").field_ids if f != "LIST_VERSION"]
    path = write_csv(tmp_path / "l.csv", ids, [[r[f] for f in ids] for r in active(sample_rows)[:3]], "utf-8")
    with pytest.raises(BadRequest) as exc:
        service.load(path)
    assert exc.value.code == "list_version_required"


def test_csv_bad_header_is_refused(service: ListService, spec: Spec, sample_rows: list[Row], tmp_path: Path) -> None:
    ids = [f for f in spec.unit("TOP500_LIST").field_ids if f != "HQ_MANAGER_PHONE"] + ["REMARK"]
    path = write_csv(tmp_path / "l.csv", ids, [[r.get(f, "") for f in ids] for r in sample_rows[:3]], "utf-8")
    with pytest.raises(Unprocessable) as exc:
        service.load(path)
    assert exc.value.code == "list_bad_header"
    codes = {(f["code"], f.get("field"), f.get("value")) for f in exc.value.errors}
    assert ("list_missing_column", "HQ_MANAGER_PHONE", None) in codes
    assert ("list_unknown_column", None, "REMARK") in codes


def test_invalid_csv_is_refused_with_lines_fields_and_codes(service: ListService, session: sqlalchemy.orm.Session,
                                                            archive: LocalArchive, spec: Spec,
                                                            sample_rows: list[Row], tmp_path: Path) -> None:
    rows = [dict(r) for r in active(sample_rows)]
    # Row 10 (CSV line 12): a real local network, but of another province.
    i = next(i for i, r in enumerate(rows) if i >= 10 and r["LEAD_PROV_ID"] != "44")
    rows[i]["LEAD_LATN_ID"] = "0751"
    # Row 20 (line 22) repeats row 5's id (line 7).
    rows[20]["NATIONAL_CUST_ID"] = rows[5]["NATIONAL_CUST_ID"]
    # Row 30 (line 32): no 13th month.
    rows[30]["EFF_DATE"] = "20261301"
    # Row 40 (line 42): another version than the list's (taken from the first row).
    rows[40]["LIST_VERSION"] = "2026V07"
    ids = list(spec.unit("TOP500_LIST").field_ids)
    path = write_csv(tmp_path / "bad.csv", ids, [[r[f] for f in ids] for r in rows], "utf-8")
    with pytest.raises(Unprocessable) as exc:
        service.load(path)
    assert exc.value.code == "list_invalid" and exc.value.status == 422
    [r03] = findings(exc, "R31101-03")
    assert (r03["file"], r03["line"], r03["field"]) == ("bad.csv", i + 2, "LEAD_LATN_ID")
    assert "0751" in r03["message_en"] and "0751" in r03["message_zh"]
    [e401] = findings(exc, "E401")
    assert (e401["file"], e401["line"], e401["value"], e401["expected"]) == \
        ("bad.csv", 22, rows[5]["NATIONAL_CUST_ID"], "7")
    assert "Line 22" in e401["message_en"] and "line 7" in e401["message_en"]
    [e304] = findings(exc, "E304")
    assert (e304["file"], e304["line"], e304["field"], e304["value"]) == ("bad.csv", 32, "EFF_DATE", "20261301")
    [e402] = findings(exc, "E402")
    assert (e402["line"], e402["field"], e402["value"], e402["expected"]) == (42, "LIST_VERSION", "2026V07", "2026V01")
    assert all(f["severity"] == "error" for f in exc.value.errors)
    # Refused, but the file was received: archived, and nothing else stored.
    assert archive.exists(hashlib.sha256(path.read_bytes()).hexdigest())
    session.rollback()
    assert session.scalars(select(ListVersion)).all() == []


def test_invalid_spec_format_names_its_data_file(spec: Spec, sample_rows: list[Row], tmp_path: Path) -> None:
    rows = [dict(r) for r in active(sample_rows)]
    rows[4]["CUST_NAME"] = "名|称"  # a delimiter inside a value breaks the record
    check = write_spec(spec, tmp_path / "d", "2026V05", rows)
    with pytest.raises(Unprocessable) as exc:
        import_list(check, spec)
    [e201] = findings(exc, "E201")
    assert (e201["file"], e201["line"]) == ("D_00_2026V05_31101_00_001.txt", 5)


def test_xlsx_value_with_a_delimiter_is_refused(spec: Spec, sample_rows: list[Row], tmp_path: Path) -> None:
    unit = spec.unit("TOP500_LIST")
    wb = pytest.importorskip("openpyxl").Workbook()
    ws = wb.active
    ws.append(list(unit.field_ids))
    for n, r in enumerate(active(sample_rows)[:5]):
        ws.append([("A|B" if f == "CUST_NAME" and n == 2 else r[f]) for f in unit.field_ids])
    path = tmp_path / "l.xlsx"
    wb.save(path)
    with pytest.raises(Unprocessable) as exc:
        import_list(path, spec)
    [e201] = findings(exc, "E201")
    assert (e201["file"], e201["line"], e201["field"], e201["value"]) == ("l.xlsx", 4, "CUST_NAME", "A|B")


# -- a second version -------------------------------------------------------------------
def second_version(rows: list[Row]) -> tuple[list[Row], dict[str, Any]]:
    """2026V02 from 2026V01: 3 dropped, 1 removed explicitly, 2 changed, 2 added; what was done."""
    listed = [dict(r) for r in active(rows)]
    dropped = [listed[i]["NATIONAL_CUST_ID"] for i in (7, 8, 9)]
    explicit = next(r for r in listed[10:] if r["LEAD_PROV_ID"] == "42" and r["EFF_DATE"] <= "20260601")
    renamed, reranked = listed[0], listed[1]
    renamed["CUST_NAME"] += "（更名）"
    reranked["CUST_RANK"] = "600"
    new = []
    for n, base in enumerate([r for r in listed if r["LEAD_PROV_ID"] == "42"][:2]):
        new.append(dict(base, NATIONAL_CUST_ID=f"G42999999{n}", CUST_RANK=str(501 + n), EFF_DATE="20261101",
                        CHANGE_TYPE="A"))
    out = [r for r in listed if r["NATIONAL_CUST_ID"] not in dropped]
    for r in out:
        if r is explicit:
            r["CHANGE_TYPE"], r["EXP_DATE"] = "D", "20260601"
    return out + new, {"dropped": dropped, "explicit": explicit["NATIONAL_CUST_ID"],
                       "changed": {renamed["NATIONAL_CUST_ID"]: "CUST_NAME", reranked["NATIONAL_CUST_ID"]: "CUST_RANK"},
                       "new": [r["NATIONAL_CUST_ID"] for r in new]}


def test_second_version_diff(service: ListService, session: sqlalchemy.orm.Session, spec: Spec, sample_dir: Path,
                             sample_rows: list[Row], tmp_path: Path) -> None:
    v1 = service.load(sample_dir)
    service.publish(v1)
    rows, did = second_version(sample_rows)
    v2 = service.load(write_spec(spec, tmp_path / "v2", "2026V02", rows), day=dt.date(2026, 11, 15))
    session.commit()
    assert v2.based_on_id == v1.id and v2.state == DRAFT
    assert (v2.added, v2.changed, v2.removed, v2.unchanged) == (2, 2, 4, 500 - 3 - 1 - 2)
    by_id = {e.national_cust_id: e for e in v2.entries}
    assert len(by_id) == 502
    for cid in did["dropped"]:
        e = by_id[cid]
        assert e.change_type == "D" and e.exp_date == dt.date(2026, 11, 15) and e.rank > 500
    assert by_id[did["explicit"]].change_type == "D" and by_id[did["explicit"]].exp_date == dt.date(2026, 6, 1)
    assert {c for c in did["new"]} == {e.national_cust_id for e in v2.entries if e.change_type == "A"}

    d = service.diff(v2)
    assert (d["version"], d["based_on"]) == ("2026V02", "2026V01")
    assert d["counts"] == {"added": 2, "changed": 2, "removed": 4, "unchanged": 494, "total": 502}
    assert sorted(x["national_cust_id"] for x in d["added"]) == did["new"]
    changed = {x["national_cust_id"]: x["changes"] for x in d["changed"]}
    assert {cid: list(ch) for cid, ch in changed.items()} == {cid: [f] for cid, f in did["changed"].items()}
    reranked = next(cid for cid, f in did["changed"].items() if f == "CUST_RANK")
    assert changed[reranked]["CUST_RANK"] == ["2", "600"]
    removed = {x["national_cust_id"]: x for x in d["removed"]}
    assert set(removed) == set(did["dropped"]) | {did["explicit"]}
    assert removed[did["dropped"][0]]["changes"]["EXP_DATE"] == ["", "20261115"]
    assert all(x["lead_prov_id"] and x["cust_name"] for x in d["added"] + d["changed"] + d["removed"])
    # The first version has nothing to compare with: everything is new.
    assert service.diff(v1)["counts"]["added"] == 500


def test_stale_version_is_refused(service: ListService, spec: Spec, sample_dir: Path, sample_rows: list[Row],
                                  tmp_path: Path) -> None:
    service.publish(service.load(sample_dir))
    with pytest.raises(Conflict) as exc:
        service.load(write_spec(spec, tmp_path / "old", "2025V09", active(sample_rows)))
    assert exc.value.code == "list_version_stale"


# -- publishing -------------------------------------------------------------------------
def validate_slice(archive: LocalArchive, check_name: str, check_sha: str, data_name: str, data_sha: str,
                   out: Path, spec: Spec) -> Any:
    """Copy a slice's archived files under their names and validate them as a delivery."""
    out.mkdir(parents=True)
    for name, sha in ((check_name, check_sha), (data_name, data_sha)):
        shutil.copyfile(archive.path(sha), out / name)
    return validate_delivery([out / check_name, out / data_name], spec)


def test_publish_cuts_valid_slices(service: ListService, session: sqlalchemy.orm.Session, archive: LocalArchive,
                                   spec: Spec, sample_dir: Path, sample_rows: list[Row], tmp_path: Path) -> None:
    v1 = service.load(sample_dir)
    assert service.slice_ids("42") is None  # nothing published yet
    slices = service.publish(v1, actor="hq-chief")
    session.commit()
    assert v1.state == PUBLISHED and v1.published_by == "hq-chief" and v1.published_at is not None
    assert service.current() is v1
    with_customers = sorted({r["LEAD_PROV_ID"] for r in active(sample_rows)})
    assert sorted(s.province for s in slices) == with_customers
    assert sum(s.rows for s in slices) == 500
    for s in slices:
        assert s.check_name == f"D_{s.province}_2026V01_00.chk"
        assert s.data_name == f"D_{s.province}_2026V01_31101_00_001.txt"
        assert s.version is v1
        data = archive.read_bytes(s.data_sha256)
        assert len(data) == s.data_size and data.decode("utf-8").count("\n") == s.rows
        assert {line.split("|")[7] for line in data.decode("utf-8").splitlines()} == {s.province}
    s42 = service.slice_for("42")
    report = validate_slice(archive, s42.check_name, s42.check_sha256, s42.data_name, s42.data_sha256,
                            tmp_path / "s42", spec)
    assert report.status == "accepted" and report.errors == 0 and report.party == "42" and report.mode == "D"
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "list.publish")).one().actor == "hq-chief"

    with pytest.raises(Conflict) as exc:
        service.publish(v1)
    assert exc.value.code == "list_already_published"

    # The second version supersedes the first; its slices carry the removed customers too.
    rows, did = second_version(sample_rows)
    v2 = service.load(write_spec(spec, tmp_path / "v2", "2026V02", rows), day=dt.date(2026, 11, 15))
    slices2 = service.publish(v2)
    session.commit()
    assert (v1.state, v2.state, service.current()) == (SUPERSEDED, PUBLISHED, v2)
    assert sum(s.rows for s in slices2) == 502
    s42 = service.slice_for("42")
    assert s42.check_name == "D_42_2026V02_00.chk"
    assert service.slice_for("42", "2026V01").check_name == "D_42_2026V01_00.chk"
    for s in slices2:
        report = validate_slice(archive, s.check_name, s.check_sha256, s.data_name, s.data_sha256,
                                tmp_path / "v2slices" / s.province, spec)
        assert report.errors == 0, report.as_dict()["findings"]
    lines = archive.read_bytes(s42.data_sha256).decode("utf-8").splitlines()
    removed42 = [ln for ln in lines if ln.endswith("|D")]
    assert any(did["explicit"] in ln and "|20260601|D" in ln for ln in removed42)
    with pytest.raises(Conflict):
        service.publish(v1)


def test_draft_based_on_an_old_version_is_refused(service: ListService, session: sqlalchemy.orm.Session,
                                                  spec: Spec, sample_dir: Path, sample_rows: list[Row],
                                                  tmp_path: Path) -> None:
    v1 = service.load(sample_dir)
    rows, _ = second_version(sample_rows)
    v2 = service.load(write_spec(spec, tmp_path / "v2", "2026V02", rows))  # based on nothing
    service.publish(v1)
    with pytest.raises(Conflict) as exc:
        service.publish(v2)
    assert exc.value.code == "list_draft_outdated"


def test_province_without_customers_gets_no_slice(service: ListService, spec: Spec, sample_dir: Path,
                                                  sample_rows: list[Row], tmp_path: Path) -> None:
    service.publish(service.load(sample_dir))
    rows = [r for r in active(sample_rows) if r["LEAD_PROV_ID"] != "54"]
    v2 = service.load(write_spec(spec, tmp_path / "v2", "2026V02", rows))
    assert {e.change_type for e in v2.entries if e.lead_prov_id == "54"} == {"D"}
    service.publish(v2)
    assert service.slice_for("54").rows == len([e for e in v2.entries if e.lead_prov_id == "54"])
    assert service.slice_ids("54") == (frozenset(), "2026V02")
    # Once removed, a customer is not carried into the next version at all.
    v3 = service.load(write_spec(spec, tmp_path / "v3", "2026V03", rows))
    assert v3.removed == 0 and not [e for e in v3.entries if e.lead_prov_id == "54"]
    slices = service.publish(v3)
    assert "54" not in {s.province for s in slices}
    with pytest.raises(NotFound) as exc:
        service.slice_for("54")
    assert exc.value.code == "list_slice_not_found"
    assert service.slice_ids("54") == (frozenset(), "2026V03")


def test_slice_ids_exclude_removed(service: ListService, session: sqlalchemy.orm.Session, spec: Spec,
                                   sample_dir: Path, sample_rows: list[Row], tmp_path: Path) -> None:
    with pytest.raises(NotFound) as exc:
        service.slice_for("42")
    assert exc.value.code == "list_not_published"
    service.publish(service.load(sample_dir))
    ids42 = {r["NATIONAL_CUST_ID"] for r in active(sample_rows) if r["LEAD_PROV_ID"] == "42"}
    assert service.slice_ids("42") == (frozenset(ids42), "2026V01")
    rows, did = second_version(sample_rows)
    v2 = service.load(write_spec(spec, tmp_path / "v2", "2026V02", rows))
    assert service.slice_ids("42") == (frozenset(ids42), "2026V01")  # a draft changes nothing yet
    service.publish(v2)
    gone = {e.national_cust_id for e in v2.entries if e.change_type == "D" and e.lead_prov_id == "42"}
    assert did["explicit"] in gone
    ids, version = service.slice_ids("42")  # type: ignore[misc]
    assert version == "2026V02"
    assert ids == (ids42 - gone) | set(did["new"])
    assert not ids & gone
    count = session.scalar(select(sqlalchemy.func.count()).select_from(ListEntry).where(
        ListEntry.list_version_id == v2.id, ListEntry.lead_prov_id == "42"))
    assert count == len(ids) + len(gone)


def test_downloads_are_recorded(service: ListService, session: sqlalchemy.orm.Session, sample_dir: Path) -> None:
    v1 = service.load(sample_dir)
    service.publish(v1)
    acct = Account(name="prov42", role="province", party="42")
    session.add(acct)
    session.flush()
    s42 = service.slice_for("42")
    first = service.record_download(s42, acct.id, s42.check_name, "http")
    service.record_download(s42, acct.id, s42.data_name, "sftp")
    session.commit()
    with pytest.raises(BadRequest) as exc:
        service.record_download(s42, acct.id, "D_44_2026V01_00.chk", "http")
    assert exc.value.code == "list_file_unknown"
    got = service.downloads(v1)
    assert [(d.file_name, d.channel, d.account_id) for d in got] == \
        [(s42.check_name, "http", acct.id), (s42.data_name, "sftp", acct.id)]
    assert got[0] is first and first.at is not None and first.slice_id == s42.id
    assert service.downloads("2026V01") == got


def test_xml_spec_format_gives_identical_entries(service: ListService, spec: Spec, sample_dir: Path,
                                                 tmp_path: Path) -> None:
    generate(spec, "202610", tmp_path / "x", provinces=["42"], scale=1, fmt="xml", seed=2002)
    xml = service.load(tmp_path / "x" / "00" / "D_00_2026V01_00.chk")
    assert xml.version == "2026V01" and len(xml.entries) == 500
    reference = import_list(sample_dir, spec)
    assert {e.national_cust_id for e in xml.entries} == \
        {r["NATIONAL_CUST_ID"] for r in reference.rows if r["CHANGE_TYPE"] != "D"}


def test_losing_a_race_for_the_version_name_is_a_conflict(service: ListService, session: sqlalchemy.orm.Session,
                                                          sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = service.load(sample_dir)
    session.commit()
    # As if another transaction had stored the version between the check and the insert.
    monkeypatch.setattr(service, "find", lambda version: None)
    with pytest.raises(Conflict) as exc:
        service.load(sample_dir)
    assert exc.value.code == "list_version_exists"
    assert session.scalars(select(ListVersion)).all() == [first]  # the transaction is still usable


def test_upload_stored_under_a_temporary_name(service: ListService, spec: Spec, sample_rows: list[Row],
                                              tmp_path: Path) -> None:
    ids = list(spec.unit("TOP500_LIST").field_ids)
    rows = [dict(r) for r in active(sample_rows)]
    rows[2]["LEVEL_ID"] = "9"
    tmp_file = write_csv(tmp_path / "upload-3f9a", ids, [[r[f] for f in ids] for r in rows], "utf-8")
    with pytest.raises(Unprocessable) as exc:
        service.load(tmp_file, source_name="名单2026V01.csv")
    [e307] = findings(exc, "E307")
    assert (e307["file"], e307["line"], e307["field"], e307["value"]) == ("名单2026V01.csv", 4, "LEVEL_ID", "9")
    with pytest.raises(BadRequest) as bad:
        service.load(tmp_file)  # no name to tell the format by
    assert bad.value.code == "list_format_unknown"
    rows[2]["LEVEL_ID"] = "1"
    write_csv(tmp_file, ids, [[r[f] for f in ids] for r in rows], "utf-8")
    v = service.load(tmp_file, source_name="名单2026V01.csv")
    assert v.source_name == "名单2026V01.csv" and len(v.entries) == 500
