"""What is accepted now, as the validator sees it: the current rows a partial delivery is compared with.

A delivery that carries some units only (a correction of 32001, say) is checked against the
accepted versions of the units it leaves out, so that nothing becomes current that the
accepted data contradicts (cross-unit rules, tier 5). The rows come from the facts — the
rows the roll-ups count, province-level and network-level deliveries already combined per
local network — for the sender's area: the whole province for a province's delivery, the
one network for a local network's own.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from sqlalchemy import Engine, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.validation.engine import AcceptedSource, AcceptedUnit

from ..consolidation.models import FACTS, MONEY_SCALE, SourceAggregate
from ..db import outside_reader
from .models import DataScope, Delivery, DeliveryFile, UnitVersion


def _text(column: str) -> Callable[[Any], str]:
    """A fact column's value back in the files' lexical form (fen -> "12345.67")."""
    scale = MONEY_SCALE.get(column)
    if scale is not None:
        return lambda v: "" if v is None else format(Decimal(int(v)).scaleb(-scale), "f")
    return lambda v: "" if v is None else str(v)


class AcceptedData:
    """Builds the accepted-rows context of one delivery (``ValidationContext.accepted``)."""

    def __init__(self, session: Session, spec: Spec) -> None:
        self.session = session
        self.spec = spec

    def for_sender(self, party: str, province: str, cycle: str) -> dict[str, AcceptedUnit]:
        """Unit name -> the current accepted rows of the sender's area for the cycle."""
        network = party if party != province else None
        out: dict[str, AcceptedUnit] = {}
        for code, model in FACTS.items():
            q = (select(SourceAggregate.version_id, SourceAggregate.latn_id)
                 .where(SourceAggregate.cycle == cycle, SourceAggregate.unit == code))
            q = q.where(SourceAggregate.latn_id == network) if network else q.where(SourceAggregate.prov_id == province)
            versions = sorted({v for v, _ in self.session.execute(q)})
            if not versions:
                continue
            sources, index = self._sources(code, versions)
            unit = self.spec.unit(code)
            out[unit.name] = AcceptedUnit(sources, self._rows(model, unit.field_ids, cycle, province, network, index))
        return out

    def _sources(self, code: str, version_ids: list[int]) -> tuple[list[AcceptedSource], dict[int, int]]:
        sources: list[AcceptedSource] = []
        index: dict[int, int] = {}
        for version, scope, delivery in self.session.execute(
                select(UnitVersion, DataScope, Delivery).join(DataScope, DataScope.id == UnitVersion.scope_id)
                .join(Delivery, Delivery.id == UnitVersion.delivery_id).where(UnitVersion.id.in_(version_ids))
                .order_by(UnitVersion.id)):
            files = list(self.session.scalars(select(DeliveryFile.name).where(
                DeliveryFile.delivery_id == delivery.id, DeliveryFile.unit == code).order_by(DeliveryFile.name)))
            index[version.id] = len(sources)
            sources.append(AcceptedSource(
                party=scope.party, file=" ".join(files) or f"{delivery.check_name}.chk",
                label_zh=f"{code} 第{version.number}版（交付 #{delivery.id}，{delivery.check_name}）",
                label_en=f"{code} v{version.number} (delivery #{delivery.id}, {delivery.check_name})"))
        return sources, index

    def _rows(self, model: Any, field_ids: tuple[str, ...], cycle: str, province: str, network: str | None,
              index: Mapping[int, int]) -> Callable[[], Iterator[tuple[int, str, dict[str, str]]]]:
        table = sa_inspect(model).local_table
        columns = [c for c in table.columns if c.name.upper() in field_ids]
        texts = [(c.name.upper(), _text(c.name)) for c in columns]
        engine = self.session.get_bind()
        assert isinstance(engine, Engine)

        def rows() -> Iterator[tuple[int, str, dict[str, str]]]:
            # Called while the delivery is validated, outside any transaction: read without
            # holding SQLite's writer, and only rows of the versions named when the context
            # was built (an acceptance in between is the next delivery's business).
            q = (select(table.c.version_id, table.c.latn_id, *columns)
                 .where(table.c.cycle == cycle, table.c.current.is_(True), table.c.version_id.in_(sorted(index)))
                 .execution_options(stream_results=True, yield_per=5000))
            q = q.where(table.c.latn_id == network) if network else q.where(table.c.prov_id == province)
            with outside_reader(engine) as read:
                for version_id, latn, *values in read(q):
                    fields = {"CYCLE_ID": cycle}
                    fields.update((fid, conv(v)) for (fid, conv), v in zip(texts, values))
                    yield index[version_id], latn, fields

        return rows
