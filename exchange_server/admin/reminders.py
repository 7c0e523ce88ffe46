"""Reminders before a deadline: who has not delivered a cycle's units yet, and telling them once per lead.

A *party* is what a province-role account sends as: a province at HQ, a local network at
a province hub. For each cycle open to the party (open, or closed but covered by a valid
exception for its province, whose end is then the party's deadline) the units due that
have no accepted version for the party (its own or, for a province, its networks') are
*missing*. ``reminder_days_before`` lists the leads (e.g. 3 and 1 days): once the deadline
is within a lead, the party gets one reminder for that lead — in its outbox
(``<cycle>.reminder.txt`` and ``reminders.json``, which SFTP agents read), on its pages,
through ``GET /api/v1/reminders`` (the agent's ``status``), and by e-mail to its accounts'
addresses when an SMTP server is configured. The ``reminder`` table makes each
(party, cycle, lead) be sent at most once, whoever sends first: the command, the
server's loop, or an admin's "send now".
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import Spec

from ..accounts.models import PROVINCE, Account
from ..clock import BEIJING, as_utc, beijing_stamp, iso, utcnow
from ..cycles.models import OPEN, ReportingCycle
from ..org.models import LOCAL_NETWORK, Area
from ..submissions.models import DataScope
from .models import CycleException, Reminder

log = logging.getLogger(__name__)

TEXT_SUFFIX = ".reminder.txt"
JSON_NAME = "reminders.json"


@dataclass(frozen=True)
class MissingUnit:
    """A unit due that has no accepted version for the party."""

    code: str
    name_zh: str
    name_en: str


@dataclass
class Due:
    """A party that has not delivered everything a cycle asks for, with the deadline that applies to it."""

    party: str
    party_zh: str
    party_en: str
    cycle: str
    cycle_name: str
    deadline: dt.datetime  # UTC; an exception's end when one is valid for the party's province
    exception: bool
    missing: list[MissingUnit]
    lead: int | None  # the lead (days) whose reminder is due now; None: not yet within any lead
    sent: list[Reminder] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    @property
    def sent_leads(self) -> set[int]:
        """The leads already sent for this party and cycle."""
        return {r.lead_days for r in self.sent}

    @property
    def pending(self) -> bool:
        """Whether a reminder is due now and not yet sent."""
        return self.lead is not None and self.lead not in self.sent_leads

    def left(self, now: dt.datetime) -> dt.timedelta:
        """Time left until the deadline."""
        return as_utc(self.deadline) - as_utc(now)

    def as_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The reminder as the API, ``reminders.json`` and the agent read it."""
        subject, body = render(self, self.lead or 0, now)
        return {"party": self.party, "cycle": self.cycle, "cycle_name": self.cycle_name,
                "deadline": iso(self.deadline), "deadline_beijing": beijing_stamp(self.deadline),
                "exception": self.exception, "lead_days": self.lead,
                "missing_units": [{"code": m.code, "name_zh": m.name_zh, "name_en": m.name_en} for m in self.missing],
                "sent": [{"lead_days": r.lead_days, "sent_at": iso(r.sent_at)} for r in self.sent],
                "subject": subject, "text": body}


def beijing_text(moment: dt.datetime) -> str:
    """``2026-11-10 18:00`` in Beijing time."""
    return as_utc(moment).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _left_text(left: dt.timedelta) -> tuple[str, str]:
    hours = max(0, int(left.total_seconds() // 3600))
    days, rest = divmod(hours, 24)
    if days:
        return f"{days} 天 {rest} 小时", f"{days} day{'s' if days != 1 else ''} {rest} h"
    return f"{hours} 小时", f"{hours} h"


def render(due: Due, lead: int, now: dt.datetime | None = None) -> tuple[str, str]:
    """The reminder's subject and text, Chinese then English, naming the cycle, the deadline and the units."""
    when = beijing_text(due.deadline)
    zh_left, en_left = _left_text(due.left(now or utcnow()))
    subject = (f"【催报】{due.cycle_name}（{due.cycle}）报送截止 {when}，尚缺 {len(due.missing)} 个单元 / "
               f"Reminder: cycle {due.cycle} is due {when} (Beijing), {len(due.missing)} unit(s) missing")
    units_zh = "\n".join(f"  - {m.code} {m.name_zh}" for m in due.missing)
    units_en = "\n".join(f"  - {m.code} {m.name_en}" for m in due.missing)
    why_zh = "（已按周期例外延期）" if due.exception else ""
    why_en = " (moved by an exception granted to your province)" if due.exception else ""
    body = (f"{due.party_zh}（{due.party}）：\n\n"
            f"报告周期 {due.cycle_name}（{due.cycle}）的报送截止时间为 {when}（北京时间）{why_zh}，距截止还有约 {zh_left}。\n"
            f"以下单元尚未被总部采纳，请在截止前报送：\n{units_zh}\n\n"
            f"已报送但被拒收的单元也需要重报。报送后可在省公司页面或 province-agent status 中查看结果。\n"
            f"（截止前 {lead} 天提醒；每个提醒只发送一次。）\n\n"
            f"---\n\n"
            f"{due.party_en} ({due.party}):\n\n"
            f"Cycle {due.cycle} is due {when} Beijing time{why_en}, in about {en_left}.\n"
            f"These units have no accepted delivery yet; please send them before the deadline:\n{units_en}\n\n"
            f"A unit sent but rejected must be sent again. The province pages and `province-agent status` "
            f"show the verdict.\n"
            f"({lead}-day reminder; each reminder is sent once.)\n")
    return subject, body


def party_set(areas: dict[str, Area], party: str) -> frozenset[str]:
    """Whose accepted data counts for a party: a province and its networks; a network itself (as the province pages)."""
    area = areas.get(party)
    if area is None or area.level == LOCAL_NETWORK:
        return frozenset({party})
    return frozenset({party, *(a.code for a in areas.values() if a.parent_code == party)})


def province_of(areas: dict[str, Area], party: str) -> str:
    """The province of a party (itself, or a network's parent)."""
    area = areas.get(party)
    if area is not None and area.level == LOCAL_NETWORK and area.parent_code:
        return area.parent_code
    return party


class ReminderService:
    """Works out who is due a reminder and records what was sent (nothing here commits or sends)."""

    def __init__(self, session: Session, spec: Spec, leads: Iterable[int] = (3, 1)) -> None:
        self.session = session
        self.spec = spec
        self.leads = tuple(sorted(set(leads), reverse=True))

    def parties(self) -> list[str]:
        """Every party an active province-role account sends as."""
        return sorted({p for p in self.session.scalars(
            select(Account.party).where(Account.role == PROVINCE, Account.active.is_(True))) if p})

    def lead_for(self, left: dt.timedelta) -> int | None:
        """The smallest lead the time left is within (the most urgent reminder), None if not within any."""
        within = [d for d in self.leads if left <= dt.timedelta(days=d)]
        return min(within) if within else None

    def outstanding(self, now: dt.datetime | None = None, parties: Iterable[str] | None = None,
                    horizon: dt.timedelta | None = None) -> list[Due]:
        """Parties with units missing in cycles open to them whose deadline is ahead (within ``horizon``, if given).

        Sorted by deadline, then party. ``horizon`` None: every future deadline (the admin page).
        """
        now = as_utc(now or utcnow())
        wanted = sorted(set(parties)) if parties is not None else self.parties()
        if not wanted:
            return []
        areas = {a.code: a for a in self.session.scalars(select(Area))}
        cycles = list(self.session.scalars(select(ReportingCycle)))
        exceptions: dict[tuple[str, str], dt.datetime] = {}
        for e in self.session.scalars(select(CycleException).where(CycleException.revoked_at.is_(None),
                                                                   CycleException.until >= now)):
            key = (e.province, e.cycle_id)
            if key not in exceptions or as_utc(e.until) > exceptions[key]:
                exceptions[key] = as_utc(e.until)
        considered = [c for c in cycles if c.state == OPEN or any(k[1] == c.id for k in exceptions)]
        if not considered:
            return []
        counted = select(DataScope.party, DataScope.cycle, DataScope.unit).where(
            DataScope.cycle.in_([c.id for c in considered]), DataScope.current_version_id.is_not(None))
        if parties is not None:  # one party's page or API call: only its own scopes
            counted = counted.where(DataScope.party.in_(set().union(*(party_set(areas, p) for p in wanted))))
        accepted: set[tuple[str, str, str]] = {(p, c, u) for p, c, u in self.session.execute(counted)}
        sent: dict[tuple[str, str], list[Reminder]] = {}
        for r in self.session.scalars(select(Reminder).where(Reminder.cycle.in_([c.id for c in considered]))
                                      .order_by(Reminder.sent_at)):
            sent.setdefault((r.party, r.cycle), []).append(r)
        emails: dict[str, list[str]] = {}
        for party, email in self.session.execute(
                select(Account.party, Account.email).where(Account.role == PROVINCE, Account.active.is_(True),
                                                           Account.email.is_not(None)).order_by(Account.name)):
            if party and email and email.strip():
                emails.setdefault(party, []).append(email.strip())
        out = []
        for party in wanted:
            own = party_set(areas, party)
            province = province_of(areas, party)
            area = areas.get(party)
            for c in considered:
                until = exceptions.get((province, c.id))
                if c.state != OPEN and until is None:
                    continue  # closed for this party: no exception lets it deliver
                deadline = until or as_utc(c.deadline)
                left = deadline - now
                if left <= dt.timedelta(0) or (horizon is not None and left > horizon):
                    continue
                missing = [self._unit(u) for u in c.units if not any((p, c.id, u) in accepted for p in own)]
                if not missing:
                    continue
                out.append(Due(party, area.name_zh if area else party, area.name_en if area else party, c.id, c.name,
                               deadline, until is not None, missing, self.lead_for(left),
                               sent.get((party, c.id), []), emails.get(party, [])))
        return sorted(out, key=lambda d: (d.deadline, d.cycle, d.party))

    def _unit(self, code: str) -> MissingUnit:
        if self.spec.has_unit(code):
            u = self.spec.unit(code)
            return MissingUnit(code, u.name_zh, u.name_en)
        return MissingUnit(code, code, code)

    def for_party(self, party: str, now: dt.datetime | None = None) -> list[Due]:
        """The party's reminders in force now: cycles within the largest lead of their deadline, units missing."""
        if not self.leads:
            return []
        return self.outstanding(now, [party], dt.timedelta(days=max(self.leads)))

    def to_send(self, now: dt.datetime | None = None) -> list[Due]:
        """Every reminder due now and not sent yet."""
        if not self.leads:
            return []
        return [d for d in self.outstanding(now, horizon=dt.timedelta(days=max(self.leads))) if d.pending]

    def history(self, limit: int = 200) -> list[Reminder]:
        """Reminders sent, newest first."""
        return list(self.session.scalars(select(Reminder).order_by(Reminder.sent_at.desc(), Reminder.id.desc())
                                         .limit(limit)))

    def claim(self, due: Due, actor: str) -> Reminder | None:
        """Record the reminder as sent (before sending: at most once); None if another sender was first.

        Meant for a session of its own: a refused record rolls the session back.
        """
        assert due.lead is not None
        reminder = Reminder(party=due.party, cycle=due.cycle, lead_days=due.lead, deadline=due.deadline,
                            missing_units=[m.code for m in due.missing], sent_by=actor)
        self.session.add(reminder)
        try:
            self.session.flush()
        except IntegrityError:  # the unique (party, cycle, lead) key: it is someone else's now
            self.session.rollback()
            return None
        return reminder


def set_email(session: Session, actor: str, account_name: str, email: str) -> Account:
    """Set (or, with an empty ``email``, clear) the address an account's reminders are e-mailed to (audited)."""
    from ..accounts.services import AccountService
    from ..audit.services import record
    from ..errors import BadRequest

    account = AccountService(session).get(account_name)
    email = email.strip()
    if email and (len(email) > 254 or email.count("@") != 1 or any(c.isspace() or c in ",;<>" for c in email)
                  or not all(email.split("@"))):
        raise BadRequest(f"{email!r} is not an e-mail address", f"{email!r} 不是电子邮件地址", code="bad_email")
    before = account.email
    account.email = email or None
    record(session, actor, "account.email", f"account:{account.name}", before=before, after=account.email)
    return account


# -- sending ---------------------------------------------------------------------------------


@dataclass
class Sent:
    """What one send did (or, dry, would do) for one party and cycle."""

    party: str
    cycle: str
    lead: int
    deadline: dt.datetime
    missing: list[str]
    emails: list[str]
    outbox_file: str | None = None
    emailed: list[str] = field(default_factory=list)
    email_error: str | None = None
    skipped: bool = False  # another sender recorded it first

    def line(self) -> str:
        """One line for the command's output."""
        mail = (f"e-mailed {', '.join(self.emailed)}" if self.emailed else
                f"e-mail failed: {self.email_error}" if self.email_error else
                f"would e-mail {', '.join(self.emails)}" if self.emails and self.outbox_file is None else "no e-mail")
        return (f"{self.party:<5} {self.cycle:<7} {self.lead}d  due {beijing_text(self.deadline)} Beijing  "
                f"missing {','.join(self.missing)}  outbox {self.outbox_file or '-'}  {mail}")


def send_reminders(rt: Any, actor: str = "system", dry_run: bool = False, now: dt.datetime | None = None) -> list[Sent]:
    """Send every reminder due now and not sent yet: outbox, e-mail; recorded once per party x cycle x lead.

    ``dry_run``: say what would be sent, change nothing. Each reminder is recorded and
    committed before it is sent, so two senders never both send it; a failed e-mail is
    kept on the record (the outbox file is there regardless) and not retried.
    """
    from ..sftp.outbox import place

    now = as_utc(now or utcnow())
    leads = rt.settings.reminder_leads
    with rt.db.session() as s:
        dues = ReminderService(s, rt.spec, leads).to_send(now)
        plans = [(d, render(d, d.lead or 0, now)) for d in dues]
        out = [Sent(d.party, d.cycle, d.lead or 0, d.deadline, [m.code for m in d.missing], list(d.emails))
               for d in dues]
    if dry_run:
        return out
    for (due, (subject, body)), result in zip(plans, out):
        with rt.db.session() as s:
            claimed = ReminderService(s, rt.spec, leads).claim(due, actor)
            reminder_id = claimed.id if claimed else None
        if reminder_id is None:
            result.skipped = True
            continue
        name = f"{due.cycle}{TEXT_SUFFIX}"
        place(rt, due.party, name, rt.archive.put_bytes((subject + "\n\n" + body).encode("utf-8")), "reminder")
        result.outbox_file = name
        if due.emails and rt.settings.smtp_host:
            from .mail import send_mail

            try:
                send_mail(rt.settings, due.emails, subject, body)
                result.emailed = list(due.emails)
            except (OSError, smtplib.SMTPException) as exc:  # the server is down or refuses: keep it on record
                result.email_error = f"{type(exc).__name__}: {exc}"[:1000]
                log.warning("reminder %s %s: e-mail to %s failed: %s", due.party, due.cycle, due.emails, exc)
        with rt.db.session() as s:
            r = s.get(Reminder, reminder_id)
            if r is not None:
                r.outbox_file, r.emailed_to, r.email_error = name, result.emailed, result.email_error
    refresh_party_files(rt, now)
    return out


def refresh_party_files(rt: Any, now: dt.datetime | None = None) -> list[str]:
    """Rewrite ``reminders.json`` in the outbox of every party ever reminded whose reminders changed; their codes.

    A party that has delivered since (or whose deadline passed) gets the file with the
    reminder gone, so an SFTP agent stops showing it.
    """
    from ..sftp.outbox import place, trees

    now = as_utc(now or utcnow())
    with rt.db.session() as s:
        parties = sorted(set(s.scalars(select(Reminder.party).distinct())))
        service = ReminderService(s, rt.spec, rt.settings.reminder_leads)
        current: dict[str, list[dict[str, Any]]] = {p: [] for p in parties}
        if parties and service.leads:  # one pass over every party, not one per party
            for d in service.outstanding(now, parties, dt.timedelta(days=max(service.leads))):
                if d.sent:
                    current[d.party].append(d.as_dict(now))
    changed = []
    for party, items in current.items():
        doc = {"party": party, "reminders": items}
        try:
            old = json.loads((trees(rt)[0].outbox(party) / JSON_NAME).read_text("utf-8"))
            old.pop("generated", None)
        except (OSError, ValueError):
            old = None
        if old is not None and _stable(old) == _stable(doc):
            continue
        if old is None and not items:
            continue
        data = json.dumps({**doc, "generated": iso(now)}, ensure_ascii=False, indent=1).encode("utf-8")
        place(rt, party, JSON_NAME, rt.archive.put_bytes(data), "reminder")
        changed.append(party)
    return changed


def _stable(doc: dict[str, Any]) -> Any:
    """A reminders document without what changes by the hour (texts naming the time left)."""
    return [{k: v for k, v in r.items() if k not in ("subject", "text")} for r in doc.get("reminders", [])]


def reminders_forever(rt: Any, stop: Any) -> None:
    """``serve``'s loop: send the reminders due every ``reminder_check_seconds`` (0: never) until ``stop`` is set."""
    period = rt.settings.reminder_check_seconds
    if period <= 0 or not rt.settings.reminder_leads:
        return
    while not stop.wait(period):
        try:
            for r in send_reminders(rt, "system"):
                log.info("reminder: %s", r.line())
        except Exception as exc:  # a database or disk hiccup must not end the loop; the next round retries
            log.error("sending reminders failed (retried in %s s): %s", period, exc)
