"""Recording a received delivery: identity, receipt, queue entry — in one transaction.

By the time this runs every byte is already in the archive. Here the delivery gets its id,
its receipt (issued at once, archived too) and its place in the ingestion queue. The same
bytes sent again by the same account are the same delivery: the sender gets the first
receipt back and nothing else happens.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import FileNameError, Spec
from schemas.conventions import CheckFileName, DataFileName
from schemas.validation import receipt_xml

from ..accounts.models import Account
from ..accounts.services import authorised_parties
from ..audit.services import record
from ..clock import beijing_stamp, utcnow
from ..ingestion.models import IngestJob
from ..storage import Archive
from .annexes import ApprovalManifests, split_annexes
from .models import Delivery, DeliveryFile
from .upload import ReceivedFile


def fingerprint(files: Sequence[ReceivedFile]) -> str:
    """The identity of a delivery's bytes: names and digests of all its files, order-free."""
    lines = sorted(f"{f.name} {f.sha256}" for f in files)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def receipt_name(delivery: Delivery) -> str:
    """``P_42_202610_00.rct.xml`` (or ``delivery-17.rct.xml`` when the check file was unusable)."""
    return f"{delivery.check_name or f'delivery-{delivery.id}'}.rct.xml"


class ReceivingService:
    """Turns archived files into a recorded, queued delivery with a receipt."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec

    def find_duplicate(self, account: Account, files: Sequence[ReceivedFile]) -> Delivery | None:
        """The earlier delivery with exactly these bytes from this account, if any."""
        return self.session.scalar(select(Delivery).where(Delivery.account_id == account.id,
                                                          Delivery.fingerprint == fingerprint(files)))

    def receive(self, account: Account, channel: str, files: Sequence[ReceivedFile]) -> tuple[Delivery, bool]:
        """Record a delivery whose files are archived; returns (delivery, is_duplicate).

        Annexes among the files (a hub's ``.approval.json``, ``annexes.py``) are recorded
        with the delivery, not as its files.
        """
        files, annexes = split_annexes(files)
        delivery, duplicate = self._receive(account, channel, files)
        for annex in annexes:
            ApprovalManifests(self.session, self.archive).record(account, delivery, annex)
        return delivery, duplicate

    def _receive(self, account: Account, channel: str, files: Sequence[ReceivedFile]) -> tuple[Delivery, bool]:
        existing = self.find_duplicate(account, files)
        if existing is not None:
            return existing, True
        checks = [f for f in files if f.name.endswith(".chk")]
        check_name = mode = party = period = None
        resend: int | None = None
        if len(checks) == 1:
            try:
                parsed = CheckFileName.parse(checks[0].name)
                check_name, mode, party, period, resend = (parsed.stem, parsed.mode, parsed.party, parsed.period,
                                                           parsed.resend)
            except FileNameError:
                pass  # validation reports the bad name (E101) in the delivery's feedback
        # Decided once, on receipt: a delivery the account may not send (another province's
        # party) is judged (E606) but never counts for that party — not in its resend
        # sequence, its completeness or its history.
        entitled = party is not None and party in authorised_parties(self.session, account)
        delivery = Delivery(account_id=account.id, channel=channel, fingerprint=fingerprint(files),
                            check_name=check_name, mode=mode, party=party, period=period, resend=resend,
                            entitled=entitled, received_at=utcnow(), total_size=sum(f.size for f in files))
        for f in files:
            unit = None
            if not f.name.endswith(".chk"):
                try:
                    unit = DataFileName.parse(f.name).unit
                except FileNameError:
                    unit = None
            delivery.files.append(DeliveryFile(name=f.name, size=f.size, sha256=f.sha256, unit=unit))
        try:
            with self.session.begin_nested():
                self.session.add(delivery)
                self.session.flush()
        except IntegrityError:
            # The same bytes arrived twice at once (PostgreSQL, two requests): the other won.
            again = self.find_duplicate(account, files)
            if again is None:
                raise
            return again, True
        rct = receipt_xml(self.spec.namespace, str(delivery.id), f"{check_name}.chk" if check_name else "",
                          beijing_stamp(delivery.received_at),
                          [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files], self.spec.version)
        delivery.receipt_key = self.archive.put_bytes(rct)
        self.session.add(IngestJob(delivery_id=delivery.id))
        record(self.session, account.name, "delivery.received", f"delivery:{delivery.id}", channel=channel,
               check=check_name, files=len(files), bytes=delivery.total_size)
        self.session.flush()
        return delivery, False
