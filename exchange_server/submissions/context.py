"""What the server knows beyond the files: the validation context (tier 6) of a delivery."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.conventions import Cycle
from schemas.validation import ValidationContext

from ..accounts.models import Account
from ..accounts.services import authorised_parties
from ..admin.services import CycleExceptionService
from ..clock import beijing_stamp
from ..code_lists.services import live_spec
from ..cycles.models import ReportingCycle
from ..org.services import OrgService
from ..storage import Archive
from .models import Delivery
from .accepted import AcceptedData
from .rows import unit_rows
from .versions import VersionService


class ContextBuilder:
    """Builds the ValidationContext for one delivery from the database and the archive."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.archive = archive
        self.spec = live_spec(session, spec)  # with the code-list versions published at run time

    def build(self, delivery: Delivery, account: Account) -> ValidationContext:
        """Cycle state and calendar, sender rights, resend order, deadline, list slice, last cycle."""
        ctx = ValidationContext(authorised_parties=authorised_parties(self.session, account), account=account.name,
                                received_at=beijing_stamp(delivery.received_at))
        ctx.known_cycles = frozenset(self.session.scalars(select(ReportingCycle.id)))
        if delivery.period is None or delivery.party is None:
            return ctx
        province = OrgService(self.session).province_of(delivery.party)
        cycle = self.session.get(ReportingCycle, delivery.period)
        if cycle is not None:
            ctx.cycle_state = cycle.state
            ctx.units_due = frozenset(cycle.units)
            ctx.deadline = beijing_stamp(cycle.deadline)
            granted = CycleExceptionService(self.session).valid(cycle.id, province, delivery.received_at) \
                if province else None
            if granted is not None:
                # HQ let this province deliver late: neither closed (E601) nor late (W603) until then.
                ctx.cycle_state = "open"
                ctx.deadline = beijing_stamp(granted.until)
        # Resend numbers count in order of arrival: only deliveries received before this one,
        # and only those their senders were entitled to send (another province's account
        # sending in this party's name must not move its sequence).
        ctx.last_resend = self.session.scalar(
            select(func.max(Delivery.resend)).where(Delivery.party == delivery.party, Delivery.period == delivery.period,
                                                    Delivery.mode == delivery.mode, Delivery.id < delivery.id,
                                                    Delivery.entitled.is_(True)))
        if province is not None and delivery.mode in ("P", "T"):
            from ..lists.services import ListService

            lists = ListService(self.session, self.archive, self.spec)
            # A local network served its own part of the list (at a province hub) is checked against that part.
            network = delivery.party if delivery.party != province and lists.serves_network_part(delivery.party) \
                else None
            try:  # the entries in force during the cycle's period, across list versions
                listed = lists.cycle_list(delivery.period, province, network=network)
            except ValueError:  # not a cycle id: E602 says so
                listed = None
            if listed is not None:
                ctx.list_ids, ctx.list_version, ctx.list_explain = listed.ids, listed.label, listed.explain
                # A local network's own delivery carries only its part: every customer it sends
                # must be on the province's list (E604), but it need not cover the list.
                ctx.list_complete = province == delivery.party
        if delivery.mode == "P":
            ctx.previous = self._previous(delivery.party, delivery.period)
        if province is not None and delivery.mode in ("P", "T"):
            ctx.accepted = AcceptedData(self.session, self.spec).for_sender(delivery.party, province,
                                                                             delivery.period)
        return ctx

    def _previous(self, party: str, period: str) -> dict[str, dict[str, dict[str, str]]] | None:
        """Last cycle's current rows of the units with opening or watched fields."""
        try:
            prev = Cycle.parse(period).previous().id
        except ValueError:
            return None
        versions = VersionService(self.session)
        out: dict[str, dict[str, dict[str, str]]] = {}
        for unit in self.spec.units:
            wanted = [f.opening_of or f.id for f in unit.fields if f.opening_of or f.watch]
            if unit.direction != "up" or not wanted:
                continue
            version = versions.current(party, unit.code, prev)
            if version is None:
                continue
            keys = [k for k in unit.primary_key if k != "CYCLE_ID"]
            rows: dict[str, dict[str, str]] = {}
            for row in unit_rows(self.archive, self.spec, version.delivery, unit.code):
                rows["\x1f".join(row.get(k, "") for k in keys)] = {f: row.get(f, "") for f in wanted}
            out[unit.name] = rows
        return out or None
