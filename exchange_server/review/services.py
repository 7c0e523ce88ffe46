"""The review queue: what HQ's admins see of rejected and accepted-with-warnings deliveries, and do about them.

Admins mark a delivery reviewed, comment to the province, request a resend, or accept its
warnings with a written justification. Errors can never be overridden: there is no action
that turns a rejected delivery into an accepted one. Every action is audited in the same
transaction as the change it records. Comments reach the province as
``<check stem>.comment.txt`` in its outbox (every comment so far, newest last) and in the
delivery JSON of the API.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from schemas.conventions import CheckFile
from schemas.spec.model import Spec
from schemas.validation.report import code_titles

from ..accounts.models import Account
from ..audit.services import record
from ..clock import BEIJING, utcnow
from ..errors import BadRequest, Conflict, NotFound
from ..org.models import Area
from ..runtime import Runtime
from ..storage import Archive
from ..submissions.models import (ACCEPTED_WITH_WARNINGS, REJECTED, Delivery, DeliveryFile, Finding,
                                  FindingCount)
from .models import (OPEN, RESEND_REQUESTED, REVIEW_STATES, REVIEWED, WARNINGS_ACCEPTED, DeliveryReview,
                     ReviewComment)

#: Deliveries that need HQ's eyes.
QUEUE_STATUSES = (REJECTED, ACCEPTED_WITH_WARNINGS)
#: Age filter: key -> (Chinese, English, min days, max days) since receipt.
AGES: dict[str, tuple[str, str, float | None, float | None]] = {
    "1d": ("1 天内", "within a day", None, 1),
    "7d": ("7 天内", "within a week", None, 7),
    "30d": ("30 天内", "within 30 days", None, 30),
    "over7d": ("超过 7 天", "older than a week", 7, None),
    "over30d": ("超过 30 天", "older than 30 days", 30, None),
}
STATE_NAMES: dict[str, tuple[str, str]] = {
    OPEN: ("待审核", "open"), REVIEWED: ("已审核", "reviewed"),
    RESEND_REQUESTED: ("已要求重报", "resend requested"), WARNINGS_ACCEPTED: ("已接受警告", "warnings accepted"),
}
MIN_JUSTIFICATION = 10
MAX_COMMENT = 4000
CONTEXT_RADIUS = 5
MAX_LINE_BYTES = 64 * 1024  # a longer line is shown cut (a 2 GB file on one line must not be read whole)
PER_PAGE = 50


@dataclass(frozen=True)
class QueueFilter:
    """What the queue is narrowed to (empty strings mean "any")."""

    cycle: str = ""
    province: str = ""
    unit: str = ""
    code: str = ""
    age: str = ""
    state: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Any) -> "QueueFilter":
        """From a request's query arguments; unknown values are refused, not ignored."""
        try:
            page = max(1, int(args.get("page", "1") or "1"))
        except ValueError:
            page = 1
        text = {k: str(args.get(k, "")).strip() for k in ("cycle", "province", "unit", "code", "age", "state")}
        f = cls(text["cycle"], text["province"], text["unit"], text["code"], text["age"], text["state"], page)
        if f.age and f.age not in AGES:
            raise BadRequest(f"unknown age filter {f.age!r}", f"未知的时长筛选 {f.age!r}", code="invalid_arguments")
        if f.state and f.state not in REVIEW_STATES:
            raise BadRequest(f"unknown review state {f.state!r}", f"未知的审核状态 {f.state!r}",
                             code="invalid_arguments")
        return f

    def args(self, **changes: Any) -> dict[str, Any]:
        """The non-empty filter values as query arguments (for links), with ``changes`` applied."""
        values = {k: getattr(self, k) for k in ("cycle", "province", "unit", "code", "age", "state", "page")}
        values.update(changes)
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


@dataclass(frozen=True)
class QueueRow:
    """One delivery in the queue."""

    delivery: Delivery
    state: str
    codes: list[str]
    sender: str


@dataclass(frozen=True)
class QueuePage:
    """A page of the queue with what the filter form offers."""

    rows: list[QueueRow]
    total: int
    page: int
    pages: int
    cycles: list[str]
    provinces: list[tuple[str, str]]
    units: list[tuple[str, str]]
    codes: list[str]


@dataclass(frozen=True)
class ContextLine:
    """A line of a raw file, decoded; ``failing`` marks the finding's line."""

    number: int
    text: str
    failing: bool
    cut: bool = False


@dataclass(frozen=True)
class FileContext:
    """The lines around a finding's line in the file it points at."""

    finding: Finding
    file: str
    encoding: str
    lines: list[ContextLine]


def _codec(encoding: str) -> str:
    return "gb18030" if encoding.upper().replace("-", "") == "GB18030" else "utf-8"


def _lines(fh: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """Physical lines of a binary stream, each cut at MAX_LINE_BYTES (the rest skipped, not kept)."""
    while True:
        raw = fh.readline(MAX_LINE_BYTES)
        if not raw:
            return
        cut = not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES
        if cut:
            while True:  # skip to the end of this over-long line in bounded reads
                rest = fh.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield raw, cut


def read_context(path: Path, line: int, encoding: str, radius: int = CONTEXT_RADIUS) -> list[ContextLine]:
    """Lines ``line - radius`` .. ``line + radius`` (1-based) of a file, decoded; the file is streamed."""
    codec = _codec(encoding)
    first, last = max(1, line - radius), line + radius
    out: list[ContextLine] = []
    with path.open("rb") as fh:
        for number, (raw, cut) in enumerate(_lines(fh), 1):
            if number > last:
                break
            if number < first:
                continue
            text = raw.rstrip(b"\r\n").decode(codec, "replace")
            if number == 1:
                text = text.removeprefix("\ufeff")
            out.append(ContextLine(number, text, number == line, cut))
    return out


def comment_file_name(delivery: Delivery) -> str:
    """``P_42_202610_00.comment.txt``: beside the delivery's receipt and feedback files in the outbox."""
    return f"{delivery.check_name or f'delivery-{delivery.id}'}.comment.txt"


def render_comments(delivery: Delivery, comments: list[ReviewComment], state: str = OPEN) -> bytes:
    """The comment file: UTF-8, the review state, every comment with its time (Beijing) and author, oldest first.

    The ``review state:`` line lets a province hub (and any program) tell a resend request
    from a remark without reading the text.
    """
    head = (f"# 总部审核意见 HQ review comments: {delivery.check_name or delivery.id}.chk "
            f"(delivery {delivery.id})\n# 审核状态 review state: {state}\n")
    parts = [head]
    for c in comments:
        stamp = c.created_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        parts.append(f"\n[{stamp} 北京时间] {c.author}\n{c.body.strip()}\n")
    return "".join(parts).encode("utf-8")


class ReviewService:
    """Reads the queue and a delivery's review page; applies the admins' actions (audited)."""

    def __init__(self, session: Session, archive: Archive, spec: Spec | None = None) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec

    # -- reading ------------------------------------------------------------------------------
    def _queue_query(self, f: QueueFilter) -> Select[Delivery, str, str]:
        state = func.coalesce(DeliveryReview.state, OPEN)
        q = (select(Delivery, state, Account.name).outerjoin(DeliveryReview, DeliveryReview.delivery_id == Delivery.id)
             .join(Account, Account.id == Delivery.account_id).where(Delivery.status.in_(QUEUE_STATUSES)))
        if f.cycle:
            q = q.where(Delivery.period == f.cycle)
        if f.province:
            networks = select(Area.code).where(Area.parent_code == f.province)
            q = q.where(or_(Delivery.party == f.province, Delivery.party.in_(networks)))
        if f.unit:
            q = q.where(exists().where(and_(DeliveryFile.delivery_id == Delivery.id, DeliveryFile.unit == f.unit)))
        if f.code:
            q = q.where(exists().where(and_(FindingCount.delivery_id == Delivery.id, FindingCount.code == f.code)))
        if f.age:
            _zh, _en, older, newer = AGES[f.age]
            now = utcnow()
            if newer is not None:
                q = q.where(Delivery.received_at >= now - dt.timedelta(days=newer))
            if older is not None:
                q = q.where(Delivery.received_at < now - dt.timedelta(days=older))
        if f.state:
            q = q.where(state == f.state)
        return q

    def queue(self, f: QueueFilter, per_page: int = PER_PAGE) -> QueuePage:
        """The filtered queue, oldest open work first within newest deliveries (newest first)."""
        q = self._queue_query(f)
        total = self.session.scalar(select(func.count()).select_from(q.subquery())) or 0
        pages = max(1, math.ceil(total / per_page))
        page = min(f.page, pages)
        rows = list(self.session.execute(q.order_by(Delivery.received_at.desc(), Delivery.id.desc())
                                         .offset((page - 1) * per_page).limit(per_page)))
        codes: dict[int, list[str]] = {}
        if rows:
            for c in self.session.scalars(select(FindingCount).where(
                    FindingCount.delivery_id.in_([d.id for d, _s, _n in rows])).order_by(FindingCount.code)):
                codes.setdefault(c.delivery_id, []).append(c.code)
        items = [QueueRow(d, s, codes.get(d.id, []), n) for d, s, n in rows]
        in_queue = select(Delivery.id).where(Delivery.status.in_(QUEUE_STATUSES))
        cycles = sorted({c for c in self.session.scalars(select(Delivery.period).where(Delivery.id.in_(in_queue))
                                                         .distinct()) if c}, reverse=True)
        provinces = [(a.code, a.name_zh) for a in self.session.scalars(
            select(Area).where(Area.level == "province").order_by(Area.code))]
        units = sorted({u for u in self.session.scalars(select(DeliveryFile.unit).where(
            DeliveryFile.delivery_id.in_(in_queue)).distinct()) if u})
        unit_names = [(u, self.spec.unit(u).name_zh if self.spec and self.spec.has_unit(u) else "") for u in units]
        all_codes = sorted(set(self.session.scalars(select(FindingCount.code).where(
            FindingCount.delivery_id.in_(in_queue)).distinct())))
        return QueuePage(items, total, page, pages, cycles, provinces, unit_names, all_codes)

    def delivery(self, delivery_id: int) -> Delivery:
        """A delivery in the review queue's scope; NotFound otherwise."""
        d = self.session.get(Delivery, delivery_id)
        if d is None:
            raise NotFound(f"no delivery {delivery_id}", f"报送 {delivery_id} 不存在", code="delivery_not_found")
        return d

    def review(self, delivery: Delivery) -> DeliveryReview | None:
        """The review row of a delivery, if any action was taken yet."""
        return self.session.scalar(select(DeliveryReview).where(DeliveryReview.delivery_id == delivery.id))

    def state(self, delivery: Delivery) -> str:
        """The delivery's review state (``open`` until an admin acts)."""
        r = self.review(delivery)
        return r.state if r else OPEN

    def sender(self, delivery: Delivery) -> Account | None:
        """The account that sent the delivery."""
        return self.session.get(Account, delivery.account_id)

    def summary(self, delivery: Delivery) -> list[dict[str, Any]]:
        """Counts per code (exact), how many are listed, and the catalogue's title; errors first."""
        rows = self.session.execute(select(Finding.code, func.count()).where(Finding.delivery_id == delivery.id)
                                    .group_by(Finding.code))
        listed: dict[str, int] = {code: n for code, n in rows}
        out = []
        rules = {r.id: r for r in self.spec.all_rules()} if self.spec else {}
        for c in sorted(delivery.counts, key=lambda c: (c.severity != "error", c.code)):
            title_zh, title_en = code_titles(self.spec, c.code, rules) if self.spec else ("", "")
            out.append({"code": c.code, "severity": c.severity, "count": c.count, "listed": listed.get(c.code, 0),
                        "title_zh": title_zh, "title_en": title_en})
        return out

    def findings(self, delivery: Delivery, code: str = "", page: int = 1,
                 per_page: int = PER_PAGE) -> tuple[list[Finding], int, int]:
        """A page of the listed findings (optionally of one code): (findings, total, pages)."""
        q = select(Finding).where(Finding.delivery_id == delivery.id)
        if code:
            q = q.where(Finding.code == code)
        total = self.session.scalar(select(func.count()).select_from(q.subquery())) or 0
        pages = max(1, math.ceil(total / per_page))
        page = min(max(1, page), pages)
        items = list(self.session.scalars(q.order_by(Finding.file, Finding.line, Finding.id)
                                          .offset((page - 1) * per_page).limit(per_page)))
        return items, total, pages

    def encoding(self, delivery: Delivery) -> str:
        """The encoding the check file declares (UTF-8 when it cannot be read)."""
        check = next((f for f in delivery.files if f.unit is None and f.name.endswith(".chk")), None)
        if check is None:
            return "UTF-8"
        try:
            return CheckFile.parse(self.archive.read_bytes(check.sha256)).encoding
        except (ValueError, OSError):  # a malformed check file is what got the delivery rejected
            return "UTF-8"

    def context(self, delivery: Delivery, finding_id: int | None = None) -> FileContext | None:
        """The raw lines around a finding (the given one, else the first with a file and line), decoded."""
        q = select(Finding).where(Finding.delivery_id == delivery.id, Finding.file.is_not(None),
                                  Finding.line.is_not(None))
        if finding_id is not None:
            q = q.where(Finding.id == finding_id)
        finding = self.session.scalar(q.order_by(Finding.severity != "error", Finding.id).limit(1))
        if finding is None or finding.line is None or finding.file is None:
            return None
        file = next((f for f in delivery.files if f.name == finding.file), None)
        if file is None or not self.archive.exists(file.sha256):
            return None
        encoding = self.encoding(delivery)
        return FileContext(finding, file.name, encoding,
                           read_context(self.archive.path(file.sha256), finding.line, encoding))

    def versions(self, delivery: Delivery) -> list[Delivery]:
        """The party's deliveries for the same cycle and mode, in resend order.

        Only those their senders were entitled to send (another province's delivery in this
        party's name is not part of its history), and the delivery itself whatever it is.
        """
        if delivery.party is None or delivery.period is None:
            return [delivery]
        return list(self.session.scalars(select(Delivery).where(
            Delivery.party == delivery.party, Delivery.period == delivery.period, Delivery.mode == delivery.mode,
            or_(Delivery.entitled.is_(True), Delivery.id == delivery.id))
            .order_by(Delivery.resend, Delivery.received_at, Delivery.id)))

    def comments(self, delivery: Delivery) -> list[ReviewComment]:
        """HQ's comments on a delivery, oldest first."""
        return list(self.session.scalars(select(ReviewComment).where(ReviewComment.delivery_id == delivery.id)
                                         .order_by(ReviewComment.created_at, ReviewComment.id)))

    def receipt_text(self, delivery: Delivery) -> str | None:
        """The receipt (.rct.xml) as sent to the province."""
        if delivery.receipt_key is None or not self.archive.exists(delivery.receipt_key):
            return None
        return self.archive.read_bytes(delivery.receipt_key).decode("utf-8", "replace")

    # -- acting -------------------------------------------------------------------------------
    def _in_queue(self, delivery: Delivery) -> None:
        if delivery.status not in QUEUE_STATUSES:
            raise Conflict(f"delivery {delivery.id} is {delivery.status}; only rejected and accepted-with-warnings "
                           "deliveries are reviewed",
                           f"报送 {delivery.id} 状态为 {delivery.status}；只有被拒收或带警告采纳的报送需要审核",
                           code="not_under_review", errors={"status": delivery.status})

    def _set(self, actor: str, delivery: Delivery, state: str, justification: str | None = None) -> DeliveryReview:
        r = self.review(delivery)
        before = r.state if r else OPEN
        if r is None:
            r = DeliveryReview(delivery_id=delivery.id)
            self.session.add(r)
        r.state, r.reviewer, r.updated_at = state, actor, utcnow()
        if justification is not None:
            r.justification = justification
        self.session.flush()
        record(self.session, actor, f"review.{state}", f"delivery:{delivery.id}", before=before, state=state,
               status=delivery.status, check_file=delivery.check_name, party=delivery.party,
               **({"justification": justification} if justification is not None else {}))
        return r

    def mark_reviewed(self, actor: str, delivery: Delivery) -> DeliveryReview:
        """An admin has looked at the delivery; nothing more is needed from HQ."""
        self._in_queue(delivery)
        return self._set(actor, delivery, REVIEWED)

    def comment(self, actor: str, delivery: Delivery, body: str) -> ReviewComment:
        """A comment to the province (placed in its outbox by :func:`deliver_comments` after commit)."""
        body = body.strip()
        if not body:
            raise BadRequest("the comment is empty", "意见内容不能为空", code="comment_empty")
        if len(body) > MAX_COMMENT:
            raise BadRequest(f"a comment is at most {MAX_COMMENT} characters", f"意见不能超过 {MAX_COMMENT} 字",
                             code="comment_too_long")
        c = ReviewComment(delivery_id=delivery.id, author=actor, body=body, created_at=utcnow())
        self.session.add(c)
        self.session.flush()
        record(self.session, actor, "review.comment", f"delivery:{delivery.id}", comment_id=c.id, body=body,
               party=delivery.party, file=comment_file_name(delivery))
        return c

    def request_resend(self, actor: str, delivery: Delivery, note: str = "") -> ReviewComment:
        """Ask the province to send the cycle again; the request reaches it as a comment."""
        self._in_queue(delivery)
        self._set(actor, delivery, RESEND_REQUESTED)
        body = "总部要求重报本期数据（请修正后以更高的重报序号重新报送）。\nHQ requests a resend of this cycle " \
               "(correct the data and send it again with a higher resend number)."
        if note.strip():
            body += "\n" + note.strip()
        return self.comment(actor, delivery, body)

    def accept_warnings(self, actor: str, delivery: Delivery, justification: str) -> DeliveryReview:
        """Accept an accepted-with-warnings delivery's warnings, in writing. Errors can never be overridden."""
        if delivery.status == REJECTED or delivery.errors:
            raise Conflict(f"delivery {delivery.id} has errors; errors can never be overridden — ask for a resend",
                           f"报送 {delivery.id} 存在错误；错误不能被豁免，请要求重报",
                           code="errors_cannot_be_overridden", errors={"status": delivery.status})
        if delivery.status != ACCEPTED_WITH_WARNINGS:
            raise Conflict(f"delivery {delivery.id} is {delivery.status}; only warnings can be accepted",
                           f"报送 {delivery.id} 状态为 {delivery.status}；只能接受警告",
                           code="not_under_review", errors={"status": delivery.status})
        text = justification.strip()
        if len(text) < MIN_JUSTIFICATION:
            raise BadRequest(f"write a justification of at least {MIN_JUSTIFICATION} characters",
                             f"请填写不少于 {MIN_JUSTIFICATION} 个字的理由", code="justification_required",
                             errors={"justification": len(text)})
        return self._set(actor, delivery, WARNINGS_ACCEPTED, text)


def deliver_comments(rt: Runtime, delivery_id: int) -> str | None:
    """Write the delivery's comment file to the sender's outbox (after the comment committed); its name."""
    from ..sftp.outbox import place

    with rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        account = s.get(Account, d.account_id) if d else None
        if d is None or account is None or not account.party:
            return None
        service = ReviewService(s, rt.archive)
        comments = service.comments(d)
        if not comments:
            return None
        name, data, party, ids = comment_file_name(d), render_comments(d, comments, service.state(d)), account.party, \
            [c.id for c in comments if c.delivered_at is None]
    key = rt.archive.put_bytes(data)
    place(rt, party, name, key, "review.comment")  # opens its own transaction: ours is closed by now
    with rt.db.session() as s:
        now = utcnow()
        for c in s.scalars(select(ReviewComment).where(ReviewComment.id.in_(ids))):
            c.delivered_at = now
    return name


def comments_dict(session: Session, delivery: Delivery) -> dict[str, Any]:
    """``comments`` and ``review_state`` for the delivery JSON of the API."""
    from ..clock import iso

    review = session.scalar(select(DeliveryReview).where(DeliveryReview.delivery_id == delivery.id))
    comments = session.scalars(select(ReviewComment).where(ReviewComment.delivery_id == delivery.id)
                               .order_by(ReviewComment.created_at, ReviewComment.id))
    return {"review_state": review.state if review else OPEN,
            "comments": [{"author": c.author, "body": c.body, "created_at": iso(c.created_at),
                          "delivered_at": iso(c.delivered_at)} for c in comments]}
