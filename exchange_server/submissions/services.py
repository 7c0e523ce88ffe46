"""Reading deliveries: a sender's own, with their verdicts, reports and feedback files."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..accounts.models import Account
from ..accounts.services import visible_parties
from ..clock import beijing_stamp, iso
from ..errors import Conflict, NotFound
from ..storage import Archive
from .models import DataScope, Delivery, UnitVersion
from .receiving import receipt_name

FEEDBACK = {"receipt": ("receipt_key", ".rct.xml"), "file": ("fbf_key", ".fbf.xml"),
            "record": ("fbr_key", ".fbr.xml")}


class DeliveryService:
    """What an account may see of deliveries."""

    def __init__(self, session: Session, archive: Archive) -> None:
        self.session = session
        self.archive = archive

    def visible_where(self, account: Account) -> Any:
        """The WHERE clause of the deliveries ``account`` may see; None when it may see all (HQ)."""
        parties = visible_parties(self.session, account)
        if parties is None:
            return None
        # A province sees what its own accounts (its and its networks') sent — never what
        # another province's account sent, whatever party those files claim to be.
        senders = select(Account.id).where(Account.party.in_(parties))
        return Delivery.account_id.in_(senders)

    def get(self, account: Account, delivery_id: int) -> Delivery:
        """One delivery; NotFound when it does not exist or is not the account's to see."""
        delivery = self.session.get(Delivery, delivery_id)
        if delivery is not None:
            parties = visible_parties(self.session, account)
            sender = self.session.get(Account, delivery.account_id)
            if parties is None or (sender is not None and sender.party in parties):
                return delivery
        raise NotFound(f"no delivery {delivery_id}", f"报送 {delivery_id} 不存在", code="delivery_not_found")

    def page(self, account: Account, cycle: str | None = None, status: str | None = None, mode: str | None = None,
             page: int = 1, per_page: int = 50) -> tuple[list[Delivery], int]:
        """Deliveries the account may see, newest first."""
        q = select(Delivery)
        where = self.visible_where(account)
        if where is not None:
            q = q.where(where)
        if cycle:
            q = q.where(Delivery.period == cycle)
        if status:
            q = q.where(Delivery.status == status)
        if mode:
            q = q.where(Delivery.mode == mode)
        total = self.session.scalar(select(func.count()).select_from(q.subquery())) or 0
        items = self.session.scalars(q.order_by(Delivery.id.desc()).offset((page - 1) * per_page).limit(per_page))
        return list(items), total

    def report_bytes(self, delivery: Delivery) -> bytes:
        """The full JSON report; Conflict while validation has not ended."""
        if delivery.report_key is None:
            raise Conflict(f"delivery {delivery.id} is {delivery.status}; its report is not ready yet",
                           f"报送 {delivery.id} 当前为 {delivery.status}，报告尚未生成", code="report_not_ready",
                           errors={"status": delivery.status})
        return self.archive.read_bytes(delivery.report_key)

    def feedback(self, delivery: Delivery, kind: str) -> tuple[str, bytes]:
        """A feedback file (receipt, file-level, record-level): its name and bytes."""
        attr, suffix = FEEDBACK[kind]
        key = getattr(delivery, attr)
        if key is None:
            ready = delivery.is_final
            raise (NotFound if ready else Conflict)(
                f"delivery {delivery.id} has no {suffix} file" + ("" if ready else " yet"),
                f"报送 {delivery.id} 没有 {suffix} 文件" + ("" if ready else "（尚未生成）"),
                code="feedback_not_available" if ready else "report_not_ready")
        name = receipt_name(delivery).replace(".rct.xml", suffix)
        return name, self.archive.read_bytes(key)

    def versions_of(self, delivery: Delivery) -> list[tuple[UnitVersion, DataScope]]:
        """The versions a delivery produced, with their scopes."""
        rows = self.session.execute(select(UnitVersion, DataScope).join(DataScope, UnitVersion.scope_id == DataScope.id)
                                    .where(UnitVersion.delivery_id == delivery.id).order_by(DataScope.unit))
        return [(v, s) for v, s in rows]


def receipt_dict(delivery: Delivery, duplicate: bool, base: str) -> dict[str, Any]:
    """The receipt as the API returns it."""
    url = f"{base}/deliveries/{delivery.id}"
    return {
        "delivery_id": delivery.id, "check_file": f"{delivery.check_name}.chk" if delivery.check_name else None,
        "received_at": iso(delivery.received_at), "received_at_beijing": beijing_stamp(delivery.received_at),
        "fingerprint": delivery.fingerprint, "duplicate": duplicate, "status": delivery.status,
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "unit": f.unit, "rows": f.rows}
                  for f in delivery.files],
        "links": {"self": url, "report": f"{url}/report", "receipt_xml": f"{url}/receipt.xml",
                  "file_feedback_xml": f"{url}/feedback.fbf.xml", "record_feedback_xml": f"{url}/feedback.fbr.xml"},
    }


def delivery_dict(service: DeliveryService, delivery: Delivery, base: str) -> dict[str, Any]:
    """A delivery with its verdict, counts and versions."""
    out = receipt_dict(delivery, False, base)
    out.pop("duplicate")
    out.update(channel=delivery.channel, mode=delivery.mode, party=delivery.party, period=delivery.period,
               resend=delivery.resend, validated_at=iso(delivery.validated_at), errors=delivery.errors,
               warnings=delivery.warnings, late=delivery.late, failure=delivery.failure,
               counts=[{"code": c.code, "severity": c.severity, "count": c.count} for c in delivery.counts],
               versions=[{"unit": s.unit, "number": v.number, "current": s.current_version_id == v.id,
                          "accepted_at": iso(v.accepted_at)} for v, s in service.versions_of(delivery)])
    from ..review.services import comments_dict  # HQ's review: its state and comments to the sender

    out.update(comments_dict(service.session, delivery))
    from ..hub.answers import hq_findings  # at a province hub: HQ's answers on the forwards carrying it
    from ..submissions.models import DeliveryApproval

    out["hq"] = hq_findings(service.session, delivery.id)
    approval = service.session.get(DeliveryApproval, delivery.id)  # at HQ: what the forwarding hub said
    out["approval"] = ({"hub": approval.hub, "forwarded_by": approval.forwarded_by, "networks": approval.networks}
                       if approval is not None else None)
    return out
