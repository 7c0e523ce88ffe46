"""Facts: the accepted rows of each unit, one table per unit, tagged with the version they came from.

``current`` marks the rows the roll-ups use: those of the current version of their scope,
and — where a province's delivery and a local network's own delivery both cover a network
(CONVENTIONS.md §10) — of the most recently accepted one. Rows of superseded versions stay
(``current`` false) so that every figure can be traced to the delivery it came from.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, UTCDateTime

# Money is stored as integer fen (yuan x 100) and bandwidth as integer thousandths: SQLite has
# no decimal type (NUMERIC is kept as a binary float), and integer sums are exact everywhere.
Fen = BigInteger
MONEY_SCALE = {"income_amt": 2, "income_ytd_amt": 2, "income_ly_amt": 2, "income_ly_ytd_amt": 2,
               "bandwidth_mbps": 3}


class _Fact:
    """Columns every fact table has."""

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("unit_version.id"), index=True)
    party: Mapped[str] = mapped_column(String(4))  # who sent it (a province, or a local network)
    cycle: Mapped[str] = mapped_column(String(7))
    prov_id: Mapped[str] = mapped_column(String(2))
    latn_id: Mapped[str] = mapped_column(String(4))
    current: Mapped[bool] = mapped_column(default=True)


class SummaryFact(_Fact, Base):
    """VIP_SUMMARY (32001): one row per local network."""

    __tablename__ = "fact_summary"
    __table_args__ = (Index("ix_fact_summary_cycle", "cycle", "current", "prov_id"),
                      Index("ix_fact_summary_latn", "cycle", "latn_id"))

    cust_cnt: Mapped[int] = mapped_column()
    cust_cnt_group: Mapped[int] = mapped_column()
    cust_cnt_prov: Mapped[int] = mapped_column()
    cust_cnt_la: Mapped[int] = mapped_column()
    cust_cnt_lb: Mapped[int] = mapped_column()
    cust_cnt_lc: Mapped[int] = mapped_column()
    last_cust_cnt: Mapped[int] = mapped_column()
    new_cust_cnt: Mapped[int] = mapped_column()
    lost_cust_cnt: Mapped[int] = mapped_column()
    top500_cust_cnt: Mapped[int] = mapped_column()
    manager_cnt: Mapped[int] = mapped_column()
    income_amt: Mapped[int] = mapped_column(Fen)
    income_ytd_amt: Mapped[int] = mapped_column(Fen)
    income_ly_amt: Mapped[int] = mapped_column(Fen)


class ServFact(_Fact, Base):
    """VIP_SERV_SUM (32002): one row per local network and product."""

    __tablename__ = "fact_serv"
    __table_args__ = (Index("ix_fact_serv_cycle", "cycle", "current", "prod_id"),
                      Index("ix_fact_serv_latn", "cycle", "latn_id"))

    prod_id: Mapped[str] = mapped_column(String(4))
    last_serv_cnt: Mapped[int] = mapped_column()
    new_serv_cnt: Mapped[int] = mapped_column()
    cancel_serv_cnt: Mapped[int] = mapped_column()
    serv_cnt: Mapped[int] = mapped_column()
    serv_cnt_ly: Mapped[int] = mapped_column()
    cust_cnt: Mapped[int] = mapped_column()
    bandwidth_mbps: Mapped[int | None] = mapped_column(Fen, default=None)  # thousandths


class IncomeFact(_Fact, Base):
    """VIP_INCOME_SUM (32003): one row per local network and billing item."""

    __tablename__ = "fact_income"
    __table_args__ = (Index("ix_fact_income_cycle", "cycle", "current", "acct_item_type_id"),
                      Index("ix_fact_income_latn", "cycle", "latn_id"))

    acct_item_type_id: Mapped[str] = mapped_column(String(4))
    income_amt: Mapped[int] = mapped_column(Fen)
    income_ytd_amt: Mapped[int] = mapped_column(Fen)
    income_ly_amt: Mapped[int] = mapped_column(Fen)
    income_ly_ytd_amt: Mapped[int] = mapped_column(Fen)


class CustomerFact(_Fact, Base):
    """VIP_CUST_INFO (31201): one row per listed customer."""

    __tablename__ = "fact_customer"
    __table_args__ = (Index("ix_fact_customer_cycle", "cycle", "current", "national_cust_id"),
                      Index("ix_fact_customer_latn", "cycle", "latn_id"))

    national_cust_id: Mapped[str] = mapped_column(String(10))
    c_type_id: Mapped[str] = mapped_column(String(4))
    level_id: Mapped[str] = mapped_column(String(1))
    c_sts_id: Mapped[str] = mapped_column(String(2))


class CustProdFact(_Fact, Base):
    """VIP_CUST_PROD (31203): one row per customer, local network and product."""

    __tablename__ = "fact_cust_prod"
    __table_args__ = (Index("ix_fact_cust_prod_cycle", "cycle", "current", "national_cust_id"),
                      Index("ix_fact_cust_prod_latn", "cycle", "latn_id"))

    national_cust_id: Mapped[str] = mapped_column(String(10))
    prod_id: Mapped[str] = mapped_column(String(4))
    serv_cnt: Mapped[int] = mapped_column()
    income_amt: Mapped[int] = mapped_column(Fen)


# The (cycle, latn_id) indexes let an acceptance find the rows of exactly the networks it
# covers (the rows it replaces) without visiting the rest of the cycle.

class RollupCache(Base):
    """A cycle's computed roll-up, valid while ``generation`` equals the cycle's current one.

    Every acceptance bumps ``generation`` (in its own transaction), so a cached roll-up is
    never stale and never mixes versions; the first download after a change recomputes it.
    """

    __tablename__ = "rollup_cache"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)  # bumped by every acceptance in the cycle
    built_key: Mapped[str | None] = mapped_column(String(40), default=None)  # "generation:latest delivery id"
    payload: Mapped[str | None] = mapped_column(Text, default=None)  # JSON, decimals tagged
    built_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


# unit code -> fact model; VIP_CUST_CONTACT (31202) carries nothing the roll-ups count.
FACTS: dict[str, type[_Fact]] = {"32001": SummaryFact, "32002": ServFact, "32003": IncomeFact,
                                  "31201": CustomerFact, "31203": CustProdFact}
