"""What HQ returns to a party, placed in its outbox(es) and pushed to its own server if it has one.

Every delivery's receipt (at once) and feedback files (when judged) go to the sending
account's outbox, whatever channel it arrived by (CONVENTIONS.md §9); a published list
version's slices go to each province's outbox.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..accounts.models import Account
from ..push.services import PushService
from ..runtime import Runtime
from ..submissions.models import Delivery
from ..submissions.receiving import receipt_name
from .tree import PartyTree

log = logging.getLogger(__name__)


def trees(rt: Runtime) -> list[PartyTree]:
    """Every tree HQ writes outboxes into: the embedded server's, and the drop-box root if set."""
    out = [PartyTree(rt.settings.sftp_root)]
    if rt.settings.dropbox_root:
        out.append(PartyTree(Path(rt.settings.dropbox_root)))
    return out


def place(rt: Runtime, party: str, name: str, sha256: str, reason: str) -> None:
    """Put an archived file in the party's outboxes and queue it for push where configured."""
    data = rt.archive.read_bytes(sha256)
    for tree in trees(rt):
        tree.place(party, name, data)
    with rt.db.session() as s:
        PushService(s, rt.archive).enqueue(party, name, sha256, len(data), reason)


def place_receipt(rt: Runtime, delivery_id: int) -> None:
    """The receipt of a delivery into the sender's outbox."""
    with rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        account = s.get(Account, d.account_id) if d else None
        if d is None or account is None or not account.party or not d.receipt_key:
            return
        party, name, key = account.party, receipt_name(d), d.receipt_key
    place(rt, party, name, key, "delivery.receipt")


def feedback_hook(rt: Runtime, delivery_id: int) -> None:
    """After a verdict: receipt (if not yet there), file- and record-level feedback to the outbox."""
    with rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        account = s.get(Account, d.account_id) if d else None
        if d is None or account is None or not account.party:
            return
        party = account.party
        base = receipt_name(d)[: -len(".rct.xml")]
        files = [(f"{base}.rct.xml", d.receipt_key), (f"{base}.fbf.xml", d.fbf_key), (f"{base}.fbr.xml", d.fbr_key)]
    for name, key in files:
        if key:
            place(rt, party, name, key, "delivery.feedback")


def place_list_slices(rt: Runtime, version: str) -> int:
    """Each province's slice of a published list version into its outbox; returns how many."""
    from ..lists.services import ListService

    with rt.db.session() as s:
        v = ListService(s, rt.archive, rt.spec).get(version)
        items = [(sl.province, sl.check_name, sl.check_sha256, sl.data_name, sl.data_sha256) for sl in v.slices]
    for province, cname, csha, dname, dsha in items:
        place(rt, province, dname, dsha, "list.publish")  # data first, check file last (CONVENTIONS §7)
        place(rt, province, cname, csha, "list.publish")
    return len(items)


def place_calendar(rt: Runtime) -> int:
    """The reporting calendar (REP_CYCLE, one file per year) into every province account's outbox.

    SFTP-only agents learn the cycles and deadlines from it; it is rewritten whenever the
    calendar changes (the files keep their names, so the outbox always holds the latest).
    """
    import tempfile

    from sqlalchemy import select

    from schemas.writer import DeliveryWriter

    from ..accounts.models import PROVINCE
    from ..clock import beijing_stamp
    from ..cycles.models import ReportingCycle

    with rt.db.session() as s:
        cycles = list(s.scalars(select(ReportingCycle).order_by(ReportingCycle.begin_date)))
        parties = sorted({p for p in s.scalars(select(Account.party).where(Account.role == PROVINCE, Account.active))
                          if p})
        rows = [(c.begin_date.year, dict(CYCLE_ID=c.id, REP_FREQ=c.freq, CYCLE_NAME=c.name,
                                         BEGIN_DATE=c.begin_date, END_DATE=c.end_date,
                                         DEADLINE=beijing_stamp(c.deadline), UNITS_DUE=c.units_due,
                                         REMARK=c.remark or None)) for c in cycles]
    years = sorted({y for y, _ in rows})
    with tempfile.TemporaryDirectory() as tmp:
        for year in years:
            out = Path(tmp) / str(year)
            w = DeliveryWriter(rt.spec, out, "D", "00", str(year))
            with w.unit("REP_CYCLE") as u:
                for y, row in rows:
                    if y == year:
                        u.write(row)
            check = w.close()
            files = sorted(p for p in out.iterdir() if p.is_file())
            keys = [(p.name, rt.archive.put_bytes(p.read_bytes())) for p in files if p != check]
            keys.append((check.name, rt.archive.put_bytes(check.read_bytes())))  # check file last
            for party in parties:
                for name, key in keys:
                    place(rt, party, name, key, "cycle.calendar")
    place_calendar_states(rt, parties)
    return len(years)


CALENDAR_NAME = "calendar.json"


def place_calendar_states(rt: Runtime, parties: list[str]) -> None:
    """``calendar.json`` into each party's outbox: every cycle's state and deadline, and its province's exceptions.

    The standard's REP_CYCLE files carry no state, so an SFTP-only agent reads this to know
    which cycles are open — and which closed ones still take its deliveries until when.
    """
    import json

    from sqlalchemy import select

    from ..admin.services import CycleExceptionService
    from ..clock import beijing_stamp, utcnow
    from ..cycles.models import ReportingCycle
    from ..org.services import OrgService

    now = utcnow()
    with rt.db.session() as s:
        cycles = list(s.scalars(select(ReportingCycle).order_by(ReportingCycle.begin_date)))
        org = OrgService(s)
        province_of = {p: org.province_of(p) for p in parties}
        granted = CycleExceptionService(s).in_force(now)
        rows: list[dict[str, Any]] = [{"id": c.id, "state": c.state, "begin_date": c.begin_date.isoformat(),
                 "end_date": c.end_date.isoformat(), "deadline_beijing": beijing_stamp(c.deadline),
                 "units_due": list(c.units)} for c in cycles]
    for party in parties:
        until = {cycle: end for (prov, cycle), end in granted.items() if prov == province_of[party]}
        mine = [{**r, "exception_until_beijing": beijing_stamp(until[r["id"]]) if r["id"] in until else None}
                for r in rows]
        data = json.dumps({"generated_beijing": beijing_stamp(now), "cycles": mine}, ensure_ascii=False,
                          indent=1).encode("utf-8")
        place(rt, party, CALENDAR_NAME, rt.archive.put_bytes(data), "cycle.calendar")


CODE_LISTS_NAME = "code_lists.json"


def place_code_lists(rt: Runtime) -> int:
    """The code-list versions published at run time, as ``code_lists.json``, into every province account's outbox.

    SFTP-only agents lay these over their own copy of the standard before validating, as
    HTTP agents do with ``GET /api/v1/code-lists``; returns how many parties got the file.
    """
    import json

    from sqlalchemy import select

    from ..accounts.models import PROVINCE
    from ..code_lists.services import code_lists_document

    with rt.db.session() as s:
        data = json.dumps(code_lists_document(s, rt.spec), ensure_ascii=False, indent=1).encode("utf-8")
        parties = sorted({p for p in s.scalars(select(Account.party).where(Account.role == PROVINCE, Account.active))
                          if p})
    key = rt.archive.put_bytes(data)
    for party in parties:
        place(rt, party, CODE_LISTS_NAME, key, "codes.publish")
    return len(parties)
