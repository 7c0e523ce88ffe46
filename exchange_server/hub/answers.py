"""HQ's answers, down the tree: each finding to the prefecture file and line its row came from.

When HQ has judged a forward, its findings are read back (the JSON report over HTTP, the
record-level feedback over SFTP) and mapped through the forward's line runs to the
prefecture delivery, file and line each one is about (``HqFinding``). Every prefecture
delivery the forward carried then gets:

- a comment (HQ's verdict on the province's delivery, and how many of HQ's findings are
  about its own rows) — the same comment machinery HQ uses, so it reaches the prefecture's
  outbox (``<check>.comment.txt``), its API and its agent;
- ``<check>.hq.txt`` in its outbox: HQ's findings about its rows, naming its own file and line;
- the findings on its delivery page and in its delivery JSON (``hq``).

HQ's comments on the forward are relayed the same way as they appear; a resend request
reaches the prefectures it concerns (those with findings, else every one the forward
carried) and returns their networks at the hub, so the board shows what must be redone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..accounts.models import Account
from ..audit.services import record
from ..clock import BEIJING, as_utc, iso, utcnow
from ..review.models import RESEND_REQUESTED
from ..review.services import ReviewService, deliver_comments
from ..runtime import Runtime
from ..submissions.models import Delivery, UnitVersion
from .forward import locate
from .models import (
    JUDGED,
    RETURNED,
    Approval,
    Forward,
    ForwardLine,
    ForwardSource,
    HqFinding,
)

MAX_FINDINGS = 5000  # per forward; HQ's totals stay exact in its verdict


def hq_author(province: str) -> str:
    """How HQ's words are signed at the hub."""
    return f"HQ 总部 (via hub {province})"


@dataclass
class HqAnswer:
    """What HQ said about a forward, as read through the transport."""

    status: str
    errors: int
    warnings: int
    findings: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    review_state: str | None = None


def hq_file_name(delivery: Delivery) -> str:
    """``P_4201_202611_00.hq.txt``: HQ's findings about a prefecture delivery's rows, beside its feedback."""
    return f"{delivery.check_name or f'delivery-{delivery.id}'}.hq.txt"


class Answers:
    """Takes HQ's answer on a forward and relays it down to the prefectures."""

    def __init__(self, rt: Runtime, session: Session) -> None:
        self.rt = rt
        self.session = session
        self.province = rt.settings.hub_party
        self.review = ReviewService(session, rt.archive)
        self.touched: set[int] = set()  # prefecture deliveries with something new: files to write after commit

    def source_deliveries(self, fwd: Forward) -> list[int]:
        """The prefecture deliveries whose rows the forward carries."""
        return sorted(set(self.session.scalars(
            select(UnitVersion.delivery_id).join(ForwardSource, ForwardSource.version_id == UnitVersion.id)
            .where(ForwardSource.forward_id == fwd.id))))

    def take(self, fwd: Forward, answer: HqAnswer) -> None:
        """Record HQ's verdict, findings, comments and review state; relay what is new."""
        first = fwd.state != JUDGED
        fwd.state, fwd.hq_status, fwd.hq_errors, fwd.hq_warnings = JUDGED, answer.status, answer.errors, \
            answer.warnings
        fwd.answers_at = utcnow()
        if first:
            fwd.judged_at = utcnow()
            self._findings(fwd, answer.findings)
            self._verdict(fwd)
            record(self.session, hq_author(self.province), "hub.hq_verdict", f"forward:{fwd.id}",
                   check=fwd.check_name, hq_delivery=fwd.hq_delivery_id, status=answer.status, errors=answer.errors,
                   warnings=answer.warnings, findings=len(answer.findings))
        known = list(fwd.hq_comments or [])
        new = [c for c in answer.comments if c not in known]
        if new:
            fwd.hq_comments = known + new
            for text in new:
                self._relay(fwd, self.source_deliveries(fwd), f"总部对省级报送 {fwd.check_name} 的意见 / HQ's comment on "
                                                              f"the province's delivery {fwd.check_name}:\n{text}")
        if answer.review_state and answer.review_state != fwd.hq_review_state:
            fwd.hq_review_state = answer.review_state
            if answer.review_state == RESEND_REQUESTED:
                self._resend_requested(fwd)
        self.session.flush()

    def _findings(self, fwd: Forward, findings: list[dict[str, Any]]) -> None:
        self.session.execute(delete(HqFinding).where(HqFinding.forward_id == fwd.id))
        runs = list(self.session.scalars(select(ForwardLine).where(ForwardLine.forward_id == fwd.id)))
        for f in findings[:MAX_FINDINGS]:
            raw = str(f.get("line") or "")
            line = int(raw) if raw.isdigit() else None
            where = locate(runs, f.get("file"), line)
            self.session.add(HqFinding(
                forward_id=fwd.id, code=str(f.get("code") or "")[:16], severity=str(f.get("severity") or "")[:8],
                file=f.get("file"), line=line, field=f.get("field"),
                value=f.get("value"), expected=f.get("expected"), message_zh=str(f.get("message_zh") or ""),
                message_en=str(f.get("message_en") or ""),
                source_delivery_id=where[0] if where else None, source_file=where[1] if where else None,
                source_line=where[2] if where else None))
        self.session.flush()

    def _verdict(self, fwd: Forward) -> None:
        """Tell each prefecture delivery the forward carried what HQ decided, and how much is about its rows."""
        mine: dict[int, int] = {}
        for source in self.session.scalars(select(HqFinding.source_delivery_id).where(
                HqFinding.forward_id == fwd.id, HqFinding.source_delivery_id.is_not(None))):
            if source is not None:
                mine[source] = mine.get(source, 0) + 1
        for delivery_id in self.source_deliveries(fwd):
            d = self.session.get(Delivery, delivery_id)
            n = mine.get(delivery_id, 0)
            about = (f"其中 {n} 条涉及本报送的行，详见 {hq_file_name(d)}。\n{n} of HQ's findings are about rows of "
                     f"this delivery; see {hq_file_name(d)}." if n and d is not None else
                     "总部的检查结果均不涉及本报送的行。\nNone of HQ's findings is about rows of this delivery.")
            self._relay(fwd, [delivery_id],
                        f"总部对省级报送 {fwd.check_name}（含本报送数据）的结论：{fwd.hq_status}，"
                        f"错误 {fwd.hq_errors}、警告 {fwd.hq_warnings}。\n"
                        f"HQ's verdict on the province's delivery {fwd.check_name} (which carries this delivery's "
                        f"data): {fwd.hq_status}, {fwd.hq_errors} error(s), {fwd.hq_warnings} warning(s).\n{about}")

    def _resend_requested(self, fwd: Forward) -> None:
        with_findings = sorted({d for d in self.session.scalars(
            select(HqFinding.source_delivery_id).where(HqFinding.forward_id == fwd.id,
                                                       HqFinding.source_delivery_id.is_not(None))) if d is not None})
        concerned = with_findings or self.source_deliveries(fwd)
        self._relay(fwd, concerned, f"总部要求重报本期数据（省级报送 {fwd.check_name}），请修正后重报。\n"
                                    f"HQ requests a resend of this cycle (the province's delivery {fwd.check_name}); "
                                    "correct the data and send it again.")
        # Their networks are returned at the hub: the board shows what must be redone.
        version_delivery: dict[int, int] = {v: dl for v, dl in self.session.execute(
            select(UnitVersion.id, UnitVersion.delivery_id).where(UnitVersion.id.in_([s.version_id for s in fwd.sources])))}
        nets = sorted({s.latn_id for s in fwd.sources if version_delivery.get(s.version_id) in concerned})
        now = utcnow()
        for latn in nets:
            self.session.add(Approval(cycle=fwd.cycle, latn_id=latn, state=RETURNED, by=hq_author(self.province),
                                      at=now, comment=f"HQ requested a resend of {fwd.check_name} / 总部要求重报"))
        record(self.session, hq_author(self.province), "hub.hq_resend_requested", f"forward:{fwd.id}",
               check=fwd.check_name, deliveries=concerned, networks=nets)

    def _relay(self, fwd: Forward, delivery_ids: list[int], body: str) -> None:
        for delivery_id in delivery_ids:
            d = self.session.get(Delivery, delivery_id)
            if d is None:
                continue
            self.review.comment(hq_author(self.province), d, body)
            self.touched.add(delivery_id)

    # -- after commit: the prefectures' outboxes --------------------------------------------------------------
    def deliver(self) -> None:
        """Write the comment files and ``.hq.txt`` files of the touched deliveries to their outboxes."""
        for delivery_id in sorted(self.touched):
            deliver_comments(self.rt, delivery_id)
            place_hq_findings(self.rt, delivery_id)


def hq_findings(session: Session, delivery_id: int) -> list[dict[str, Any]]:
    """HQ's answers that concern a prefecture delivery: per forward carrying it, the verdict and its findings."""
    forward_ids = select(ForwardSource.forward_id).join(UnitVersion, UnitVersion.id == ForwardSource.version_id) \
        .where(UnitVersion.delivery_id == delivery_id)
    out = []
    for fwd in session.scalars(select(Forward).where(Forward.id.in_(forward_ids))
                               .order_by(Forward.created_at, Forward.id)):
        found = session.scalars(select(HqFinding).where(HqFinding.forward_id == fwd.id,
                                                        HqFinding.source_delivery_id == delivery_id)
                                .order_by(HqFinding.id))
        out.append({"forward": fwd.check_name, "forward_id": fwd.id, "state": fwd.state,
                    "sent_at": iso(fwd.sent_at), "hq_delivery_id": fwd.hq_delivery_id, "hq_status": fwd.hq_status,
                    "hq_errors": fwd.hq_errors, "hq_warnings": fwd.hq_warnings, "judged_at": iso(fwd.judged_at),
                    "hq_review_state": fwd.hq_review_state,
                    "findings": [{"code": f.code, "severity": f.severity, "file": f.source_file,
                                  "line": f.source_line, "field": f.field, "value": f.value, "expected": f.expected,
                                  "message_zh": f.message_zh, "message_en": f.message_en,
                                  "hq_file": f.file, "hq_line": f.line} for f in found]})
    return out


def render_hq_findings(delivery: Delivery, answers: list[dict[str, Any]]) -> bytes:
    """The ``.hq.txt`` file: per forward carrying the delivery, HQ's verdict and the findings about its rows."""
    lines = [(f"# 总部对省级报送的检查结果 HQ's findings on the province's deliveries carrying "
              f"{delivery.check_name or delivery.id}.chk (delivery {delivery.id})"), ""]
    for a in answers:
        if a["state"] != JUDGED:
            continue
        lines.append(f"{a['forward']}  HQ #{a['hq_delivery_id']}  {a['hq_status']}  "
                     f"errors/错误 {a['hq_errors']}  warnings/警告 {a['hq_warnings']}  ({a['judged_at']})")
        if not a["findings"]:
            lines.append("  本报送的行没有问题 / nothing about this delivery's rows")
        for f in a["findings"]:
            where = f"{f['file']}:{f['line']}" if f["file"] else "-"
            detail = "  ".join(x for x in (f"field {f['field']}" if f["field"] else "",
                                           f"value {f['value']!r}" if f["value"] is not None else "",
                                           f"expected {f['expected']}" if f["expected"] else "") if x)
            lines.append(f"  {f['code']:<8} {f['severity']:<7} {where}  {detail}")
            lines.append(f"      {f['message_zh']}")
            lines.append(f"      {f['message_en']}")
        lines.append("")
    stamp = as_utc(utcnow()).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    lines.append(f"# written {stamp} Beijing time")
    return ("\n".join(lines) + "\n").encode("utf-8")


def place_hq_findings(rt: Runtime, delivery_id: int) -> str | None:
    """Write ``<check>.hq.txt`` to the prefecture's outbox (after the answers committed); its name."""
    from ..sftp.outbox import place

    with rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        account = s.get(Account, d.account_id) if d else None
        if d is None or account is None or not account.party:
            return None
        answers = hq_findings(s, delivery_id)
        if not any(a["state"] == JUDGED for a in answers):
            return None
        name, data, party = hq_file_name(d), render_hq_findings(d, answers), account.party
    place(rt, party, name, rt.archive.put_bytes(data), "hub.hq_findings")
    return name
