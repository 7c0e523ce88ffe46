"""The review queue: what HQ's admins see of rejected and accepted-with-warnings deliveries, and do about them.

Admins mark a delivery reviewed, comment to the province, request a resend, or accept its
warnings with a written justification. Errors can never be overridden: there is no action
that turns a rejected delivery into an accepted one. Every action is audited in the same
transaction as the change it records. Comments reach the province as
``<check stem>.comment.txt`` in its outbox (every comment so far, newest last) and in the
delivery JSON of the API.

The queue empties itself. Whether an item is still open is decided when the queue is read,
from the deliveries themselves (nothing is recorded when a resend is accepted, so no order
of verdicts, no upgrade and no change of setting can leave a stale item):

- **superseded**: a delivery is closed by the first later delivery of the same resend
  sequence (same party, cycle and mode; sent by an entitled account; later by resend number,
  then receipt) that was accepted (with or without warnings) and carries every *failing
  unit* of it. The failing units are the units of the data files the listed findings point
  at; when a finding points at no data file (the check file, a missing file, lateness, the
  delivery as a whole) or the listed findings were capped, every unit of the delivery is
  failing. A partial resend therefore closes an item only if it resends what failed.
- **late only**: an accepted-with-warnings delivery whose only warnings are W603 (late) is
  not a review item unless the ``review_late_acceptances`` setting is on.

The open queue is what has had no action yet or awaits a requested resend; reviewing an
item or accepting its warnings closes it.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, not_, or_, select, true
from sqlalchemy.orm import Session, aliased

from schemas.conventions import DELIMITERS, CheckFile
from schemas.spec.model import Spec
from schemas.validation.report import code_titles

from ..accounts.models import Account
from ..audit.services import record
from ..clock import BEIJING, utcnow
from ..errors import BadRequest, Conflict, NotFound
from ..org.models import Area
from ..runtime import Runtime
from ..storage import Archive
from ..submissions.models import (ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED, Delivery, DeliveryFile, Finding,
                                  FindingCount)
from .models import (OPEN, RESEND_REQUESTED, REVIEWED, WARNINGS_ACCEPTED, DeliveryReview,
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
MAX_BULK = 200  # deliveries one bulk action may name (a page of the queue is 50)
LATE = "W603"
#: The queue's views besides the review states: open (the default), closed, all, superseded.
CLOSED, ALL, SUPERSEDED = "closed", "all", "superseded"
VIEWS: dict[str, tuple[str, str]] = {
    OPEN: ("待处理", "open"), CLOSED: ("已关闭", "closed"), ALL: ("全部", "all"),  # open: see ReviewService._open
    REVIEWED: STATE_NAMES[REVIEWED], RESEND_REQUESTED: STATE_NAMES[RESEND_REQUESTED],
    WARNINGS_ACCEPTED: STATE_NAMES[WARNINGS_ACCEPTED], SUPERSEDED: ("已被取代", "superseded"),
}
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
        if f.state and f.state not in VIEWS:
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
    superseded_by: int | None = None  # the later accepted resend that closed this item
    late_only: bool = False  # accepted with no warning but W603


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
    titles: dict[str, tuple[str, str]]  # code -> (Chinese, English) title, for every code shown
    open_total: int = 0  # the open items whatever the view (the queue's badge)


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
    fields: list["LabelledField"] | None = None  # the failing line split into the unit's fields


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


@dataclass(frozen=True)
class LabelledField:
    """One value of a raw line with the unit's field it belongs to; ``failing`` marks the finding's field."""

    position: int  # 1-based column
    field_id: str  # "" for a value beyond the unit's last field
    name_zh: str
    name_en: str
    value: str | None  # None: the line ended before this field
    failing: bool = False


def labelled_fields(spec: Spec | None, unit: str | None, line: str, delimiter: str,
                    failing_field: str | None = None) -> list[LabelledField] | None:
    """A delimited raw line as field → value, labelled with ``unit``'s field ids and names.

    None when the line cannot be labelled (no spec or unknown unit, no delimiter): the
    caller shows the line as it is. Values beyond the unit's fields are kept (unnamed), and
    fields the line does not reach are listed without a value, so a short or long line (E201)
    shows where it went wrong. ``failing_field`` is the finding's field id (or its name).
    """
    if spec is None or not unit or not delimiter or not spec.has_unit(unit):
        return None
    fields = sorted(spec.unit(unit).fields, key=lambda f: f.position)
    values = line.split(delimiter)
    out: list[LabelledField] = []
    for i in range(max(len(fields), len(values))):
        value = values[i] if i < len(values) else None
        if i < len(fields):
            f = fields[i]
            failing = bool(failing_field) and failing_field in (f.id, f.name_zh, f.name_en)
            out.append(LabelledField(i + 1, f.id, f.name_zh, f.name_en, value, failing))
        else:
            out.append(LabelledField(i + 1, "", "（多余的值）", "(extra value)", value))
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


def _exists(table: Any, *where: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS over ``table``, correlated to every other table named (nested subqueries need it said)."""
    return select(literal(1)).select_from(table).where(*where).correlate_except(table).exists()


def superseded_by_column() -> ColumnElement[int | None]:
    """The id of the later accepted resend that closes a queued ``Delivery`` (NULL if none): see the module doc.

    A correlated scalar subquery on ``Delivery`` (the queue's row), evaluated by the database
    per row, so the open queue can be counted and paged.
    """
    later = aliased(Delivery, name="later")
    mine, theirs, other = (aliased(DeliveryFile, name=n) for n in ("mine", "theirs", "other"))
    f, g = aliased(Finding, name="f"), aliased(Finding, name="g")
    listed = select(func.count()).select_from(g).where(g.delivery_id == Delivery.id).correlate_except(g)
    # Every unit fails when a listed finding points at no data file of the delivery, or the list was capped.
    off_unit = _exists(f, f.delivery_id == Delivery.id, ~_exists(
        other, other.delivery_id == Delivery.id, other.name == f.file, other.unit.is_not(None)))
    whole = or_(Delivery.errors + Delivery.warnings > listed.scalar_subquery(), off_unit)
    # The file's own findings first: the whole-delivery test only runs for files without any.
    failing_unit = and_(mine.delivery_id == Delivery.id, mine.unit.is_not(None),
                        or_(_exists(f, f.delivery_id == Delivery.id, f.file == mine.name), whole))
    uncovered = _exists(mine, failing_unit, ~_exists(theirs, theirs.delivery_id == later.id, theirs.unit == mine.unit))
    after = or_(later.resend > Delivery.resend,
                and_(later.resend == Delivery.resend,
                     or_(later.received_at > Delivery.received_at,
                         and_(later.received_at == Delivery.received_at, later.id > Delivery.id))))
    return (select(func.min(later.id))
            .where(later.party == Delivery.party, later.period == Delivery.period, later.mode == Delivery.mode,
                   later.entitled.is_(True), Delivery.entitled.is_(True),
                   later.status.in_((ACCEPTED, ACCEPTED_WITH_WARNINGS)), after, ~uncovered)
            .correlate_except(later).scalar_subquery())


def late_only_column() -> ColumnElement[bool]:
    """Whether a queued ``Delivery`` was accepted with no warning but lateness (W603)."""
    return and_(Delivery.status == ACCEPTED_WITH_WARNINGS,
                ~_exists(FindingCount, FindingCount.delivery_id == Delivery.id, FindingCount.code != LATE))


class ReviewService:
    """Reads the queue and a delivery's review page; applies the admins' actions (audited)."""

    def __init__(self, session: Session, archive: Archive, spec: Spec | None = None,
                 late_acceptances: bool = False) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec
        self.late_acceptances = late_acceptances  # the review_late_acceptances setting

    def _open(self, state: ColumnElement[str], superseded: ColumnElement[int | None],
              late_only: ColumnElement[bool]) -> ColumnElement[bool]:
        """What is still open: no action yet or a resend awaited, not superseded, not merely late (unless wanted).

        A resend request keeps the item open until the resend is accepted (it then closes
        itself); reviewing it or accepting its warnings closes it.
        """
        return and_(state.in_((OPEN, RESEND_REQUESTED)), superseded.is_(None),
                    true() if self.late_acceptances else not_(late_only))

    # -- reading ------------------------------------------------------------------------------
    def _queue_query(self, f: QueueFilter) -> Select[Delivery, str, str, int | None, bool]:
        state = func.coalesce(DeliveryReview.state, OPEN)
        superseded, late_only = superseded_by_column(), late_only_column()
        q = (select(Delivery, state, Account.name, superseded, late_only)
             .outerjoin(DeliveryReview, DeliveryReview.delivery_id == Delivery.id)
             .join(Account, Account.id == Delivery.account_id).where(Delivery.status.in_(QUEUE_STATUSES)))
        view = f.state or OPEN
        if view == OPEN:
            q = q.where(self._open(state, superseded, late_only))
        elif view == CLOSED:
            q = q.where(not_(self._open(state, superseded, late_only)))
        elif view == SUPERSEDED:
            q = q.where(superseded.is_not(None))
        elif view != ALL:
            q = q.where(state == view)
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
                    FindingCount.delivery_id.in_([r[0].id for r in rows])).order_by(FindingCount.code)):
                codes.setdefault(c.delivery_id, []).append(c.code)
        items = [QueueRow(d, s, codes.get(d.id, []), n, sup, bool(late)) for d, s, n, sup, late in rows]
        open_total = total if (f.state or OPEN) == OPEN and f == QueueFilter(page=f.page) else self.open_count()
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
        shown = set(all_codes) | {c for r in items for c in r.codes}
        return QueuePage(items, total, page, pages, cycles, provinces, unit_names, all_codes,
                         self.titles(shown), open_total)

    def open_count(self) -> int:
        """How many deliveries still need HQ (the open view, unfiltered)."""
        q = self._queue_query(QueueFilter())
        return self.session.scalar(select(func.count()).select_from(q.subquery())) or 0

    def titles(self, codes: set[str] | list[str]) -> dict[str, tuple[str, str]]:
        """(Chinese, English) titles of finding codes (the catalogue's, or a rule's id and unit)."""
        if self.spec is None:
            return {c: ("", "") for c in codes}
        rules = {r.id: r for r in self.spec.all_rules()}
        return {c: code_titles(self.spec, c, rules) for c in codes}

    def superseded_by(self, delivery: Delivery) -> Delivery | None:
        """The later accepted resend that closed this delivery's review item, if any (see the module doc)."""
        if delivery.status not in QUEUE_STATUSES:
            return None
        later = self.session.scalar(select(superseded_by_column()).where(Delivery.id == delivery.id))
        return self.session.get(Delivery, later) if later is not None else None

    def late_only(self, delivery: Delivery) -> bool:
        """Whether the delivery's only warnings are lateness (W603) and no errors."""
        return bool(self.session.scalar(select(late_only_column()).where(Delivery.id == delivery.id)))

    def is_open(self, delivery: Delivery) -> bool:
        """Whether the delivery is in the open queue (see :meth:`_open`)."""
        if delivery.status not in QUEUE_STATUSES:
            return False
        return self.state(delivery) in (OPEN, RESEND_REQUESTED) and self.superseded_by(delivery) is None and (
            self.late_acceptances or not self.late_only(delivery))

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

    def check_file(self, delivery: Delivery) -> CheckFile | None:
        """The delivery's check file, parsed (None when there is none or it cannot be read)."""
        check = next((f for f in delivery.files if f.unit is None and f.name.endswith(".chk")), None)
        if check is None:
            return None
        try:
            return CheckFile.parse(self.archive.read_bytes(check.sha256))
        except (ValueError, OSError):  # a malformed check file is what got the delivery rejected
            return None

    def encoding(self, delivery: Delivery) -> str:
        """The encoding the check file declares (UTF-8 when it cannot be read)."""
        check = self.check_file(delivery)
        return check.encoding if check else "UTF-8"

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
        check = self.check_file(delivery)
        encoding = check.encoding if check else "UTF-8"
        lines = read_context(self.archive.path(file.sha256), finding.line, encoding)
        failing = next((line for line in lines if line.failing), None)
        fields = None
        # XML files hold records, not lines: their failing line is shown as it is.
        if failing is not None and check is not None and file.unit and not file.name.lower().endswith(".xml"):
            fields = labelled_fields(self.spec, file.unit, failing.text, check.delimiter
                                     if check.delimiter_name in DELIMITERS else "", finding.field)
        return FileContext(finding, file.name, encoding, lines, fields)

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


    # -- bulk actions (the queue page's checkboxes) -------------------------------------------
    def selected(self, ids: list[int]) -> list[Delivery]:
        """The deliveries a bulk action names, in the order given; each must exist and be under review."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            raise BadRequest("select at least one delivery", "请至少选择一个报送", code="nothing_selected")
        if len(unique) > MAX_BULK:
            raise BadRequest(f"a bulk action takes at most {MAX_BULK} deliveries",
                             f"批量操作最多 {MAX_BULK} 个报送", code="too_many_selected")
        found = {d.id: d for d in self.session.scalars(select(Delivery).where(Delivery.id.in_(unique)))}
        missing = [i for i in unique if i not in found]
        if missing:
            raise NotFound(f"no delivery {missing[0]}", f"报送 {missing[0]} 不存在", code="delivery_not_found")
        out = [found[i] for i in unique]
        for d in out:
            self._in_queue(d)
        return out

    def bulk_mark_reviewed(self, actor: str, ids: list[int]) -> list[Delivery]:
        """Mark several deliveries reviewed (each audited as a single action would be); all or none."""
        deliveries = self.selected(ids)
        for d in deliveries:
            self.mark_reviewed(actor, d)
        return deliveries

    def bulk_comment(self, actor: str, ids: list[int], body: str) -> list[Delivery]:
        """One comment body to each selected delivery's sender (each its own comment, audited); all or none.

        The caller places the comment files (``deliver_comments``) after the commit, as for one comment.
        """
        deliveries = self.selected(ids)
        for d in deliveries:
            self.comment(actor, d, body)
        return deliveries


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
