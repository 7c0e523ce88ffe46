"""Facts: the accepted rows of each unit, one table per unit, tagged with the version they came from.

``current`` marks the rows the roll-ups use: those of the current version of their scope,
and — where a province's delivery and a local network's own delivery both cover a network
(CONVENTIONS.md §10) — of the most recently accepted one. Rows of superseded versions stay
(``current`` false) so that every figure can be traced to the delivery it came from.

The aggregates (``agg_*``) are the same facts summed per province, kept in step with them in
the accepting transaction (``aggregates.py``): a roll-up reads a few hundred aggregate rows,
never the millions of detail facts.
"""
from __future__ import annotations


from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

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
    # The local network the row counts for: its own LATN_ID, or (contacts) its customer's home network.
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
                      Index("ix_fact_serv_latn", "cycle", "latn_id"),
                      Index("ix_fact_serv_province", "cycle", "prov_id", "current"))

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
                      Index("ix_fact_income_latn", "cycle", "latn_id"),
                      Index("ix_fact_income_province", "cycle", "prov_id", "current"))

    acct_item_type_id: Mapped[str] = mapped_column(String(4))
    income_amt: Mapped[int] = mapped_column(Fen)
    income_ytd_amt: Mapped[int] = mapped_column(Fen)
    income_ly_amt: Mapped[int] = mapped_column(Fen)
    income_ly_ytd_amt: Mapped[int] = mapped_column(Fen)


class CustomerFact(_Fact, Base):
    """VIP_CUST_INFO (31201): one row per listed customer."""

    __tablename__ = "fact_customer"
    __table_args__ = (Index("ix_fact_customer_cycle", "cycle", "current", "national_cust_id"),
                      Index("ix_fact_customer_latn", "cycle", "latn_id"),
                      Index("ix_fact_customer_province", "cycle", "prov_id", "current"))

    national_cust_id: Mapped[str] = mapped_column(String(10))
    c_type_id: Mapped[str] = mapped_column(String(4))
    level_id: Mapped[str] = mapped_column(String(1))
    c_sts_id: Mapped[str] = mapped_column(String(2))


class CustProdFact(_Fact, Base):
    """VIP_CUST_PROD (31203): one row per customer, local network and product."""

    __tablename__ = "fact_cust_prod"
    __table_args__ = (Index("ix_fact_cust_prod_cycle", "cycle", "current", "national_cust_id"),
                      Index("ix_fact_cust_prod_latn", "cycle", "latn_id"),
                      Index("ix_fact_cust_prod_province", "cycle", "prov_id", "current"))

    national_cust_id: Mapped[str] = mapped_column(String(10))
    prod_id: Mapped[str] = mapped_column(String(4))
    serv_cnt: Mapped[int] = mapped_column()
    income_amt: Mapped[int] = mapped_column(Fen)


class ContactFact(_Fact, Base):
    """VIP_CUST_CONTACT (31202): one row per customer contact; its network is the customer's home network.

    No figure counts contacts, but cross-unit checks of a later partial delivery compare
    with them (X-004, X-006), and lineage names the version they come from.
    """

    __tablename__ = "fact_contact"
    __table_args__ = (Index("ix_fact_contact_cycle", "cycle", "current", "national_cust_id"),
                      Index("ix_fact_contact_latn", "cycle", "latn_id"),
                      Index("ix_fact_contact_province", "cycle", "prov_id", "current"))

    national_cust_id: Mapped[str] = mapped_column(String(10))
    contact_seq: Mapped[int] = mapped_column()
    is_primary: Mapped[str] = mapped_column(String(1))


# The (cycle, latn_id) indexes let an acceptance find the rows of exactly the networks it
# covers (the rows it replaces) without visiting the rest of the cycle; the (cycle, prov_id,
# current) ones let it re-sum one province's aggregates without visiting the others.

class CycleGeneration(Base):
    """A cycle's generation: bumped by every acceptance into the cycle, in the acceptance's transaction.

    A roll-up's key names the generations of the cycles it reads (``rollups.RollupService.key``),
    so a download kept under an older key is never served again.
    """

    __tablename__ = "cycle_generation"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)


# -- aggregates, per (cycle, province), kept in step with the facts by aggregates.py ----------

class SourceAggregate(Base):
    """Which version's rows count for one unit and local network of a cycle, and how many.

    Exactly one version counts per (cycle, unit, network): the most recently accepted that
    covers the network. Completeness and lineage read this table.
    """

    __tablename__ = "agg_source"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    unit: Mapped[str] = mapped_column(String(5), primary_key=True)
    latn_id: Mapped[str] = mapped_column(String(4), primary_key=True)
    prov_id: Mapped[str] = mapped_column(String(2))
    version_id: Mapped[int] = mapped_column(ForeignKey("unit_version.id"), index=True)
    rows: Mapped[int] = mapped_column()

    __table_args__ = (Index("ix_agg_source_province", "cycle", "prov_id"),)


class ProductAggregate(Base):
    """Top-500 customers' revenue and customer count per product, per province (from 31203)."""

    __tablename__ = "agg_product"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    prov_id: Mapped[str] = mapped_column(String(2), primary_key=True)
    prod_id: Mapped[str] = mapped_column(String(4), primary_key=True)
    income_amt: Mapped[int] = mapped_column(Fen)
    # Distinct customers within the province: a customer is reported by its lead province
    # only (E604), so these add up across provinces.
    customers: Mapped[int] = mapped_column()


class CustomerAggregate(Base):
    """Top-500 customers and their revenue per customer level or industry, per province (31201 x 31203)."""

    __tablename__ = "agg_customer"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    prov_id: Mapped[str] = mapped_column(String(2), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)  # level_id | c_type_id
    code: Mapped[str] = mapped_column(String(4), primary_key=True)
    customers: Mapped[int] = mapped_column()
    income_amt: Mapped[int] = mapped_column(Fen)


class CoverageAggregate(Base):
    """A province's top-500 coverage for a cycle: customers in force for it, with details, missing."""

    __tablename__ = "agg_coverage"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    prov_id: Mapped[str] = mapped_column(String(2), primary_key=True)
    list_stamp: Mapped[str] = mapped_column(String(200))  # the list versions it was computed with
    list_version: Mapped[str] = mapped_column(String(200))
    listed: Mapped[int] = mapped_column()
    received: Mapped[int] = mapped_column()
    # Every listed customer lacking some kind of coverage, as aggregates.gap_text writes them.
    missing_ids: Mapped[str] = mapped_column(Text)


# unit code -> fact model.
FACTS: dict[str, type[_Fact]] = {"32001": SummaryFact, "32002": ServFact, "32003": IncomeFact,
                                  "31201": CustomerFact, "31202": ContactFact, "31203": CustProdFact}
