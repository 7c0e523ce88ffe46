"""Late and missing by name, and top-500 coverage by name: the services, the pages and their downloads.

On top of the pages' data (202609 from 11 and 42, 202610 from 11, 42 and 44) this module
moves 202609's deadline to before the deliveries arrived (Hubei late, Beijing covered by an
exception), closes 202609, gives Tianjin (12, which sent nothing) a contact account, and
takes one Hubei customer's contacts and another's revenue out of 202610's current facts, so
that every kind of coverage has a case. The clock is set through ``timeliness.utcnow``.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass

import openpyxl
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from exchange_server.accounts.services import AccountService
from exchange_server.admin.models import CycleException
from exchange_server.clock import as_utc
from exchange_server.consolidation import timeliness
from exchange_server.consolidation.aggregates import (
    Aggregates,
    Gap,
    gap_text,
    parse_gaps,
)
from exchange_server.consolidation.coverage import CoverageService
from exchange_server.consolidation.models import (
    ContactFact,
    CoverageAggregate,
    CustomerFact,
    CustProdFact,
)
from exchange_server.consolidation.rollups import RollupService
from exchange_server.consolidation.timeliness import TimelinessService, days_late
from exchange_server.cycles.models import ReportingCycle
from exchange_server.lists.models import ListEntry
from exchange_server.org.models import Area
from exchange_server.runtime import Runtime
from exchange_server.submissions.models import Delivery
from tests.pages.conftest import ANALYST, PROVINCE

CONTACT = ("prov12", "天津报送联系人 Li Lei")
UNITS = ("31201", "31202", "31203", "32001", "32002", "32003")


@dataclass(frozen=True)
class Setup:
    """What the module fixture arranged."""

    hubei_received: dt.datetime  # Hubei's first 202609 receipt
    deadline_0609: dt.datetime
    deadline_0610: dt.datetime
    no_contacts: str  # a Hubei customer whose 202610 contacts are no longer current
    no_revenue: str  # a Hubei customer whose 202610 revenue is all zero


@pytest.fixture(scope="module")
def setup(page_runtime: Runtime) -> Setup:
    """Late Hubei, excepted Beijing, closed 202609, Tianjin's contact, two partly covered Hubei customers."""
    rt = page_runtime
    with rt.db.session() as s:
        first = {p: as_utc(at) for p, at in s.execute(
            select(Delivery.party, func.min(Delivery.received_at))
            .where(Delivery.period == "202609", Delivery.mode == "P").group_by(Delivery.party))}
        c09 = s.get(ReportingCycle, "202609")
        c10 = s.get(ReportingCycle, "202610")
        assert c09 is not None and c10 is not None
        # 36 hours before Hubei's delivery: 2 started days late.
        c09.deadline = first["42"] - dt.timedelta(hours=36)
        c09.state = "closed"
        # Beijing was let deliver late: not late until its exception's end.
        s.add(CycleException(cycle_id="202609", province="11", until=first["11"] + dt.timedelta(hours=1),
                             reason="系统割接", granted_by="test"))
        AccountService(s, "test").create(CONTACT[0], "province", "12", display_name=CONTACT[1])
        c = CustomerFact
        customers = list(s.scalars(select(c.national_cust_id).where(c.cycle == "202610", c.prov_id == "42",
                                                                    c.current.is_(True)).order_by(c.national_cust_id)))
        no_contacts, no_revenue = customers[0], customers[1]
        s.execute(update(ContactFact).where(ContactFact.cycle == "202610", ContactFact.national_cust_id == no_contacts)
                  .values(current=False))
        s.execute(update(CustProdFact).where(CustProdFact.cycle == "202610", CustProdFact.national_cust_id == no_revenue)
                  .values(income_amt=0))
        Aggregates(s, rt.archive, rt.spec).coverage("202610", ["42"])
        return Setup(first["42"], as_utc(c09.deadline), as_utc(c10.deadline), no_contacts, no_revenue)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> dt.datetime:
    """Now: 3 days and 1 hour after 202610's deadline (missing parties are 4 started days late)."""
    now = setup.deadline_0610 + dt.timedelta(days=3, hours=1)
    monkeypatch.setattr(timeliness, "utcnow", lambda: now)
    return now


def sign_in(client: FlaskClient, name: str = ANALYST[0], password: str = ANALYST[1]) -> None:
    """Sign in through the form."""
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token.group(1)})
    assert r.status_code == 302


@pytest.fixture
def analyst(client: FlaskClient, setup: Setup) -> FlaskClient:
    """The test client, signed in as the analyst."""
    sign_in(client)
    return client


def row(html: str, **data: str) -> str:
    """The <tr> whose data-* attributes include all of ``data`` (asserted to exist)."""
    for m in re.finditer(r"<tr [^>]*>.*?</tr>", html, re.S):
        head = m.group(0).split(">", 1)[0]
        if all(f'data-{k.replace("_", "-")}="{v}"' in head for k, v in data.items()):
            return m.group(0)
    raise AssertionError(f"no row with {data}")


# -- the service -----------------------------------------------------------------------------------
def test_days_late_count_started_days() -> None:
    deadline = dt.datetime(2026, 11, 10, 16, tzinfo=dt.timezone.utc)
    assert days_late(deadline, deadline) == 0
    assert days_late(deadline, deadline - dt.timedelta(hours=5)) == 0
    assert days_late(deadline, deadline + dt.timedelta(minutes=1)) == 1
    assert days_late(deadline, deadline + dt.timedelta(days=1)) == 1
    assert days_late(deadline, deadline + dt.timedelta(days=1, seconds=1)) == 2


def test_missing_and_late_parties_with_days_and_contacts(page_runtime: Runtime, setup: Setup,
                                                         clock: dt.datetime) -> None:
    rt = page_runtime
    with rt.db.session() as s:
        c10 = s.get(ReportingCycle, "202610")
        c09 = s.get(ReportingCycle, "202609")
        assert c10 is not None and c09 is not None
        oct_ = TimelinessService(s, rt.spec).report(c10)
        sep = TimelinessService(s, rt.spec).report(c09)
    units = c10.units
    assert len(units) == 6
    by = {(i.party, i.unit): i for i in oct_.items}
    # Who delivered is neither late nor missing; everyone else misses every unit, 4 started days.
    assert not {p for p, _u in by} & {"11", "42", "44"}
    tianjin = by[("12", "32001")]
    assert (tianjin.state, tianjin.days_late, tianjin.prov_name_zh, tianjin.prov_name_en) == \
        ("missing", 4, "天津市", "Tianjin")
    assert [(a.name, a.display_name) for a in tianjin.contacts] == [CONTACT]
    assert tianjin.deadline == setup.deadline_0610 and tianjin.received_at is None
    assert {u for p, u in by if p == "12"} == set(units)
    assert len(oct_.items) == (31 - 3) * 6 and oct_.missing == len(oct_.items) and oct_.late == 0
    # 202609: Hubei 2 started days late (36 hours); Beijing on time under its exception; Guangdong missing.
    sep_by = {(i.party, i.unit): i for i in sep.items}
    hubei = sep_by[("42", "31201")]
    assert (hubei.state, hubei.days_late, hubei.received_at) == ("late", 2, setup.hubei_received)
    assert [a.name for a in hubei.contacts] == [PROVINCE[0]]
    assert not [i for i in sep.items if i.party == "11"]
    guangdong = sep_by[("44", "32001")]
    assert guangdong.state == "missing"
    assert guangdong.days_late == days_late(setup.deadline_0609, clock)


def test_nothing_is_late_before_the_deadline_or_in_a_planned_cycle(page_runtime: Runtime, setup: Setup) -> None:
    rt = page_runtime
    with rt.db.session() as s:
        c10 = s.get(ReportingCycle, "202610")
        assert c10 is not None
        before = TimelinessService(s, rt.spec, now=setup.deadline_0610 - dt.timedelta(minutes=1)).report(c10)
        assert before.items == [] and not before.deadline_passed
        c10.state = "planned"  # never opened: never late, whatever the clock says
        try:
            planned = TimelinessService(s, rt.spec, now=setup.deadline_0610 + dt.timedelta(days=9)).report(c10)
            assert planned.items == []
            assert {c.state for h in planned.history for c in h.cells if c.cycle == "202610"} <= {"not_due", "on_time"}
        finally:
            s.rollback()


def test_history_grid_over_twelve_cycles(page_runtime: Runtime, setup: Setup, clock: dt.datetime) -> None:
    rt = page_runtime
    with rt.db.session() as s:
        c10 = s.get(ReportingCycle, "202610")
        assert c10 is not None
        report = TimelinessService(s, rt.spec).report(c10)
    assert report.history_cycles == ["202511", "202512"] + [f"2026{m:02d}" for m in range(1, 11)]
    grid = {h.prov_id: h for h in report.history}
    assert len(grid) == 31

    def states(prov: str) -> list[str]:
        return [c.state for c in grid[prov].cells]

    blank = ["not_due"] * 10  # not in the calendar: never due
    assert states("42") == blank + ["late", "on_time"]
    assert states("11") == blank + ["on_time", "on_time"]
    assert states("44") == blank + ["missing", "on_time"]
    assert states("12") == blank + ["missing", "missing"]
    assert (grid["42"].reported, grid["42"].on_time, grid["42"].due) == (2, 1, 2)
    assert (grid["11"].reported, grid["11"].on_time, grid["11"].due) == (2, 2, 2)
    assert (grid["12"].reported, grid["12"].on_time, grid["12"].due) == (0, 0, 2)
    assert set(grid["42"].cells[10].late_units) == set(c10.units)


def test_gap_text_round_trip_and_the_old_layout() -> None:
    gaps = [Gap("C2", frozenset({"contacts"}), "0271"), Gap("C1", frozenset({"details", "contacts", "products",
                                                                                "revenue"}), "")]
    text = gap_text(gaps)
    assert text == "C1:dcpr: C2:c:0271"  # those without details first
    assert sorted(parse_gaps(text)) == sorted(gaps)
    assert parse_gaps("A B") == [Gap("A", frozenset({"details"}), ""), Gap("B", frozenset({"details"}), "")]


def test_coverage_per_kind_with_names(page_runtime: Runtime, setup: Setup) -> None:
    rt = page_runtime
    with rt.db.session() as s:
        service = CoverageService(s, rt.spec)
        hubei = service.listing("202610", "42", per_page=None)
        names = dict(s.execute(select(ListEntry.national_cust_id, ListEntry.cust_name)).all())
        everyone = service.listing("202610", per_page=None)
        tianjin = service.listing("202610", "12", "details", per_page=None)
        roll = {r["prov_id"]: r for r in RollupService(s, rt.spec).coverage("202610")}
        paged = service.listing("202610", page=2, per_page=7)
    assert [(r.cust_id, sorted(r.missing)) for r in hubei.rows] == \
        sorted([(setup.no_contacts, ["contacts"]), (setup.no_revenue, ["revenue"])])
    for r in hubei.rows:
        assert r.cust_name == names[r.cust_id] and r.cust_name and r.prov_name_en == "Hubei"
        assert r.has("details") and r.has("products")
    counts = {p.prov_id: p for p in everyone.provinces}
    assert (counts["42"].not_covered, counts["42"].missing) == \
        (2, {"details": 0, "contacts": 1, "products": 0, "revenue": 1})
    # A province that sent nothing lacks every kind for every listed customer, all of them listed.
    assert counts["12"].listed > 0 and counts["12"].not_covered == counts["12"].listed
    assert tianjin.total == counts["12"].listed == len(tianjin.rows)
    assert all(r.missing == {"details", "contacts", "products", "revenue"} and r.cust_name for r in tianjin.rows)
    assert everyone.total == sum(p.not_covered for p in everyone.provinces) == len(everyone.rows)
    # The roll-up still lists (at most 50) ids without details, and only those.
    assert roll["42"]["missing_ids"] == [] and roll["42"]["received"] == roll["42"]["listed"]
    assert roll["12"]["missing_ids"] == [r.cust_id for r in tianjin.rows][:50]
    assert roll["12"]["missing"] == counts["12"].listed
    assert paged.rows == everyone.rows[7:14] and paged.pages == -(-everyone.total // 7)


# -- the pages -------------------------------------------------------------------------------------
def test_late_page_names_days_contacts_and_history(analyst: FlaskClient, clock: dt.datetime) -> None:
    r = analyst.get("/analyst/202610/late")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "迟报与缺报" in html and 'id="late"' in html
    tianjin = row(html, prov="12", party="12")
    assert 'data-state="missing"' in tianjin and 'data-days="4"' in tianjin
    assert "天津市" in tianjin and CONTACT[1] in tianjin and CONTACT[0] in tianjin
    assert "缺报" in tianjin and 'class="num days">4<' in tianjin
    # Its units, each with its state and days.
    assert re.findall(r'data-unit="(\d+)" data-state="(\w+)" data-days="(\d+)"', tianjin) == \
        [(u, "missing", "4") for u in sorted(UNITS)]
    late = html.split('id="late"', 1)[1].split("</table>", 1)[0]
    assert late.count("<tr data-prov=") == 31 - 3  # a row per party; who delivered has none
    assert 'data-prov="42" data-party="42"' not in html
    history = html.split('id="history"', 1)[1]
    hubei = row(history, prov="42")
    assert re.findall(r'data-state="(\w+)"', hubei)[-2:] == ["late", "on_time"]
    assert 'data-reported="2"' in hubei and 'data-on-time="1"' in hubei and ">2/2<" in hubei and ">1/2<" in hubei
    assert ">!<" in hubei and ">✓<" in hubei
    assert ">✗<" in row(history, prov="12")


def test_late_page_in_english(analyst: FlaskClient, clock: dt.datetime) -> None:
    analyst.get("/lang/en")
    html = analyst.get("/analyst/202609/late").get_data(as_text=True)
    assert '<html lang="en">' in html and "Late and missing" in html and "Days late" in html
    hubei = row(html, prov="42", party="42")
    province = hubei.split('class="prov">', 1)[1].split("</td>", 1)[0]
    assert "Hubei" in province and "湖北" not in province and 'data-days="2"' in hubei and "late" in hubei
    assert "Guangdong" in row(html, prov="44", party="44")
    assert re.findall(r'data-unit="\d+" data-state="(\w+)" data-days="(\d+)"', hubei) == [("late", "2")] * 6
    assert "Hubei" in row(html.split('id="history"', 1)[1], prov="42")


def test_late_page_before_the_deadline_says_so(analyst: FlaskClient, setup: Setup) -> None:
    html = analyst.get("/analyst/202610/late").get_data(as_text=True)  # the real clock: 30 days before
    assert 'id="late-none"' in html and "截止时间未到" in html and 'id="late"' not in html


def test_late_csv_has_one_charset_a_bom_and_the_rows(analyst: FlaskClient, clock: dt.datetime) -> None:
    r = analyst.get("/analyst/202610/late.csv")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "kam-late-202610.csv" in r.headers["Content-Disposition"]
    data = r.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"))))
    assert rows[0][0] == "省份编码 Province code" and "逾期天数 Days late" in rows[0]
    days = rows[0].index("逾期天数 Days late")
    tianjin = next(x for x in rows[1:] if x[0] == "12" and x[6] == "32001")
    assert tianjin[1] == "天津市" and tianjin[2] == "Tianjin" and tianjin[days] == "4"
    assert CONTACT[1] in tianjin[-2] and tianjin[8].startswith("missing")
    assert len(rows) == 1 + (31 - 3) * 6


def test_coverage_page_rows_kinds_counts_and_filters(analyst: FlaskClient, page_runtime: Runtime,
                                                     setup: Setup) -> None:
    with page_runtime.db.session() as s:
        name = s.scalar(select(ListEntry.cust_name).where(ListEntry.national_cust_id == setup.no_revenue))
    html = analyst.get("/analyst/202610/coverage?province=42").get_data(as_text=True)
    assert "500强客户覆盖" in html
    counts = html.split('id="coverage-counts"', 1)[1].split("</table>", 1)[0]
    assert 'data-prov="42" data-not-covered="2"' in counts  # every province counted, whatever the filter
    assert 'data-prov="11" data-not-covered="0"' in counts and 'data-prov="12" data-not-covered="0"' not in counts
    customer = row(html, prov="42", cust=setup.no_revenue)
    assert str(name) in customer
    assert re.findall(r'data-kind="(\w+)" data-received="(\w+)"', customer) == \
        [("details", "yes"), ("contacts", "yes"), ("products", "yes"), ("revenue", "no")]
    html = analyst.get("/analyst/202610/coverage?province=42&kind=contacts").get_data(as_text=True)
    assert 'data-total="1"' in html and f'data-cust="{setup.no_contacts}"' in html
    assert f'data-cust="{setup.no_revenue}"' not in html
    # Every province: 100 a page, with a pager.
    html = analyst.get("/analyst/202610/coverage").get_data(as_text=True)
    total = int(re.search(r'data-total="(\d+)"', html).group(1))  # type: ignore[union-attr]
    assert total > 100 and html.count("data-cust=") == 100 and 'id="page-next"' in html
    last = -(-total // 100)
    html = analyst.get(f"/analyst/202610/coverage?page={last}").get_data(as_text=True)
    assert html.count("data-cust=") == total - 100 * (last - 1) and 'id="page-next"' not in html


def test_coverage_page_in_english(analyst: FlaskClient, setup: Setup) -> None:
    analyst.get("/lang/en")
    html = analyst.get("/analyst/202610/coverage?province=42").get_data(as_text=True)
    assert '<html lang="en">' in html and "Top-500 coverage" in html and "Customers not covered" in html
    assert "Hubei" in row(html, prov="42", cust=setup.no_contacts) and "Revenue" in html


def test_coverage_downloads_have_every_row(analyst: FlaskClient, page_runtime: Runtime, setup: Setup) -> None:
    with page_runtime.db.session() as s:
        total = CoverageService(s, page_runtime.spec).listing("202610", per_page=None).total
    r = analyst.get("/analyst/202610/coverage.csv")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    data = r.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"))))
    assert len(rows) == 1 + total > 101
    header = rows[0]
    assert header[3] == "全国大客户编码 National customer id" and header[4] == "客户名称 Customer name"
    hubei = next(x for x in rows if x[3] == setup.no_revenue)
    assert hubei[header.index("收入（31203） Revenue (31203)")] == "否 no"
    assert hubei[header.index("产品（31203） Products (31203)")] == "是 yes" and hubei[4]
    r = analyst.get("/analyst/202610/coverage.xlsx?province=42")
    assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet")
    ws = openpyxl.load_workbook(io.BytesIO(r.get_data())).active
    assert ws is not None
    values = [[c.value for c in x] for x in ws.iter_rows(min_row=3)]
    assert sorted(v[3] for v in values) == sorted([setup.no_contacts, setup.no_revenue])


@pytest.mark.parametrize("url, status", [
    ("/analyst/202610/coverage?province=99", 400), ("/analyst/202610/coverage?kind=phone", 400),
    ("/analyst/202610/coverage?page=abc", 400), ("/analyst/202610/coverage?page=0", 400),
    ("/analyst/202610/coverage?page=999", 404), ("/analyst/209913/coverage", 404),
    ("/analyst/209913/late", 404), ("/analyst/209913/late.csv", 404), ("/analyst/202610/coverage.pdf", 400),
    ("/analyst/202610/coverage.csv?kind=phone", 400),
])
def test_bad_parameters_get_an_html_error_page(analyst: FlaskClient, url: str, status: int) -> None:
    r = analyst.get(url)
    assert r.status_code == status and r.mimetype == "text/html", (url, r.status_code)
    assert "<html" in r.get_data(as_text=True)


def test_province_accounts_may_not_open_them(client: FlaskClient, setup: Setup) -> None:
    sign_in(client, *PROVINCE)
    for url in ("/analyst/202610/late", "/analyst/202610/coverage", "/analyst/202610/late.csv",
                "/analyst/202610/coverage.csv"):
        assert client.get(url).status_code == 403, url



def test_networks_sending_on_their_own_are_listed_by_name(page_runtime: Runtime, setup: Setup,
                                                          clock: dt.datetime) -> None:
    """A province whose local networks have accounts of their own: each network is listed too."""
    rt = page_runtime
    with rt.db.session() as s:
        found = s.execute(select(Area.code, Area.name_zh).where(Area.parent_code == "12", Area.level == "local_network",
                                                                Area.active.is_(True)).order_by(Area.code)).first()
        assert found is not None
        code, name_zh = found
        AccountService(s, "test").create("net-" + code, "province", code, display_name="本地网联系人")
        s.flush()
        c10 = s.get(ReportingCycle, "202610")
        assert c10 is not None
        try:
            report = TimelinessService(s, rt.spec).report(c10)
        finally:
            s.rollback()
    mine = [i for i in report.items if i.party == code]
    assert len(mine) == 6 and all(i.is_network and i.prov_id == "12" and i.state == "missing" for i in mine)
    assert mine[0].party_name_zh == name_zh and mine[0].days_late == 4
    assert [a.display_name for a in mine[0].contacts] == ["本地网联系人"]
    # Provinces whose networks do not send alone are listed as provinces only.
    assert not [i for i in report.items if i.is_network and i.prov_id != "12"]
    assert [p.first.party for p in report.parties if p.first.prov_id == "12"][:1] == ["12"]


def test_the_rollup_reads_only_the_head_of_a_long_gap_text(page_runtime: Runtime, setup: Setup) -> None:
    """60 customers without details, tokens of the longest form: the roll-up still lists exactly the first 50."""
    rt = page_runtime
    gaps = [Gap(f"X{i:09d}", frozenset({"details", "contacts", "products", "revenue"}), "0999") for i in range(60)]
    gaps += [Gap("A000000000", frozenset({"contacts"}), "0999")]  # sorts first by id, yet comes after those
    with rt.db.session() as s:
        RollupService(s, rt.spec).refresh_coverage("202610")
        s.execute(update(CoverageAggregate).where(CoverageAggregate.cycle == "202610", CoverageAggregate.prov_id == "13")
                  .values(missing_ids=gap_text(gaps), listed=61, received=1))
        try:
            roll = {r["prov_id"]: r for r in RollupService(s, rt.spec).coverage("202610")}
            listing = CoverageService(s, rt.spec).listing("202610", "13", per_page=None)
        finally:
            s.rollback()
    assert roll["13"]["missing_ids"] == [g.cust_id for g in gaps[:50]]
    assert roll["13"]["missing"] == 60
    assert listing.total == 61 and listing.rows[0].cust_id == "A000000000"
