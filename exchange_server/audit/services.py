"""Writing to the audit log."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .models import AuditEvent


def record(session: Session, actor: str, action: str, target: str, **detail: Any) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with the change it records)."""
    event = AuditEvent(actor=actor, action=action, target=target, detail=detail)
    session.add(event)
    return event
