"""Files that travel with a delivery without being part of it: a province hub's approval manifest.

A hub forwarding a province's delivery sends ``<check stem>.approval.json`` beside the
check file (over HTTP as one more file part, over SFTP into the inbox before the check
file). It says who approved which local network's data at the province, and when
(docs/tiers.md). Like every received file it is archived first; it is not a data file, so
it is neither validated nor part of the delivery's fingerprint: the same data forwarded
again is the same delivery. A manifest that cannot be read is kept in the archive and the
audit log, and changes nothing.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ..accounts.models import Account
from ..audit.services import record
from ..org.models import LOCAL_NETWORK, Area
from ..storage import Archive
from .models import Delivery, DeliveryApproval
from .upload import ReceivedFile

log = logging.getLogger(__name__)
MANIFEST_SUFFIX = ".approval.json"
MANIFEST_FORMAT = "kam-approval/1"
MANIFEST_LIMIT = 1024 * 1024


def is_annex(name: str) -> bool:
    """Whether a received file travels with a delivery rather than being one of its files."""
    return name.endswith(MANIFEST_SUFFIX)


def split_annexes(files: Sequence[ReceivedFile]) -> tuple[list[ReceivedFile], list[ReceivedFile]]:
    """(the delivery's own files, its annexes)."""
    return [f for f in files if not is_annex(f.name)], [f for f in files if is_annex(f.name)]


def _text(value: Any, limit: int) -> str:
    return str(value)[:limit] if isinstance(value, (str, int)) else ""


class ApprovalManifests:
    """Records what a hub's manifest says about the delivery it came with."""

    def __init__(self, session: Session, archive: Archive) -> None:
        self.session = session
        self.archive = archive

    def record(self, account: Account, delivery: Delivery, manifest: ReceivedFile) -> DeliveryApproval | None:
        """Keep the manifest's approvals for the delivery (the first one that arrives counts)."""
        existing = self.session.get(DeliveryApproval, delivery.id)
        if existing is not None:
            return existing
        problem, networks, doc = self._read(account, delivery, manifest)
        if problem:
            record(self.session, account.name, "delivery.approval_ignored", f"delivery:{delivery.id}",
                   file=manifest.name, sha256=manifest.sha256, problem=problem)
            log.warning("delivery %s: approval manifest %s ignored: %s", delivery.id, manifest.name, problem)
            return None
        approval = DeliveryApproval(delivery_id=delivery.id, sha256=manifest.sha256, hub=str(doc.get("hub")),
                                    networks=networks, forwarded_by=_text(doc.get("forwarded_by"), 64))
        self.session.add(approval)
        record(self.session, account.name, "delivery.approval", f"delivery:{delivery.id}", file=manifest.name,
               sha256=manifest.sha256, networks=[n["latn_id"] for n in networks])
        self.session.flush()
        return approval

    def _read(self, account: Account, delivery: Delivery,
              manifest: ReceivedFile) -> tuple[str | None, list[dict[str, Any]], dict[str, Any]]:
        """(what is wrong or None, the networks' approvals, the document)."""
        if manifest.size > MANIFEST_LIMIT:
            return f"over {MANIFEST_LIMIT} bytes", [], {}
        if delivery.check_name is None or manifest.name != delivery.check_name + MANIFEST_SUFFIX:
            return f"named for another delivery than {delivery.check_name}.chk", [], {}
        try:
            doc = json.loads(self.archive.read_bytes(manifest.sha256).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "not UTF-8 JSON", [], {}
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            return f"not a {MANIFEST_FORMAT} document", [], {}
        hub = str(doc.get("hub") or "")
        own = self.session.get(Area, account.party) if account.party else None
        province = (own.parent_code if own is not None and own.level == LOCAL_NETWORK else account.party) or ""
        if hub != province:
            return f"hub {hub!r} is not the sender's province {province!r}", [], {}
        networks = []
        for item in doc.get("networks") or []:
            if not isinstance(item, dict):
                return "networks must be objects", [], {}
            latn = _text(item.get("latn_id"), 4)
            area = self.session.get(Area, latn)
            if area is None or area.parent_code != province:
                return f"{latn!r} is not a local network of {province}", [], {}
            networks.append({"latn_id": latn, "by": _text(item.get("by"), 64), "at": _text(item.get("at"), 40),
                             "versions": [{"unit": _text(v.get("unit"), 5), "delivery": _text(v.get("delivery"), 64)}
                                          for v in item.get("versions") or [] if isinstance(v, dict)][:20]})
        return None, networks, doc
