"""Realistic, consistent sample deliveries for any cycle and scale.

Everything is a pure function of (seed, entity, month): a customer's attributes of
(seed, province, index), a local network's account count or revenue of (seed, network,
month). That is what makes separately generated cycles continue each other — this cycle's
opening count is exactly last cycle's closing count, year-to-date sums add up month by
month — without any state kept between runs. Rows are streamed to the writer, so memory
does not grow with ``scale``.

Every value is taken from the loaded spec (code lists in force for the cycle), so the data
follows the standard when its code lists change.
"""
from __future__ import annotations

import datetime as dt
import heapq
import math
import random
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from schemas.conventions import Cycle
from schemas.spec.model import CodeListVersion, Spec
from schemas.writer import DeliveryWriter

from . import names

CENT = Decimal("0.01")
HQ = "00"
TOP_N = 500
# Relative economic weight of each province (GB/T 2260 code): where key accounts are.
PROVINCE_WEIGHT: dict[str, float] = {
    "11": 30, "12": 12, "13": 14, "14": 7, "15": 6, "21": 12, "22": 5, "23": 7, "31": 30, "32": 36, "33": 30,
    "34": 9, "35": 14, "36": 7, "37": 28, "41": 14, "42": 14, "43": 10, "44": 48, "45": 8, "46": 3, "50": 9,
    "51": 16, "52": 5, "53": 6, "54": 1, "61": 9, "62": 4, "63": 1.5, "64": 1.5, "65": 5,
}
SECTOR_WEIGHT = {"10": 12, "11": 20, "12": 12, "13": 10, "14": 16, "15": 8, "16": 8, "17": 9, "18": 5}
# Typical bandwidth (Mbit/s) of one line of a data product, by product code; others carry none.
BANDWIDTH = {"2001": "2", "2002": "2", "2003": "34", "2004": "2", "2005": "34", "2006": "155", "3001": "100",
             "3002": "4", "3003": "100", "3004": "10", "3005": "100", "5002": "7.2"}
SEASON = (1.00, 0.92, 1.01, 0.99, 1.00, 1.01, 0.98, 0.98, 1.00, 1.01, 1.02, 1.08)
UNITS_DUE = "31201,31202,31203,32001,32002,32003"


def _rng(*key: object) -> random.Random:
    """A generator seeded by a key: same key, same numbers, on every machine and run."""
    return random.Random("|".join(str(k) for k in key))


def _month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def _month_day(m: int) -> dt.date:
    return dt.date(m // 12, m % 12 + 1, 1)


def _money(x: float | Decimal) -> Decimal:
    return Decimal(x).quantize(CENT, ROUND_HALF_UP) if not isinstance(x, Decimal) else x.quantize(CENT, ROUND_HALF_UP)


def _leaves(ver: CodeListVersion) -> list[str]:
    return [c.code for c in ver.leaves()]


@dataclass(frozen=True)
class Network:
    """A local network with the share of its province's business it carries."""

    code: str
    city: str
    province: str
    weight: float


@dataclass
class Customer:
    """A listed key account as of one cycle."""

    id: str
    province: str
    index: int
    name: str
    parent: str | None
    c_type: str
    level: str
    home: Network
    size: float  # monthly revenue scale, yuan
    products: list[tuple[str, Network, float, int]]  # product, network, revenue share, lines
    rng_key: str


@dataclass
class GenerationResult:
    """What a run wrote."""

    out_dir: Path
    deliveries: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def count(self, unit: str, n: int = 1) -> None:
        """Add ``n`` rows of ``unit``."""
        self.rows[unit] = self.rows.get(unit, 0) + n

    @property
    def files(self) -> int:
        """Data and check files written (every file in the party folders)."""
        return sum(1 for d in {p.parent for p in self.deliveries} for _ in d.iterdir())


class SampleModel:
    """The seeded model of the national key-account business behind the sample files."""

    def __init__(self, spec: Spec, seed: int = 2002, scale: int = 1) -> None:
        self.spec = spec
        self.seed = seed
        self.scale = scale
        area = spec.domain("Domain_area_id").current
        self.provinces = [c.code for c in area.at_level("province")]
        total = sum(PROVINCE_WEIGHT.get(p, 1.0) for p in self.provinces)
        self.quota = _largest_remainder({p: TOP_N * scale * PROVINCE_WEIGHT.get(p, 1.0) / total
                                         for p in self.provinces}, minimum=2 * scale)
        self.national = sum(self.quota.values())

    # -- places ------------------------------------------------------------------------
    @lru_cache(maxsize=None)
    def networks(self, province: str, day: dt.date) -> tuple[Network, ...]:
        """The province's local networks in force on ``day``; the capital (listed first) carries the most."""
        ver = self.spec.domain("Domain_area_id").version_on(day)
        codes = [c for c in ver.at_level("local_network") if c.parent == province]
        pw = PROVINCE_WEIGHT.get(province, 1.0)
        out = []
        for i, c in enumerate(codes):
            share = 1.0 if len(codes) == 1 else (0.35 if i == 0 else 0.65 / (len(codes) - 1))
            out.append(Network(c.code, c.name_zh.removesuffix("本地网"), province, pw * share))
        return tuple(out)

    # -- customers ---------------------------------------------------------------------
    def customer(self, province: str, index: int, day: dt.date, quota: int | None = None) -> Customer:
        """The ``index``-th listed customer of ``province`` as of ``day``."""
        quota = quota or self.quota[province]
        key = f"{self.seed}|c|{province}|{index}"
        # One generator per attribute: a code list growing (a new industry, a new product)
        # must not shift the draws of the others, or customers would change between cycles.
        nets = self.networks(province, day)
        spec = self.spec
        ctypes = spec.domain("Domain_c_type_id").version_on(day)
        rng = _rng(key, "sector")
        sectors = [s for s in SECTOR_WEIGHT if ctypes.children(s)]
        sector = rng.choices(sectors, [SECTOR_WEIGHT[s] for s in sectors])[0]
        c_type = rng.choice([c.code for c in ctypes.children(sector)])
        rng = _rng(key, "home")
        home = nets[0] if rng.random() < 0.45 or len(nets) == 1 else rng.choice(nets[1:])
        name, parent = names.company(_rng(key, "name"), sector, home.city)
        rank_est = (index + 0.5) * self.national / max(quota, 1)
        size = 3.0e7 * (rank_est / self.scale) ** -0.75 * math.exp(_rng(key, "size").gauss(0, 0.3))
        level = "1" if rank_est <= 0.6 * self.national else "2"
        # Products come from the newest list so a customer is the same in every cycle; a
        # product not yet in force at ``day`` falls back to one of its family that is.
        newest = spec.domain("Domain_prod_id").current
        in_force = spec.domain("Domain_prod_id").version_on(day)
        leaves_now = set(_leaves(in_force))
        rng = _rng(key, "products")
        k = 1 + min(3, int(rng.expovariate(1.0) * (2.5 if rank_est < 100 * self.scale else 1.2)))
        chosen = rng.sample(_leaves(newest), k)
        shares = [rng.random() + 0.2 for _ in chosen]
        total = sum(shares)
        products: list[tuple[str, Network, float, int]] = []
        seen: set[tuple[str, str]] = set()
        for prod, share in zip(chosen, shares):
            net = home if rng.random() < 0.8 or len(nets) == 1 else rng.choice(nets)
            lines = max(1, int(rng.lognormvariate(1.5, 1.0)))
            if prod not in leaves_now:
                family = newest.codes[prod].parent
                same = [c.code for c in in_force.children(family)] if family in in_force.codes else []
                prod = same[0] if same else sorted(leaves_now)[0]
            if (prod, net.code) in seen:
                continue
            seen.add((prod, net.code))
            products.append((prod, net, share / total, lines))
        return Customer(id=f"G{province}{index + 1:07d}", province=province, index=index, name=name, parent=parent,
                        c_type=c_type, level=level, home=home, size=size, products=products, rng_key=key)

    def customers(self, province: str, day: dt.date) -> Iterator[Customer]:
        """The province's listed customers, largest first."""
        for i in range(self.quota[province]):
            yield self.customer(province, i, day)

    def removed(self, province: str) -> int:
        """How many of the province's customers the list version takes off (change type D)."""
        return max(0, round(self.quota[province] * 0.02 * _rng(self.seed, "removed", province).uniform(0.5, 1.5)))

    def network_customer_scale(self, net: Network, day: dt.date) -> float:
        """Upper bound of the listed customers' monthly revenue in ``net`` (before the month factor)."""
        return _customer_scale(self, net.province, day)[net.code]

    # -- month-level functions of a network ---------------------------------------------
    def month_factor(self, m: int) -> float:
        """Growth and seasonality common to every network."""
        return 1.004 ** (m - 2020 * 12) * SEASON[m % 12]

    def accounts(self, net: Network, m: int) -> int:
        """Key accounts on the network at the end of month ``m``."""
        base = self.scale * (net.weight * 900 + 80)
        noise = _rng(self.seed, "acc", net.code, m).uniform(-0.01, 0.01)
        return round(base * 1.003 ** (m - 2020 * 12) * (1 + noise))

    def lost(self, net: Network, m: int) -> int:
        """Accounts lost in month ``m`` (never fewer than the net decrease)."""
        prev, now = self.accounts(net, m - 1), self.accounts(net, m)
        return max(prev - now, 0) + round(prev * _rng(self.seed, "lost", net.code, m).uniform(0.003, 0.015))

    def lines(self, net: Network, prod: str, m: int) -> int:
        """Lines of ``prod`` on the network at the end of month ``m`` (0 before the product existed)."""
        if prod not in self.spec.domain("Domain_prod_id").version_on(_month_day(m)).codes:
            return 0
        base = _rng(self.seed, "lines", net.code, prod).lognormvariate(2.5, 1.0) * self.scale * (net.weight + 0.5)
        noise = _rng(self.seed, "ln", net.code, prod, m).uniform(-0.02, 0.02)
        return max(1, round(base * 1.002 ** (m - 2020 * 12) * (1 + noise)))

    def cancelled(self, net: Network, prod: str, m: int) -> int:
        """Lines of ``prod`` cancelled in month ``m`` (never fewer than the net decrease)."""
        prev, now = self.lines(net, prod, m - 1), self.lines(net, prod, m)
        return max(prev - now, 0) + round(prev * _rng(self.seed, "cx", net.code, prod, m).uniform(0, 0.01))

    def revenue_by_item(self, net: Network, m: int) -> dict[str, Decimal]:
        """Key-account revenue of the network in month ``m`` by billing item (in force that month)."""
        return _revenue_by_item(self, net, m)


def _customer_scale(model: SampleModel, province: str, day: dt.date) -> dict[str, float]:
    # Only the area list decides which network a customer's revenue lands in.
    return _customer_scale_for(model, province, model.spec.domain("Domain_area_id").version_on(day).effective_from)


@lru_cache(maxsize=256)
def _customer_scale_for(model: SampleModel, province: str, day: dt.date) -> dict[str, float]:
    out = {n.code: 0.0 for n in model.networks(province, day)}
    for c in model.customers(province, day):
        for _, net, share, _ in c.products:
            out[net.code] += c.size * share
    return out


@lru_cache(maxsize=20000)
def _revenue_by_item(model: SampleModel, net: Network, m: int) -> dict[str, Decimal]:
    day = _month_day(m)
    items = _leaves(model.spec.domain("Domain_acct_item_type_id").version_on(day))
    wrng = _rng(model.seed, "items", net.code)
    weights = {code: wrng.random() ** 2 + 0.02 for code in _leaves(model.spec.domain("Domain_acct_item_type_id").current)}
    # Twice the listed customers' revenue, plus the rest of the key-account base: the listed
    # customers' product revenue (X-008) can never exceed the network's total.
    bound = model.network_customer_scale(net, _month_day(m))
    base = 2.0 * bound + model.scale * net.weight * 2.0e6
    total = _money(base * model.month_factor(m) * _rng(model.seed, "rev", net.code, m).uniform(0.97, 1.03))
    w = [weights.get(i, 0.05) for i in items]
    s = sum(w)
    out: dict[str, Decimal] = {}
    rest = total
    for code, wi in zip(items[:-1], w[:-1]):
        out[code] = _money(total * Decimal(wi / s))
        rest -= out[code]
    out[items[-1]] = rest
    return out


def _largest_remainder(shares: dict[str, float], minimum: int) -> dict[str, int]:
    """Integer quotas proportional to ``shares``, each at least ``minimum``, summing to the rounded total."""
    target = round(sum(shares.values()))
    quota = {k: max(minimum, int(v)) for k, v in shares.items()}
    order = sorted(shares, key=lambda k: shares[k] - int(shares[k]), reverse=True)
    i = 0
    while sum(quota.values()) < target:
        quota[order[i % len(order)]] += 1
        i += 1
    return quota


def _months(cycle: Cycle) -> range:
    return range(_month_index(cycle.begin), _month_index(cycle.end) + 1)


def _year_to_date(cycle: Cycle) -> range:
    return range(_month_index(dt.date(cycle.end.year, 1, 1)), _month_index(cycle.end) + 1)


# -- unit rows -------------------------------------------------------------------------
def list_rows(model: SampleModel, list_version: str) -> Iterator[dict[str, Any]]:
    """The national top-500 list (31101), in rank order, then the entries it removes."""
    year = int(list_version[:4])
    day = dt.date(year, 1, 1)

    def ranked(p: str) -> Iterator[tuple[float, str, int]]:
        for i in range(model.quota[p]):
            yield (i + 0.5) / model.quota[p], p, i

    rank = 0
    for _, p, i in heapq.merge(*(ranked(p) for p in model.provinces)):
        rank += 1
        yield _list_row(model, model.customer(p, i, day), list_version, rank, day)
    for p in model.provinces:
        for j in range(model.removed(p)):
            rank += 1
            c = model.customer(p, model.quota[p] + j, day)
            row = _list_row(model, c, list_version, rank, day)
            # Taken off the list at the start of this version's year, after years on it.
            row.update(CHANGE_TYPE="D", EXP_DATE=day - dt.timedelta(days=1),
                       EFF_DATE=min(row["EFF_DATE"], dt.date(day.year - 2, 1, 1)))
            yield row


def _list_row(model: SampleModel, c: Customer, list_version: str, rank: int, day: dt.date) -> dict[str, Any]:
    rng = _rng(c.rng_key, "list", list_version)
    change = rng.choices(["A", "M", "U"], [6, 15, 79])[0]
    eff = day if change == "A" else dt.date(rng.randint(2003, max(2003, day.year - 1)), rng.randint(1, 12), 1)
    manager, _ = names.person(_rng(c.rng_key, "hqm"))
    return dict(LIST_VERSION=list_version, NATIONAL_CUST_ID=c.id, CUST_RANK=rank, CUST_NAME=c.name,
                GROUP_PARENT_NAME=c.parent, C_TYPE_ID=c.c_type, LEVEL_ID=c.level, LEAD_PROV_ID=c.province,
                LEAD_LATN_ID=c.home.code, HQ_MANAGER_NAME=manager,
                HQ_MANAGER_PHONE=f"010-{6600_0000 + rng.randint(0, 99999):08d}", EFF_DATE=eff, EXP_DATE=None,
                CHANGE_TYPE=change)


def calendar_rows(year: int, day: dt.date | None = None) -> Iterator[dict[str, Any]]:
    """The reporting calendar (32004) of a year: twelve monthly cycles, due on the 10th at 18:00."""
    for month in range(1, 13):
        c = Cycle.parse(f"{year}{month:02d}")
        due = c.end + dt.timedelta(days=10)
        yield dict(CYCLE_ID=c.id, REP_FREQ="M", CYCLE_NAME=f"{year}年{month}月", BEGIN_DATE=c.begin, END_DATE=c.end,
                   DEADLINE=dt.datetime(due.year, due.month, due.day, 18, 0, 0), UNITS_DUE=UNITS_DUE, REMARK=None)


def _weighted(rng: random.Random, codes: list[str], weights: list[float]) -> str:
    """A code drawn with the given weights, listed first to last (codes beyond them weigh 1)."""
    w = [*weights[:len(codes)], *[1.0] * (len(codes) - len(weights))]
    return rng.choices(codes, w)[0]


def _pick(ver: CodeListVersion, preferred: Sequence[str]) -> str:
    """The first preferred code in force, else the list's first code."""
    return next((c for c in preferred if c in ver.codes), next(iter(ver.codes)))


def customer_info_row(model: SampleModel, c: Customer, cycle: Cycle) -> dict[str, Any]:
    """One customer's master data (31201) for a cycle."""
    spec, day = model.spec, cycle.begin
    rng = _rng(c.rng_key, "info")
    dom = lambda name: spec.domain(name).version_on(day)  # noqa: E731 - a local shorthand
    bank_rule = spec.rule("R31201-01").when_expr or ""
    needs_bank = {p.strip(" '") for p in bank_rule[bank_rule.find("(") + 1:bank_rule.rfind(")")].split(",")}
    pay = rng.choices(list(dom("Domain_pay_meth").codes), k=1)[0]
    bank = acct = None
    if pay in needs_bank:
        bank = rng.choice(list(dom("Domain_bank_id").codes))
        acct = "".join(str(rng.randint(0, 9)) for _ in range(rng.choice((16, 19))))
    cert = _pick(dom("Ext_cert_type"), ["07", "01"])
    cert_no = "91" + f"{int(c.province) * 10000 + rng.randint(0, 9999):06d}" + "".join(
        rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(10))
    flags = [rng.random() < p for p in (0.9, 0.5, 0.3, 0.2)]
    if not any(flags):
        flags[0] = True
    yn = ["Y" if f else "N" for f in flags]
    status = dom("Domain_c_sts_id")
    sts = next(iter(status.codes)) if rng.random() < 0.97 else list(status.codes)[1 % len(status.codes)]
    manager, _ = names.person(_rng(c.rng_key, "mgr"))
    area = c.home.code
    join = dt.date(rng.randint(1995, max(1995, day.year - 1)), rng.randint(1, 12), rng.randint(1, 28))
    return dict(CYCLE_ID=cycle.id, NATIONAL_CUST_ID=c.id, PROV_CUST_ID=f"C{c.province}{c.index + 1:09d}",
                CUST_NAME=c.name, PROV_ID=c.province, LATN_ID=c.home.code, C_TYPE_ID=c.c_type, LEVEL_ID=c.level,
                C_STS_ID=sts, IS_IMPORTANT=yn[0], IS_HIGH_VALUE=yn[1], IS_GROUP=yn[2], IS_STRATEGIC=yn[3],
                CERT_TYPE=cert, CERT_NO=cert_no, ADDRESS=names.address(rng, c.home.city),
                POSTCODE=f"{rng.randint(10, 85)}{rng.randint(0, 9999):04d}", PAY_METH=pay,
                CREDIT_GRADE=_weighted(rng, list(dom("Domain_credit_grade").codes), [30, 35, 25, 8, 2]),
                BANK_ID=bank, BANK_ACCT=acct, MANAGER_ID=f"{c.province}M{rng.randint(1, 9999):05d}",
                MANAGER_NAME=manager, MANAGER_PHONE=f"{area}-{rng.randint(2000_0000, 8999_9999)}", JOIN_DATE=join)


def contact_rows(model: SampleModel, c: Customer, cycle: Cycle) -> Iterator[dict[str, Any]]:
    """One to three contacts (31202), exactly one of them primary."""
    rng = _rng(c.rng_key, "contacts")
    day = cycle.begin
    roles = list(model.spec.domain("Ext_contact_role").version_on(day).codes)
    sts = next(iter(model.spec.domain("Domain_contact_sts_id").version_on(day).codes))
    for seq in range(1, 2 + min(2, int(rng.expovariate(1.0)))):
        name, py = names.person(rng)
        phone = f"{c.home.code}-{rng.randint(2000_0000, 8999_9999)}" if rng.random() < 0.8 else None
        mobile = f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}" if rng.random() < 0.9 or not phone else None
        yield dict(CYCLE_ID=cycle.id, NATIONAL_CUST_ID=c.id, CONTACT_SEQ=seq, CONTACT_NAME=name,
                   CONTACT_ROLE=roles[(seq - 1) % len(roles)], TITLE=rng.choice(names.TITLES), PHONE=phone,
                   MOBILE=mobile, EMAIL=f"{py}{seq}@{c.id.lower()}.com.cn", IS_PRIMARY="Y" if seq == 1 else "N",
                   CONTACT_STS_ID=sts)


def product_rows(model: SampleModel, c: Customer, cycle: Cycle) -> Iterator[dict[str, Any]]:
    """The customer's products (31203) with this cycle's revenue."""
    sts = next(iter(model.spec.domain("Domain_serv_sts_id").version_on(cycle.begin).codes))
    for prod, net, share, lines in c.products:
        amount = sum((_money(c.size * share * model.month_factor(m) * _rng(c.rng_key, prod, net.code, m).uniform(0.9, 1.1))
                      for m in _months(cycle)), Decimal(0))
        bw = BANDWIDTH.get(prod)
        yield dict(CYCLE_ID=cycle.id, NATIONAL_CUST_ID=c.id, PROV_ID=c.province, LATN_ID=net.code, PROD_ID=prod,
                   SERV_CNT=lines, BANDWIDTH_MBPS=(Decimal(bw) * lines) if bw else None, SERV_STS_ID=sts,
                   INCOME_AMT=amount)


def summary_rows(model: SampleModel, province: str, cycle: Cycle,
                 top500: dict[str, int]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per local network: its VIP_SUMMARY row, VIP_SERV_SUM rows and VIP_INCOME_SUM rows."""
    months, ytd = _months(cycle), _year_to_date(cycle)
    first, last = months[0], months[-1]
    prods = _leaves(model.spec.domain("Domain_prod_id").version_on(cycle.begin))
    for net in model.networks(province, cycle.begin):
        income = []
        sums = [Decimal(0)] * 3
        for item in model.revenue_by_item(net, last):
            amt = sum((model.revenue_by_item(net, m).get(item, Decimal(0)) for m in months), Decimal(0))
            ytd_amt = sum((model.revenue_by_item(net, m).get(item, Decimal(0)) for m in ytd), Decimal(0))
            ly = sum((model.revenue_by_item(net, m - 12).get(item, Decimal(0)) for m in months), Decimal(0))
            ly_ytd = sum((model.revenue_by_item(net, m - 12).get(item, Decimal(0)) for m in ytd), Decimal(0))
            income.append(dict(CYCLE_ID=cycle.id, PROV_ID=province, LATN_ID=net.code, ACCT_ITEM_TYPE_ID=item,
                               INCOME_AMT=amt, INCOME_YTD_AMT=ytd_amt, INCOME_LY_AMT=ly, INCOME_LY_YTD_AMT=ly_ytd))
            sums = [sums[0] + amt, sums[1] + ytd_amt, sums[2] + ly]
        cnt = model.accounts(net, last)
        t500 = top500.get(net.code, 0)
        levels = [round(cnt * f) for f in (0.03, 0.07, 0.2, 0.3)]
        summary = dict(CYCLE_ID=cycle.id, PROV_ID=province, LATN_ID=net.code, CUST_CNT=cnt,
                       CUST_CNT_GROUP=levels[0], CUST_CNT_PROV=levels[1], CUST_CNT_LA=levels[2], CUST_CNT_LB=levels[3],
                       CUST_CNT_LC=cnt - sum(levels), LAST_CUST_CNT=model.accounts(net, first - 1),
                       NEW_CUST_CNT=sum(model.accounts(net, m) - model.accounts(net, m - 1) + model.lost(net, m)
                                        for m in months),
                       LOST_CUST_CNT=sum(model.lost(net, m) for m in months), TOP500_CUST_CNT=t500,
                       MANAGER_CNT=max(1, round(cnt / 30)), INCOME_AMT=sums[0], INCOME_YTD_AMT=sums[1],
                       INCOME_LY_AMT=sums[2])
        serv = []
        for prod in prods:
            now = model.lines(net, prod, last)
            if not now:
                continue
            bw = BANDWIDTH.get(prod)
            serv.append(dict(CYCLE_ID=cycle.id, PROV_ID=province, LATN_ID=net.code, PROD_ID=prod,
                             LAST_SERV_CNT=model.lines(net, prod, first - 1),
                             NEW_SERV_CNT=sum(model.lines(net, prod, m) - model.lines(net, prod, m - 1)
                                              + model.cancelled(net, prod, m) for m in months),
                             CANCEL_SERV_CNT=sum(model.cancelled(net, prod, m) for m in months), SERV_CNT=now,
                             SERV_CNT_LY=model.lines(net, prod, last - 12), CUST_CNT=min(cnt, max(1, now // 3)),
                             BANDWIDTH_MBPS=(Decimal(bw) * now) if bw else None))
        yield summary, serv, income


# -- deliveries ------------------------------------------------------------------------
def _style(province: str, fmt: str) -> tuple[str, str, str, str]:
    """(format, encoding, delimiter, newline) of a province's files: varied, deterministically."""
    i = int(province)
    f = fmt if fmt != "mixed" else ("xml" if i % 3 == 2 else "txt")
    encoding = "GB18030" if i % 2 == 0 else "UTF-8"
    delimiter = ("PIPE", "TAB", "CARET", "US")[i % 4]
    newline = "\r\n" if i % 5 == 0 else "\n"
    return f, encoding, delimiter, newline


def write_province(model: SampleModel, province: str, cycle: Cycle, out: Path, fmt: str,
                   result: GenerationResult) -> Path:
    """Write one province's upload delivery for ``cycle``; return the check file."""
    f, encoding, delimiter, newline = _style(province, fmt)
    w = DeliveryWriter(model.spec, out, "P", province, cycle.id, encoding=encoding, delimiter=delimiter,
                       newline=newline)
    top500: dict[str, int] = {}
    with w.unit("VIP_CUST_INFO", fmt=f) as info, w.unit("VIP_CUST_CONTACT", fmt=f) as contacts, \
            w.unit("VIP_CUST_PROD", fmt=f) as prods:
        for c in model.customers(province, cycle.begin):
            info.write(customer_info_row(model, c, cycle))
            result.count("VIP_CUST_INFO")
            for row in contact_rows(model, c, cycle):
                contacts.write(row)
                result.count("VIP_CUST_CONTACT")
            for net in {n.code for _, n, _, _ in c.products}:
                top500[net] = top500.get(net, 0) + 1
            for row in product_rows(model, c, cycle):
                prods.write(row)
                result.count("VIP_CUST_PROD")
    _write_summaries(w, f, summary_rows(model, province, cycle, top500), result)
    return w.close()


def _write_summaries(w: DeliveryWriter, f: str, rows: Iterable[tuple[dict[str, Any], list[dict[str, Any]],
                                                                  list[dict[str, Any]]]],
                     result: GenerationResult) -> None:
    """The three summary units (32001-32003), each network's summary row with its service and income rows."""
    with w.unit("VIP_SUMMARY", fmt=f) as summ, w.unit("VIP_SERV_SUM", fmt=f) as serv, \
            w.unit("VIP_INCOME_SUM", fmt=f) as inc:
        for s, sv, ic in rows:
            summ.write(s)
            result.count("VIP_SUMMARY")
            for r in sv:
                serv.write(r)
                result.count("VIP_SERV_SUM")
            for r in ic:
                inc.write(r)
                result.count("VIP_INCOME_SUM")


def write_network(model: SampleModel, province: str, network: str, cycle: Cycle, out: Path, fmt: str,
                  result: GenerationResult) -> Path:
    """Write one local network's own delivery (``P_<network>_...``, as a prefecture sends it to its hub).

    It carries the customers whose home network it is, with their contacts and their
    products in this network (a product a customer has in another network belongs to that
    network's figures, not to this delivery), and this network's summaries. The networks'
    deliveries of a province together are that province's data as its hub forwards it.
    """
    f, encoding, delimiter, newline = _style(province, fmt)
    w = DeliveryWriter(model.spec, out, "P", network, cycle.id, encoding=encoding, delimiter=delimiter,
                       newline=newline)
    top500: dict[str, int] = {}
    own = [c for c in model.customers(province, cycle.begin) if c.home.code == network]
    # A network leading no customer sends its summaries only: the spec allows no empty file (E112).
    with_contacts = any(True for c in own for _ in contact_rows(model, c, cycle))
    with_products = any(row["LATN_ID"] == network for c in own for row in product_rows(model, c, cycle))
    with ExitStack() as stack:
        info = stack.enter_context(w.unit("VIP_CUST_INFO", fmt=f)) if own else None
        contacts = stack.enter_context(w.unit("VIP_CUST_CONTACT", fmt=f)) if with_contacts else None
        prods = stack.enter_context(w.unit("VIP_CUST_PROD", fmt=f)) if with_products else None
        for c in own:
            assert info is not None
            info.write(customer_info_row(model, c, cycle))
            result.count("VIP_CUST_INFO")
            for row in contact_rows(model, c, cycle):
                assert contacts is not None
                contacts.write(row)
                result.count("VIP_CUST_CONTACT")
            mine = [row for row in product_rows(model, c, cycle) if row["LATN_ID"] == network]
            if mine:
                top500[network] = top500.get(network, 0) + 1
            for row in mine:
                assert prods is not None
                prods.write(row)
                result.count("VIP_CUST_PROD")
    counted = (rows for rows in summary_rows(model, province, cycle, top500) if rows[0]["LATN_ID"] == network)
    _write_summaries(w, f, counted, result)
    return w.close()


def write_hq(model: SampleModel, cycle: Cycle, list_version: str, out: Path, fmt: str,
             result: GenerationResult) -> list[Path]:
    """Write HQ's two downward deliveries: the top-500 list and the year's reporting calendar."""
    lf = "xml" if fmt in ("mixed", "xml") else "txt"
    w = DeliveryWriter(model.spec, out, "D", HQ, list_version)
    with w.unit("TOP500_LIST", fmt=lf) as u:
        for row in list_rows(model, list_version):
            u.write(row)
            result.count("TOP500_LIST")
    checks = [w.close()]
    w = DeliveryWriter(model.spec, out, "D", HQ, str(cycle.begin.year))
    with w.unit("REP_CYCLE", fmt="xml" if fmt == "xml" else "txt") as u:
        for row in calendar_rows(cycle.begin.year):
            u.write(row)
            result.count("REP_CYCLE")
    checks.append(w.close())
    return checks


def province_list_ids(model: SampleModel, province: str) -> frozenset[str]:
    """The national ids on ``province``'s list slice (removed entries left out)."""
    return frozenset(f"G{province}{i + 1:07d}" for i in range(model.quota[province]))


def generate(spec: Spec, cycle_id: str, out_dir: Path, provinces: Sequence[str] | None = None, scale: int = 1,
             fmt: str = "mixed", seed: int = 2002, list_version: str | None = None) -> GenerationResult:
    """Write HQ's files to ``out_dir/00`` and each province's delivery to ``out_dir/<code>``."""
    cycle = Cycle.parse(cycle_id)
    if fmt not in ("mixed", "txt", "xml"):
        raise ValueError(f"format must be mixed, txt or xml, not {fmt!r}")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    model = SampleModel(spec, seed=seed, scale=scale)
    chosen = list(provinces) if provinces else model.provinces
    unknown = [p for p in chosen if p not in model.quota]
    if unknown:
        raise ValueError(f"not province codes: {', '.join(unknown)}")
    version = list_version or f"{cycle.begin.year}V01"
    result = GenerationResult(Path(out_dir))
    result.deliveries += write_hq(model, cycle, version, Path(out_dir) / HQ, fmt, result)
    for p in chosen:
        result.deliveries.append(write_province(model, p, cycle, Path(out_dir) / p, fmt, result))
    return result


def generate_networks(spec: Spec, cycle_id: str, out_dir: Path, province: str, scale: int = 1, fmt: str = "mixed",
                      seed: int = 2002, list_version: str | None = None,
                      networks: Sequence[str] | None = None) -> GenerationResult:
    """HQ's files to ``out_dir/00`` and each local network's own delivery of ``province`` to ``out_dir/<network>``."""
    cycle = Cycle.parse(cycle_id)
    model = SampleModel(spec, seed=seed, scale=scale)
    if province not in model.quota:
        raise ValueError(f"not a province code: {province}")
    result = GenerationResult(Path(out_dir))
    result.deliveries += write_hq(model, cycle, list_version or f"{cycle.begin.year}V01", Path(out_dir) / HQ, fmt,
                                  result)
    for net in model.networks(province, cycle.begin):
        if networks is None or net.code in networks:
            result.deliveries.append(write_network(model, province, net.code, cycle, Path(out_dir) / net.code, fmt,
                                                   result))
    return result


def customer_rows(spec: Spec, cycle_id: str, province: str, n: int, seed: int = 2002,
                  distinct: int = 2000) -> Iterator[dict[str, Any]]:
    """``n`` VIP_CUST_INFO rows of one province, streamed (for benchmarks of the widest unit).

    The first ``distinct`` customers come from the model; later rows reuse their attributes
    under new ids, so a multi-million-row file costs little more than writing it.
    """
    cycle = Cycle.parse(cycle_id)
    model = SampleModel(spec, seed=seed, scale=1)
    quota = max(n, 1)
    templates: list[dict[str, Any]] = []
    for i in range(n):
        if i < distinct:
            row = customer_info_row(model, model.customer(province, i, cycle.begin, quota=quota), cycle)
            templates.append(row)
            yield row
        else:
            yield dict(templates[i % distinct], NATIONAL_CUST_ID=f"G{province}{i + 1:07d}",
                       PROV_CUST_ID=f"C{province}{i + 1:09d}")
