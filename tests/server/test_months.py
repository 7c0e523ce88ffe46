"""Several months, out of order, against an independent recomputation — on SQLite and PostgreSQL.

Hubei (42) and Guangdong (44) report October (C) before September (C-1); HQ publishes a list
version between them (a Hubei customer leaves the list after September); Hubei corrects
September; one of Hubei's local networks then sends its own part of October; Guangdong
corrects October with two units only. After every step, every figure of both cycles — in
the JSON, CSV, XLSX and XML downloads — must equal what ``tests.support.recompute`` works
out from the files the test sent, with plain Python and Decimal.
"""
from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchange_server.consolidation import exports
from exchange_server.lists.services import ListService
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpTransport
from schemas.conventions import Cycle
from exchange_server.sample_data.generator import generate
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support import recompute
from tests.support.deliveries import DeliveryRows
from tests.support.recompute import Ledger, read_delivery

PROVINCES = ("42", "44")
SEP, OCT = "202609", "202610"
TABLES = ("totals", "by_province", "by_network", "by_product", "by_billing_item", "by_level", "by_industry",
          "coverage", "completeness", "lineage")


def _bump(rows: dict[str, list[dict[str, str]]], network: str, amount: Decimal) -> None:
    """Move one network's revenue by ``amount``: its 32001 row and its first 32003 row, so X-001/X-002 still hold."""
    for code in ("32001", "32003"):
        row = next(r for r in rows[code] if r["LATN_ID"] == network)
        for f in ("INCOME_AMT", "INCOME_YTD_AMT"):
            row[f] = str(Decimal(row[f]) + amount)


def _write(spec: Any, party: str, cycle: str, rows: dict[str, list[dict[str, str]]], folder: Path, resend: int,
           fmt: str = "txt") -> Path:
    d = DeliveryRows(spec, party, cycle, {recompute.NAMES[u]: r for u, r in rows.items()})
    return d.write(folder, resend=resend, fmt=fmt, encoding="GB18030")


class Exchange:
    """The live server, the accounts, the ledger of what was accepted and the list in force per cycle."""

    def __init__(self, server: Server, setup: Setup, runtime: Any, spec: Any, tmp: Path) -> None:
        self.server, self.runtime, self.spec, self.tmp = server, runtime, spec, tmp
        self.ledger = Ledger(spec)
        self.http: dict[str, HttpTransport] = {}
        self.analyst = HttpTransport(server.url, setup.role("analyst", "analyst"))
        self.setup = setup
        self.listed: dict[str, dict[str, set[str]]] = {}

    def account(self, party: str) -> None:
        self.http[party] = HttpTransport(self.server.url, self.setup.province(party))

    def deliver(self, party: str, cycle: str, folder: Path, resend: int) -> int:
        rows = read_delivery(folder, self.spec)  # what was sent, read back independently
        status, receipt = self.http[party].upload(files_of(folder))
        assert status == 202, receipt
        d = wait_final(self.http[party], receipt["delivery_id"])
        report = self.http[party].get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
        assert d["status"] in ("accepted", "accepted_with_warnings"), report["findings"][:5]
        self.ledger.accept(d["delivery_id"], party, cycle, resend, rows)
        return int(d["delivery_id"])

    def expected_networks(self, cycle: str) -> int:
        ver = self.spec.domain("Domain_area_id").version_on(Cycle.parse(cycle).begin)
        return sum(1 for c in ver.codes.values() if c.level == "local_network")

    def check(self, cycle: str) -> None:
        """Every download format of a cycle against the recomputation."""
        expected = self.ledger.figures(cycle, self.listed[cycle], self.expected_networks(cycle))
        base = f"/api/v1/reports/{cycle}"
        doc = recompute.json_loads(self.analyst.get_bytes(f"{base}/rollup.json"))
        recompute.compare(expected, doc, "json")
        self._check_sources(expected, doc)
        recompute.compare(expected, recompute.from_xml(self.analyst.get_bytes(f"{base}/rollup.xml")), "xml")
        tables = {name: self.analyst.get_bytes(f"{base}/{name}.csv") for name in TABLES}
        recompute.compare(expected, recompute.from_csv(tables, exports.TITLES), "csv")
        self._check_csv_sources(expected, tables)
        xlsx = self.analyst.get_bytes(f"{base}/rollup.xlsx")
        sheets = {name: exports._sheet_name(name) for name in ("totals", *recompute.KEYS)}
        recompute.compare(expected, recompute.from_xlsx(xlsx, exports.TITLES, sheets), "xlsx")
        # Money cells hold their decimal digits, never a binary float's.
        assert str(expected["totals"]["income_amt"]) in recompute.xlsx_money_texts(xlsx)

    def _check_sources(self, expected: dict[str, Any], doc: dict[str, Any]) -> None:
        cells = {(row["prov_id"], unit): cell for row in doc["completeness"]["matrix"] for unit, cell in
                 row["units"].items()}
        got = {k: (c["state"], tuple(sorted(s["delivery_id"] for s in c.get("sources", [])))) for k, c in cells.items()
               if c["state"] != "missing"}
        assert got == expected["completeness"]
        assert {(r["party"], r["unit"], r["delivery_id"]) for r in doc["lineage"]} == expected["lineage"]

    def _check_csv_sources(self, expected: dict[str, Any], tables: dict[str, bytes]) -> None:
        by_header = {f"{zh} {en}": key for key, (zh, en) in exports.TITLES.items()}
        rows = list(csv.reader(tables["lineage"][3:].decode("utf-8").splitlines()))
        keys = [by_header[h] for h in rows[0]]
        lineage = {(r["party"], r["unit"], int(r["delivery_id"])) for r in (dict(zip(keys, x)) for x in rows[1:])}
        assert lineage == expected["lineage"]


@pytest.fixture
def exchange(live_server: Server, setup: Setup, runtime: Any, spec: Any, tmp_path: Path) -> Exchange:
    for cycle in (SEP, OCT):
        setup.cycle(cycle)
    ex = Exchange(live_server, setup, runtime, spec, tmp_path)
    for p in PROVINCES:
        ex.account(p)
    return ex


def test_months_out_of_order_with_a_list_change_corrections_and_a_network(
        exchange: Exchange, runtime: Any, spec: Any, tmp_path: Path) -> None:
    ex = exchange
    for cycle in (SEP, OCT):
        generate(spec, cycle, tmp_path / cycle, provinces=list(PROVINCES), scale=1, fmt="mixed", seed=13)
    v1 = next((tmp_path / OCT / "00").glob("D_00_2026V01_00.chk"))
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.load(v1))
    list_rows = read_delivery(v1, spec)["31101"]
    for cycle in (SEP, OCT):  # one version: an entry counts when its dates overlap the month
        period = Cycle.parse(cycle)
        begin, end = period.begin.strftime("%Y%m%d"), period.end.strftime("%Y%m%d")
        ex.listed[cycle] = {}
        for r in list_rows:
            if r["EFF_DATE"] <= end and (not r["EXP_DATE"] or r["EXP_DATE"] >= begin):
                ex.listed[cycle].setdefault(r["LEAD_PROV_ID"], set()).add(r["NATIONAL_CUST_ID"])

    # 1. October first.
    for p in PROVINCES:
        ex.deliver(p, OCT, tmp_path / OCT / p, 0)
    ex.check(OCT)
    ex.check(SEP)

    # 2. HQ publishes 2026V02: one of Hubei's customers is on the list until 20260930 only.
    hubei_oct = read_delivery(tmp_path / OCT / "42", spec)
    homes = {r["NATIONAL_CUST_ID"]: r["LATN_ID"] for r in hubei_oct["31201"]}
    network = sorted({r["LATN_ID"] for r in hubei_oct["31203"]} & set(homes.values()))[0]
    leaving = sorted(c for c, n in homes.items() if n != network)[0]
    v2 = tmp_path / "v2.csv"
    with v2.open("w", newline="", encoding="utf-8") as fh:
        fields = [f for f in spec.unit("31101").field_ids if f != "LIST_VERSION"]
        w = csv.writer(fh)
        w.writerow(fields)
        for r in list_rows:
            row = dict(r, CHANGE_TYPE="U")
            if r["NATIONAL_CUST_ID"] == leaving:
                row.update(CHANGE_TYPE="D", EXP_DATE="20260930")
            w.writerow([row[f] for f in fields])
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.load(v2, "2026V02"), confirm_impact=True)  # Hubei's October now reports it: shown, confirmed
    ex.listed[OCT]["42"].discard(leaving)
    ex.check(OCT)

    # 3. September, after October.
    for p in PROVINCES:
        ex.deliver(p, SEP, tmp_path / SEP / p, 0)
    ex.check(SEP)
    ex.check(OCT)  # its month on month now compares with September

    # 4. Hubei corrects September (a whole resend).
    sep_rows = read_delivery(tmp_path / SEP / "42", spec)
    _bump(sep_rows, network, Decimal("1234.56"))
    ex.deliver("42", SEP, _write(spec, "42", SEP, sep_rows, tmp_path / "sep42r1", 1), 1)
    ex.check(SEP)
    ex.check(OCT)

    # 5. One of Hubei's local networks sends its own part of October (it counts for that network).
    ex.account(network)
    own = read_delivery(tmp_path / OCT / "42", spec)
    mine = {c for c, n in homes.items() if n == network}
    own = {"31201": [r for r in own["31201"] if r["LATN_ID"] == network],
           "31202": [r for r in own["31202"] if r["NATIONAL_CUST_ID"] in mine],
           "31203": [r for r in own["31203"] if r["LATN_ID"] == network],
           "32001": [r for r in own["32001"] if r["LATN_ID"] == network],
           "32002": [r for r in own["32002"] if r["LATN_ID"] == network],
           "32003": [r for r in own["32003"] if r["LATN_ID"] == network]}
    _bump(own, network, Decimal("99.99"))
    ex.deliver(network, OCT, _write(spec, network, OCT, own, tmp_path / "own", 0, fmt="xml"), 0)
    ex.check(OCT)

    # 6. Guangdong corrects October with two units only (checked against its accepted 31203).
    gd = read_delivery(tmp_path / OCT / "44", spec)
    partial = {"32001": gd["32001"], "32003": gd["32003"]}
    _bump(partial, sorted(r["LATN_ID"] for r in gd["32001"])[0], Decimal("0.01"))
    ex.deliver("44", OCT, _write(spec, "44", OCT, partial, tmp_path / "oct44r1", 1), 1)
    ex.check(OCT)
    ex.check(SEP)
