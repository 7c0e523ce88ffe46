"""An independent recomputation of a cycle's roll-up from the accepted files: plain Python and Decimal.

None of the server's code is used to compute: the test records which deliveries were
accepted, in order, with their rows as read from the files it sent, and works out what
counts from CONVENTIONS.md alone — per unit and local network, the rows of the most recently
accepted current version that covers the network (§2, §10) — and every figure from those
rows. The readers turn each download format back into the same plain shape, so one
comparison covers JSON, CSV, XLSX and XML.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from lxml import etree

from schemas.conventions import CheckFile, Cycle

CENT = Decimal("0.01")
UNITS = ("31201", "31202", "31203", "32001", "32002", "32003")
NAMES = {"31201": "VIP_CUST_INFO", "31202": "VIP_CUST_CONTACT", "31203": "VIP_CUST_PROD", "32001": "VIP_SUMMARY",
         "32002": "VIP_SERV_SUM", "32003": "VIP_INCOME_SUM"}


def read_delivery(where: Path, spec: Any) -> dict[str, list[dict[str, str]]]:
    """Unit code -> rows (field id -> text) of a delivery (its folder, or its check file), read straight from its files."""
    check_path = where if where.suffix == ".chk" else next(where.glob("*.chk"))
    folder = check_path.parent
    check = CheckFile.parse(check_path.read_bytes())
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    ns = "{" + spec.namespace + "}"
    for e in check.entries:
        code = e.name.split("_")[3]
        unit = spec.unit(code)
        path = folder / e.name
        if e.name.endswith(".txt"):
            codec = "utf-8-sig" if check.encoding == "UTF-8" else "gb18030"
            text = path.read_bytes().decode(codec)
            for line in text.split("\n")[:-1]:
                out[code].append(dict(zip(unit.field_ids, line.rstrip("\r").split(check.delimiter))))
        else:
            root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
            for row in root.iter(ns + "ROW"):
                values = {fid: "" for fid in unit.field_ids}
                values.update({child.tag[len(ns):]: child.text or "" for child in row})
                out[code].append(values)
    return dict(out)


@dataclass
class Accepted:
    """One accepted delivery as the test sent it."""

    order: int
    delivery_id: int
    party: str
    cycle: str
    resend: int
    rows: dict[str, list[dict[str, str]]]
    contact_home: dict[str, str] = field(default_factory=dict)  # customer -> home network, at acceptance


def pct(now: Decimal, before: Decimal) -> Decimal | None:
    """Growth in percent, two decimals, as a report rounds it."""
    if not before:
        return None
    return ((now / before - 1) * 100).quantize(CENT)


class Ledger:
    """What was accepted, in order; what counts for a cycle, and every figure of it."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.accepted: list[Accepted] = []
        area = spec.domain("Domain_area_id").current.codes
        self.parent = {c.code: c.parent for c in area.values() if c.level == "local_network"}

    def province(self, party: str) -> str:
        """The province a party belongs to."""
        return self.parent.get(party, party)

    def accept(self, delivery_id: int, party: str, cycle: str, resend: int, rows: dict[str, list[dict[str, str]]]
               ) -> None:
        """Record an accepted delivery (in acceptance order)."""
        rec = Accepted(len(self.accepted), delivery_id, party, cycle, resend, rows)
        if "31202" in rows:  # a contact counts for its customer's home network, as it stood then
            if "31201" in rows:
                rec.contact_home = {r["NATIONAL_CUST_ID"]: r["LATN_ID"] for r in rows["31201"]}
            else:
                counted = self.counted(cycle).get("31201", {})
                rec.contact_home = {r["NATIONAL_CUST_ID"]: r["LATN_ID"] for _rec, rs in counted.values() for r in rs}
        self.accepted.append(rec)

    def _network(self, rec: Accepted, unit: str, row: dict[str, str]) -> str:
        if unit == "31202":
            return rec.contact_home.get(row["NATIONAL_CUST_ID"], rec.party if len(rec.party) > 2 else "")
        return row["LATN_ID"]

    def counted(self, cycle: str) -> dict[str, dict[str, tuple[Accepted, list[dict[str, str]]]]]:
        """unit -> network -> (the delivery whose rows count, those rows): §2 and §10."""
        out: dict[str, dict[str, tuple[Accepted, list[dict[str, str]]]]] = {}
        for unit in UNITS:
            current: dict[str, Accepted] = {}  # party -> its current version of the unit
            for rec in self.accepted:
                if rec.cycle == cycle and unit in rec.rows:
                    if rec.party not in current or rec.resend > current[rec.party].resend:
                        current[rec.party] = rec
            by_net: dict[str, tuple[Accepted, list[dict[str, str]]]] = {}
            for rec in sorted(current.values(), key=lambda r: r.order):  # later acceptances win
                rows_by_net: dict[str, list[dict[str, str]]] = defaultdict(list)
                for row in rec.rows[unit]:
                    rows_by_net[self._network(rec, unit, row)].append(row)
                for net, rows in rows_by_net.items():
                    by_net[net] = (rec, rows)
            out[unit] = by_net
        return out

    def rows(self, cycle: str, unit: str) -> list[tuple[Accepted, dict[str, str]]]:
        """Every counted row of a unit in a cycle, with the delivery it came from."""
        return [(rec, r) for rec, rows in self.counted(cycle)[unit].values() for r in rows]

    def figures(self, cycle: str, listed: dict[str, set[str]], networks_expected: int) -> dict[str, Any]:
        """Every figure the comparison covers, for one cycle."""
        counted = self.counted(cycle)
        summary = self.rows(cycle, "32001")
        prev = Cycle.parse(cycle).previous().id
        prev_summary = self.rows(prev, "32001")
        income = sum((Decimal(r["INCOME_AMT"]) for _, r in summary), Decimal(0)).quantize(CENT)
        income_prev = sum((Decimal(r["INCOME_AMT"]) for _, r in prev_summary), Decimal(0)).quantize(CENT)
        now_nets = {r["LATN_ID"]: Decimal(r["INCOME_AMT"]) for _, r in summary}
        prev_nets = {r["LATN_ID"]: Decimal(r["INCOME_AMT"]) for _, r in prev_summary}
        both = set(now_nets) & set(prev_nets)
        totals = {
            "income_amt": income, "income_prev_amt": income_prev, "mom_pct": pct(income, income_prev),
            "income_ytd_amt": sum((Decimal(r["INCOME_YTD_AMT"]) for _, r in summary), Decimal(0)).quantize(CENT),
            "cust_cnt": sum(int(r["CUST_CNT"]) for _, r in summary),
            "networks": len(now_nets), "prev_networks": len(prev_nets),
            "share_reported_pct": (Decimal(len(now_nets) * 100) / networks_expected).quantize(CENT),
            "mom_comparable_pct": pct(sum((now_nets[n] for n in both), Decimal(0)),
                                      sum((prev_nets[n] for n in both), Decimal(0))),
        }
        by_province: dict[str, dict[str, Any]] = defaultdict(lambda: {"income_amt": Decimal(0), "cust_cnt": 0})
        for _, r in summary:
            p = by_province[r["PROV_ID"]]
            p["income_amt"] += Decimal(r["INCOME_AMT"])
            p["cust_cnt"] += int(r["CUST_CNT"])
        prev_by_province: dict[str, Decimal] = defaultdict(Decimal)
        for _, r in prev_summary:
            prev_by_province[r["PROV_ID"]] += Decimal(r["INCOME_AMT"])
        for prov, p in by_province.items():
            p["income_amt"] = p["income_amt"].quantize(CENT)
            p["income_prev_amt"] = prev_by_province[prov].quantize(CENT)
            p["mom_pct"] = pct(p["income_amt"], p["income_prev_amt"])
        by_network = {r["LATN_ID"]: {"income_amt": Decimal(r["INCOME_AMT"]).quantize(CENT), "cust_cnt": int(r["CUST_CNT"]),
                                     "delivery_id": rec.delivery_id} for rec, r in summary}
        by_product: dict[str, dict[str, Any]] = defaultdict(lambda: {"serv_cnt": 0, "serv_cust_cnt": 0,
                                                                     "top500_income_amt": Decimal(0)})
        for _, r in self.rows(cycle, "32002"):
            by_product[r["PROD_ID"]]["serv_cnt"] += int(r["SERV_CNT"])
            by_product[r["PROD_ID"]]["serv_cust_cnt"] += int(r["CUST_CNT"])
        customers_of: dict[tuple[str, str], set[str]] = defaultdict(set)
        for _, r in self.rows(cycle, "31203"):
            by_product[r["PROD_ID"]]["top500_income_amt"] += Decimal(r["INCOME_AMT"])
            customers_of[(r["PROV_ID"], r["PROD_ID"])].add(r["NATIONAL_CUST_ID"])
        for prod, p in by_product.items():
            p["top500_income_amt"] = p["top500_income_amt"].quantize(CENT)
            p["top500_customers"] = sum(len(c) for (_, pr), c in customers_of.items() if pr == prod)
        by_billing_item: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"income_amt": Decimal(0),
                                                                            "income_ytd_amt": Decimal(0)})
        for _, r in self.rows(cycle, "32003"):
            by_billing_item[r["ACCT_ITEM_TYPE_ID"]]["income_amt"] += Decimal(r["INCOME_AMT"])
            by_billing_item[r["ACCT_ITEM_TYPE_ID"]]["income_ytd_amt"] += Decimal(r["INCOME_YTD_AMT"])
        for b in by_billing_item.values():
            for k in b:
                b[k] = b[k].quantize(CENT)
        level: dict[tuple[str, str], str] = {}
        industry: dict[tuple[str, str], str] = {}
        by_level: dict[str, dict[str, Any]] = defaultdict(lambda: {"customers": 0, "top500_income_amt": Decimal(0)})
        by_industry: dict[str, dict[str, Any]] = defaultdict(lambda: {"customers": 0, "top500_income_amt": Decimal(0)})
        customers: dict[str, set[str]] = defaultdict(set)
        for _, r in self.rows(cycle, "31201"):
            level[(r["PROV_ID"], r["NATIONAL_CUST_ID"])] = r["LEVEL_ID"]
            industry[(r["PROV_ID"], r["NATIONAL_CUST_ID"])] = r["C_TYPE_ID"]
            by_level[r["LEVEL_ID"]]["customers"] += 1
            by_industry[r["C_TYPE_ID"]]["customers"] += 1
            customers[r["PROV_ID"]].add(r["NATIONAL_CUST_ID"])
        for _, r in self.rows(cycle, "31203"):
            key = (r["PROV_ID"], r["NATIONAL_CUST_ID"])
            if key in level:
                by_level[level[key]]["top500_income_amt"] += Decimal(r["INCOME_AMT"])
                by_industry[industry[key]]["top500_income_amt"] += Decimal(r["INCOME_AMT"])
        for table in (by_level, by_industry):
            for v in table.values():
                v["top500_income_amt"] = v["top500_income_amt"].quantize(CENT)
        coverage = {prov: {"listed": len(ids), "received": len(ids & customers[prov]),
                           "missing": len(ids - customers[prov])} for prov, ids in listed.items() if ids}
        completeness: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = {}
        lineage: set[tuple[str, str, int]] = set()
        for unit, by_net in counted.items():
            for _net, (rec, _rows) in by_net.items():
                prov = self.province(rec.party)
                state, ids = completeness.get((prov, unit), ("accepted", ()))
                completeness[(prov, unit)] = (state, tuple(sorted(set(ids) | {rec.delivery_id})))
                lineage.add((rec.party, unit, rec.delivery_id))
        return {"totals": totals, "by_province": dict(by_province), "by_network": by_network,
                "by_product": dict(by_product), "by_billing_item": dict(by_billing_item), "by_level": dict(by_level),
                "by_industry": dict(by_industry), "coverage": coverage, "completeness": completeness,
                "lineage": lineage}


# -- reading the downloads back ---------------------------------------------------------------
KEYS = {"by_province": "prov_id", "by_network": "latn_id", "by_product": "prod_id",
        "by_billing_item": "acct_item_type_id", "by_level": "level_id", "by_industry": "c_type_id",
        "coverage": "prov_id"}


def _typed(key: str, value: Any) -> Any:
    """A value read back from any format, in the type the ledger computes it in."""
    if value is None or value == "":
        return None
    if key.endswith("_amt") or key.endswith("_pct"):
        return Decimal(str(value).replace(",", "")).quantize(CENT)
    if key in ("delivery_id", "networks", "prev_networks", "cust_cnt", "serv_cnt", "serv_cust_cnt", "customers",
               "top500_customers", "listed", "received", "missing"):
        return int(Decimal(str(value)))
    return value


def _pick(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    return {k: _typed(k, got.get(k)) for k in expected}


def compare(expected: dict[str, Any], breakdowns: dict[str, Any], fmt: str) -> None:
    """Assert a download's breakdowns equal the recomputation (only the keys the ledger computes)."""
    totals = expected["totals"]
    assert _pick(totals, breakdowns["totals"]) == totals, fmt
    for name, key in KEYS.items():
        rows = {r[key]: r for r in breakdowns[name]}
        want = expected[name]
        assert set(rows) == set(want), (fmt, name, sorted(rows), sorted(want))
        for k, exp in want.items():
            assert _pick(exp, rows[k]) == exp, (fmt, name, k, rows[k], exp)


def from_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The JSON roll-up as plain breakdowns."""
    return doc


def from_xml(data: bytes) -> dict[str, Any]:
    """The XML roll-up as plain breakdowns."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = root.nsmap[None]

    def plain(el: Any) -> dict[str, Any]:
        return {etree.QName(c).localname: c.text for c in el}

    out: dict[str, Any] = {"totals": plain(root.find(f"{{{ns}}}Totals"))}
    for b in root.findall(f"{{{ns}}}Breakdown"):
        out[b.get("name")] = [plain(r) for r in b.findall(f"{{{ns}}}Row")]
    return out


def from_csv(tables: dict[str, bytes], titles: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Each breakdown's CSV (header "中文 English" per column) as plain rows; totals as key -> value."""
    by_header = {f"{zh} {en}": key for key, (zh, en) in titles.items()}
    out: dict[str, Any] = {}
    for name, data in tables.items():
        assert data.startswith(b"\xef\xbb\xbf"), name
        rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
        keys = [by_header.get(h, h) for h in rows[0]]
        records = [dict(zip(keys, r)) for r in rows[1:]]
        out[name] = {r["key"]: r["value"] for r in records} if name == "totals" else records
    return out


def from_xlsx(data: bytes, titles: dict[str, tuple[str, str]], sheet_names: dict[str, str]) -> dict[str, Any]:
    """Each breakdown sheet (Chinese header row, English row under it) as plain rows."""
    wb = load_workbook(io.BytesIO(data))
    by_en = {en: key for key, (_zh, en) in titles.items()}
    out: dict[str, Any] = {}
    for name, sheet in sheet_names.items():
        rows = list(wb[sheet].iter_rows(values_only=True))
        keys = [by_en.get(str(h), str(h)) for h in rows[1]]
        records = [dict(zip(keys, r)) for r in rows[2:] if any(v is not None for v in r)]
        out[name] = {r["key"]: r["value"] for r in records} if name == "totals" else records
    return out


def xlsx_money_texts(data: bytes) -> list[str]:
    """Every number as written in the workbook's sheet XML (to see the digits themselves)."""
    import re
    import zipfile

    texts = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/sheet"):
                texts += re.findall(r'<c [^>]*t="n"[^>]*><v>([^<]*)</v>', z.read(name).decode("utf-8"))
    return texts


def json_loads(data: bytes) -> Any:
    """JSON with decimals kept exact."""
    return json.loads(data, parse_float=Decimal)
