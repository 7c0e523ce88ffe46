"""Build small, valid deliveries in memory, let a test break them, then write them out.

Codes are taken from the loaded code lists (the version in force for the cycle), so the
tests follow the standard when its code lists change.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.conventions import CheckFile, Cycle
from schemas.spec.model import CodeDomain, Spec
from schemas.writer import DeliveryWriter

Row = dict[str, Any]


def leaves(domain: CodeDomain, day: dt.date) -> list[str]:
    """Codes of ``domain`` in force on ``day`` that no other code names as parent."""
    ver = domain.version_on(day)
    parents = {c.parent for c in ver.codes.values() if c.parent}
    return [c for c in ver.codes if c not in parents]


def networks(spec: Spec, province: str, day: dt.date) -> list[str]:
    """Local networks of a province in force on ``day``."""
    ver = spec.domain("Domain_area_id").version_on(day)
    return [c.code for c in ver.codes.values() if c.level == "local_network" and c.parent == province]


def first_code_needing_bank(spec: Spec) -> list[str]:
    """PAY_METH codes for which rule R31201-01 requires a bank."""
    rule = spec.rule("R31201-01")
    text = rule.when_expr or ""
    return [p.strip(" '") for p in text[text.index("(") + 1:text.index(")")].split(",") if p.strip(" '")]


@dataclass
class DeliveryRows:
    """The rows of one delivery, per unit name, plus how to write them."""

    spec: Spec
    party: str
    cycle: str
    rows: dict[str, list[Row]] = field(default_factory=dict)
    list_ids: list[str] = field(default_factory=list)

    def write(self, out: Path, fmt: str = "txt", encoding: str = "UTF-8", delimiter: str = "PIPE",
              newline: str = "\n", resend: int = 0, mode: str = "P", units: list[str] | None = None) -> Path:
        """Write every unit (or ``units``) and the check file; return the delivery directory."""
        w = DeliveryWriter(self.spec, out, mode, self.party, self.cycle, resend=resend, encoding=encoding,
                           delimiter=delimiter, newline=newline)
        for name, rows in self.rows.items():
            if units is not None and name not in units:
                continue
            with w.unit(name, fmt=fmt) as u:
                for r in rows:
                    u.write(r)
        w.close()
        return out


def valid_rows(spec: Spec, party: str = "42", cycle: str = "202610", customers: int = 3) -> DeliveryRows:
    """A small delivery for a province that satisfies every rule of the standard."""
    day = Cycle.parse(cycle).begin
    dom = spec.domain
    all_nets = networks(spec, party, day)  # the summaries cover every network (R32001-07)
    nets = all_nets[:2]  # customers live in the first two
    prod = leaves(dom("Domain_prod_id"), day)[0]
    item, item2 = leaves(dom("Domain_acct_item_type_id"), day)[:2]
    ctype = leaves(dom("Domain_c_type_id"), day)[0]
    csts = leaves(dom("Domain_c_sts_id"), day)[0]
    no_bank = [c for c in dom("Domain_pay_meth").version_on(day).codes if c not in first_code_needing_bank(spec)]
    credit = next(iter(dom("Domain_credit_grade").version_on(day).codes))
    cert = next(iter(dom("Ext_cert_type").version_on(day).codes))
    role = next(iter(dom("Ext_contact_role").version_on(day).codes))
    contact_sts = next(iter(dom("Domain_contact_sts_id").version_on(day).codes))
    serv_sts = next(iter(dom("Domain_serv_sts_id").version_on(day).codes))
    d = DeliveryRows(spec, party, cycle)
    info, contacts, prods = [], [], []
    prod_income: dict[str, Decimal] = {n: Decimal(0) for n in all_nets}
    prod_custs: dict[str, set[str]] = {n: set() for n in all_nets}
    for i in range(customers):
        cid = f"G{party}{i + 1:07d}"
        d.list_ids.append(cid)
        net = nets[i % len(nets)]
        info.append(dict(
            CYCLE_ID=cycle, NATIONAL_CUST_ID=cid, PROV_CUST_ID=f"HB{i + 1:08d}", CUST_NAME=f"湖北省测试客户{i + 1}有限公司",
            PROV_ID=party, LATN_ID=net, C_TYPE_ID=ctype, LEVEL_ID="1", C_STS_ID=csts, IS_IMPORTANT="Y",
            IS_HIGH_VALUE="N", IS_GROUP="N", IS_STRATEGIC="N", CERT_TYPE=cert, CERT_NO=f"91420100MA4K{i:06d}",
            ADDRESS="武汉市江汉区解放大道688号", POSTCODE="430000", PAY_METH=no_bank[0], CREDIT_GRADE=credit,
            BANK_ID=None, BANK_ACCT=None, MANAGER_ID=f"M{i:05d}", MANAGER_NAME="张伟", MANAGER_PHONE="027-88880000",
            JOIN_DATE="20150301"))
        contacts.append(dict(CYCLE_ID=cycle, NATIONAL_CUST_ID=cid, CONTACT_SEQ=1, CONTACT_NAME="李娜",
                             CONTACT_ROLE=role, TITLE="信息中心主任", PHONE="027-85550000", MOBILE="13907100000",
                             EMAIL="lina@example.cn", IS_PRIMARY="Y", CONTACT_STS_ID=contact_sts))
        amount = Decimal("12345.67") + i
        prods.append(dict(CYCLE_ID=cycle, NATIONAL_CUST_ID=cid, PROV_ID=party, LATN_ID=net, PROD_ID=prod,
                          SERV_CNT=3, BANDWIDTH_MBPS=None, SERV_STS_ID=serv_sts, INCOME_AMT=amount))
        prod_income[net] += amount
        prod_custs[net].add(cid)
    summary, serv, income = [], [], []
    for n in all_nets:
        total = prod_income[n] + Decimal("100000.00")
        ytd, ly = total * 10, total - Decimal("1000.00")
        extra = max(0, len(prod_custs[n]) - 10)  # many customers: counts grow so R32001-03 still holds
        summary.append(dict(CYCLE_ID=cycle, PROV_ID=party, LATN_ID=n, CUST_CNT=10 + extra, CUST_CNT_GROUP=2 + extra,
                            CUST_CNT_PROV=2, CUST_CNT_LA=2, CUST_CNT_LB=2, CUST_CNT_LC=2, LAST_CUST_CNT=9 + extra,
                            NEW_CUST_CNT=2,
                            LOST_CUST_CNT=1, TOP500_CUST_CNT=len(prod_custs[n]), MANAGER_CNT=2, INCOME_AMT=total,
                            INCOME_YTD_AMT=ytd, INCOME_LY_AMT=ly))
        serv.append(dict(CYCLE_ID=cycle, PROV_ID=party, LATN_ID=n, PROD_ID=prod, LAST_SERV_CNT=20, NEW_SERV_CNT=5,
                         CANCEL_SERV_CNT=2, SERV_CNT=23, SERV_CNT_LY=18, CUST_CNT=4, BANDWIDTH_MBPS=None))
        cent = Decimal("0.01")
        half, yhalf, lhalf = (total / 2).quantize(cent), (ytd / 2).quantize(cent), (ly / 2).quantize(cent)
        for code, amt, yamt, lamt in ((item, half, ytd - yhalf, ly - lhalf),
                                      (item2, total - half, yhalf, lhalf)):
            income.append(dict(CYCLE_ID=cycle, PROV_ID=party, LATN_ID=n, ACCT_ITEM_TYPE_ID=code, INCOME_AMT=amt,
                               INCOME_YTD_AMT=yamt, INCOME_LY_AMT=lamt, INCOME_LY_YTD_AMT=lamt * 10))
    d.rows = {"VIP_CUST_INFO": info, "VIP_CUST_CONTACT": contacts, "VIP_CUST_PROD": prods, "VIP_SUMMARY": summary,
              "VIP_SERV_SUM": serv, "VIP_INCOME_SUM": income}
    return d


def rewrite_check(delivery: Path, edit: Any = None) -> Path:
    """Re-read a delivery's check file, apply ``edit(CheckFile) -> CheckFile`` and write it back."""
    path = next(delivery.glob("*.chk"))
    check = CheckFile.parse(path.read_bytes())
    if edit is not None:
        check = edit(check)
    path.write_bytes(check.render())
    return path


def data_file(delivery: Path, unit_code: str) -> Path:
    """The (first) data file of a unit in a delivery directory."""
    return next(p for p in sorted(delivery.iterdir()) if f"_{unit_code}_" in p.name and not p.name.endswith(".chk"))


def refresh_check(delivery: Path) -> Path:
    """Recompute sizes, row counts and digests in the check file after a test edited files."""
    import hashlib

    def edit(check: CheckFile) -> CheckFile:
        entries = []
        for e in check.entries:
            p = delivery / e.name
            if not p.exists():
                entries.append(e)
                continue
            data = p.read_bytes()
            rows = data.count(b"<ROW>") if p.suffix == ".xml" else data.count(b"\n")
            entries.append(type(e)(e.name, len(data), rows, e.period, e.generated_at,
                                   hashlib.sha256(data).hexdigest()))
        return check.with_entries(entries)

    return rewrite_check(delivery, edit)
