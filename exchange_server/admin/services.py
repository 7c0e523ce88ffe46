"""The admin console's rules: cycle exceptions, proposed code-list versions, sign-in lockout, audit search.

Services take a session (and the acting account's name) and raise the server's domain
errors; nothing here commits, so a change and its audit event land in one transaction.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import String, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from schemas import Spec

from ..audit.models import AuditEvent
from ..audit.services import record
from ..clock import as_utc, iso, utcnow
from ..cycles.models import ReportingCycle
from ..errors import BadRequest, Conflict, NotFound
from ..org.models import PROVINCE, Area
from .models import PROPOSED, WITHDRAWN, CodeListVersionDraft, CycleException, LoginAttempt

# -- cycle exceptions -------------------------------------------------------------------------


class CycleExceptionService:
    """Time-limited permission for one province to deliver to a closed (or overdue) cycle."""

    def __init__(self, session: Session, actor: str = "system") -> None:
        self.session = session
        self.actor = actor

    def grant(self, cycle_id: str, province: str, until: dt.datetime, reason: str) -> CycleException:
        """Let ``province`` deliver to ``cycle_id`` until ``until`` (aware, in the future), for ``reason``."""
        if self.session.get(ReportingCycle, cycle_id) is None:
            raise NotFound(f"cycle {cycle_id} is not in the reporting calendar", f"周期 {cycle_id} 不在报告日历中",
                           code="cycle_not_found")
        area = self.session.get(Area, province)
        if area is None or area.level != PROVINCE:
            raise BadRequest(f"{province!r} is not a province code", f"{province!r} 不是省份编码", code="bad_province")
        if until.tzinfo is None:
            raise BadRequest("the end of the exception needs a time zone", "例外截止时间需要时区", code="bad_until")
        if as_utc(until) <= utcnow():
            raise BadRequest("the exception must end in the future", "例外截止时间须晚于当前时间", code="bad_until")
        reason = reason.strip()
        if not reason:
            raise BadRequest("give a reason for the exception", "请填写例外原因", code="reason_missing")
        if len(reason) > 500:
            raise BadRequest("the reason is longer than 500 characters", "原因超过500个字符", code="reason_too_long")
        exc = CycleException(cycle_id=cycle_id, province=province, until=as_utc(until), reason=reason,
                             granted_by=self.actor)
        self.session.add(exc)
        self.session.flush()
        record(self.session, self.actor, "cycle.exception.grant", f"cycle:{cycle_id}", exception_id=exc.id,
               province=province, until=iso(exc.until), reason=reason)
        return exc

    def revoke(self, exception_id: int) -> CycleException:
        """End an exception at once (it stays on record)."""
        exc = self.session.get(CycleException, exception_id)
        if exc is None:
            raise NotFound(f"no cycle exception {exception_id}", f"周期例外 {exception_id} 不存在",
                           code="exception_not_found")
        if exc.revoked_at is None:
            exc.revoked_at = utcnow()
            exc.revoked_by = self.actor
            record(self.session, self.actor, "cycle.exception.revoke", f"cycle:{exc.cycle_id}",
                   exception_id=exc.id, province=exc.province)
        return exc

    def listing(self, cycle_id: str | None = None) -> list[CycleException]:
        """Exceptions (of one cycle, or all), newest first."""
        q = select(CycleException).order_by(CycleException.granted_at.desc(), CycleException.id.desc())
        if cycle_id is not None:
            q = q.where(CycleException.cycle_id == cycle_id)
        return list(self.session.scalars(q))

    def valid(self, cycle_id: str, province: str, at: dt.datetime) -> CycleException | None:
        """The exception covering a delivery of ``province`` to ``cycle_id`` received at ``at`` (latest end), or None."""
        return self.session.scalars(
            select(CycleException).where(CycleException.cycle_id == cycle_id, CycleException.province == province,
                                         CycleException.revoked_at.is_(None), CycleException.until >= as_utc(at))
            .order_by(CycleException.until.desc()).limit(1)).first()


# -- proposed code-list versions ------------------------------------------------------------


@dataclass(frozen=True)
class CodeChange:
    """One code to add or update: only the attributes given are set (update keeps the rest)."""

    code: str
    name_zh: str = ""
    name_en: str = ""
    parent: str = ""
    level: str = ""

    def as_dict(self) -> dict[str, str]:
        """The YAML/JSON mapping: the code and the non-empty attributes."""
        out = {"code": self.code}
        for key in ("name_zh", "name_en", "parent", "level"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one), Chinese kept readable."""
    return json.dumps(text, ensure_ascii=False)


def _yaml_map(item: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {_yaml_str(v)}" for k, v in item.items()) + "}"


class CodeDraftService:
    """Admin-proposed versions of a code list, checked as the spec loader would check them.

    The standard's YAML under ``interface_specs/code_lists/`` is the source of truth and is
    loaded once per process; a draft changes nothing until someone merges its snippet there
    and the server restarts.
    """

    def __init__(self, session: Session, spec: Spec, actor: str = "system") -> None:
        self.session = session
        self.spec = spec
        self.actor = actor

    def _domain(self, name: str) -> Any:
        if name not in self.spec.domains:
            raise NotFound(f"no code domain {name!r}", f"代码域 {name} 不存在", code="domain_not_found")
        return self.spec.domain(name)

    def drafts(self, domain: str | None = None) -> list[CodeListVersionDraft]:
        """Drafts (of one domain, or all), newest first."""
        q = select(CodeListVersionDraft).order_by(CodeListVersionDraft.created_at.desc(), CodeListVersionDraft.id.desc())
        if domain is not None:
            q = q.where(CodeListVersionDraft.domain == domain)
        return list(self.session.scalars(q))

    def counts(self) -> dict[str, int]:
        """Proposed drafts per domain."""
        rows = self.session.execute(select(CodeListVersionDraft.domain, func.count()).where(
            CodeListVersionDraft.state == PROPOSED).group_by(CodeListVersionDraft.domain))
        return {d: n for d, n in rows}

    def get(self, draft_id: int) -> CodeListVersionDraft:
        """One draft; NotFound otherwise."""
        draft = self.session.get(CodeListVersionDraft, draft_id)
        if draft is None:
            raise NotFound(f"no proposed code-list version {draft_id}", f"拟议代码表版本 {draft_id} 不存在",
                           code="draft_not_found")
        return draft

    def propose(self, domain: str, version: str, effective_from: dt.date, based_on: str,
                add: Sequence[CodeChange] = (), update: Sequence[CodeChange] = (), remove: Sequence[str] = (),
                note_zh: str = "", note_en: str = "") -> CodeListVersionDraft:
        """Record a new effective-dated version as a delta on a version in force; BadRequest/Conflict when the loader would refuse it."""
        dom = self._domain(domain)
        version = version.strip()
        problems: list[dict[str, str]] = []

        def bad(en: str, zh: str, **where: str) -> None:
            problems.append({"message_en": en, "message_zh": zh, **where})

        if dom.kind != "enumerated":
            raise BadRequest(f"{domain} is defined by a pattern, not a list of codes", f"{domain} 由正则表达式定义，没有代码列表",
                             code="domain_is_pattern")
        if not version or len(version) > 20:
            bad("the version label needs 1 to 20 characters", "版本号须为1至20个字符", field="version")
        if any(v.version == version for v in dom.versions):
            raise Conflict(f"{domain} already has version {version}", f"{domain} 已有版本 {version}",
                           code="code_version_exists")
        if self.session.scalar(select(CodeListVersionDraft).where(CodeListVersionDraft.domain == domain,
                                                                  CodeListVersionDraft.version == version)):
            raise Conflict(f"version {version} of {domain} has already been proposed",
                           f"{domain} 的版本 {version} 已有拟议记录", code="code_version_proposed")
        base = next((v for v in dom.versions if v.version == based_on), None)
        if base is None:
            raise BadRequest(f"{based_on!r} is not a version of {domain}", f"{based_on!r} 不是 {domain} 的版本",
                             code="bad_based_on")
        last = dom.versions[-1]
        if effective_from <= last.effective_from:
            bad(f"the new version must take effect after {last.version} ({last.effective_from:%Y-%m-%d})",
                f"新版本的生效日期须晚于 {last.version}（{last.effective_from:%Y-%m-%d}）", field="effective_from")
        if not (add or update or remove):
            bad("add, change or remove at least one code", "请至少新增、修改或删除一个代码", field="changes")
        codes = {c: e for c, e in base.codes.items()}
        for code in remove:
            if code not in codes:
                bad(f"cannot remove {code}: not in version {based_on}", f"无法删除 {code}：版本 {based_on} 中没有", field="remove",
                    code=code)
            codes.pop(code, None)
        parents: dict[str, str | None] = {c: e.parent for c, e in codes.items()}
        for ch in update:
            if ch.code not in codes:
                bad(f"cannot change {ch.code}: not in version {based_on}", f"无法修改 {ch.code}：版本 {based_on} 中没有",
                    field="update", code=ch.code)
            elif len(ch.as_dict()) == 1:
                bad(f"nothing to change for {ch.code}", f"{ch.code} 没有要修改的内容", field="update", code=ch.code)
            elif ch.parent:
                parents[ch.code] = ch.parent
        for ch in add:
            if ch.code in codes or ch.code in parents:
                bad(f"cannot add {ch.code}: already in version {based_on}", f"无法新增 {ch.code}：版本 {based_on} 中已有",
                    field="add", code=ch.code)
            if not ch.name_zh or not ch.name_en:
                bad(f"code {ch.code} needs a Chinese and an English name", f"代码 {ch.code} 需要中文和英文名称", field="add",
                    code=ch.code)
            if len(ch.code) > dom.max_length:
                bad(f"code {ch.code} is longer than the domain's {dom.max_length} characters",
                    f"代码 {ch.code} 超过该代码域的长度 {dom.max_length}", field="add", code=ch.code)
            parents[ch.code] = ch.parent or None
        for code, parent in parents.items():
            if parent and parent not in parents:
                bad(f"code {code} has parent {parent}, which is not in the new version",
                    f"代码 {code} 的上级 {parent} 不在新版本中", field="parent", code=code)
        if problems:
            raise BadRequest(f"the proposed version of {domain} is not valid", f"{domain} 的拟议版本不合规",
                             code="code_version_invalid", errors=problems)
        draft = CodeListVersionDraft(domain=domain, version=version, effective_from=effective_from, based_on=based_on,
                                     add=[c.as_dict() for c in add], update=[c.as_dict() for c in update],
                                     remove=list(remove), note_zh=note_zh.strip(), note_en=note_en.strip(),
                                     state=PROPOSED, created_by=self.actor)
        self.session.add(draft)
        self.session.flush()
        record(self.session, self.actor, "codes.propose", f"domain:{domain}", draft_id=draft.id, version=version,
               effective_from=effective_from.isoformat(), based_on=based_on, add=draft.add, update=draft.update,
               remove=draft.remove)
        return draft

    def withdraw(self, draft_id: int) -> CodeListVersionDraft:
        """Mark a proposal as withdrawn (kept on record)."""
        draft = self.get(draft_id)
        if draft.state != PROPOSED:
            raise Conflict(f"proposal {draft_id} is {draft.state}", f"拟议 {draft_id} 的状态为 {draft.state}",
                           code="draft_not_proposed")
        draft.state = WITHDRAWN
        record(self.session, self.actor, "codes.withdraw", f"domain:{draft.domain}", draft_id=draft.id,
               version=draft.version)
        return draft

    @staticmethod
    def snippet(draft: CodeListVersionDraft) -> str:
        """The ``versions:`` entry to append to ``interface_specs/code_lists/<domain>.yaml`` (see interface_specs/README.md)."""
        lines = [f"# append under versions: in interface_specs/code_lists/{draft.domain}.yaml",
                 f"# proposed by {draft.created_by} on {draft.created_at:%Y-%m-%d}; not in force until merged",
                 f"  - version: {_yaml_str(draft.version)}",
                 f"    effective_from: {draft.effective_from:%Y-%m-%d}",
                 f"    based_on: {_yaml_str(draft.based_on)}"]
        if draft.note_zh:
            lines.append(f"    note_zh: {_yaml_str(draft.note_zh)}")
        if draft.note_en:
            lines.append(f"    note_en: {_yaml_str(draft.note_en)}")
        if draft.add:
            lines.append("    add:")
            lines += [f"      - {_yaml_map(item)}" for item in draft.add]
        if draft.update:
            lines.append("    update:")
            lines += [f"      - {_yaml_map(item)}" for item in draft.update]
        if draft.remove:
            lines.append(f"    remove: [{', '.join(_yaml_str(c) for c in draft.remove)}]")
        return "\n".join(lines) + "\n"


# -- sign-in lockout --------------------------------------------------------------------------

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)


class LoginGuard:
    """Locks a sign-in name for 15 minutes after 5 wrong passwords within 15 minutes.

    Names are tracked whether or not such an account exists, so the lockout does not tell
    which accounts exist. Refused attempts during a lockout are not counted (the lock does
    not extend itself); a successful sign-in clears the name's failures.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def _failures(self, name: str, now: dt.datetime) -> list[dt.datetime]:
        since = now - FAILURE_WINDOW - LOCKOUT
        return [as_utc(t) for t in self.session.scalars(
            select(LoginAttempt.at).where(LoginAttempt.account_name == name, LoginAttempt.ok.is_(False),
                                          LoginAttempt.at >= since).order_by(LoginAttempt.at))]

    def locked_until(self, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
        """When the name's lockout ends, if it is locked now."""
        now = now or utcnow()
        times = self._failures(name, now)
        until = None
        for i in range(MAX_FAILURES - 1, len(times)):
            if times[i] - times[i - MAX_FAILURES + 1] <= FAILURE_WINDOW:
                until = times[i] + LOCKOUT
        return until if until is not None and until > now else None

    def failed(self, name: str, remote: str | None = None, now: dt.datetime | None = None) -> dt.datetime | None:
        """Count a wrong password; returns when the lockout ends if this failure starts one (audited)."""
        now = now or utcnow()
        self.session.add(LoginAttempt(account_name=name[:64], at=now, ok=False))
        self.session.flush()
        until = self.locked_until(name, now)
        if until is not None:
            record(self.session, "system", "auth.lockout", f"account:{name[:100]}", failures=MAX_FAILURES,
                   window_minutes=int(FAILURE_WINDOW.total_seconds() // 60), until=iso(until), remote=remote)
        return until

    def succeeded(self, name: str, now: dt.datetime | None = None) -> None:
        """A successful sign-in: clear the name's failures and note the success."""
        self.session.execute(delete(LoginAttempt).where(LoginAttempt.account_name == name,
                                                        LoginAttempt.ok.is_(False)))
        self.session.add(LoginAttempt(account_name=name[:64], at=now or utcnow(), ok=True))


# -- audit search -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """What to look for in the audit log; empty fields match everything."""

    actor: str = ""
    action: str = ""  # a prefix: "cycle." finds every cycle change
    target: str = ""  # a prefix: "cycle:202610", "account:"
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive
    text: str = ""  # anywhere in the detail
    page: int = 1
    per_page: int = 50


@dataclass
class AuditPage:
    """One page of matching events, newest first."""

    events: list[AuditEvent]
    total: int
    page: int
    per_page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.pages = max(1, -(-self.total // self.per_page))


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditSearch:
    """Reads the append-only audit log (there is no way to change it here or anywhere)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def search(self, q: AuditQuery) -> AuditPage:
        """Events matching ``q``, newest first, one page."""
        conds = []
        if q.actor:
            conds.append(AuditEvent.actor == q.actor)
        if q.action:
            conds.append(AuditEvent.action.like(_like(q.action) + "%", escape="\\"))
        if q.target:
            conds.append(AuditEvent.target.like(_like(q.target) + "%", escape="\\"))
        if q.since is not None:
            conds.append(AuditEvent.at >= q.since)
        if q.until is not None:
            conds.append(AuditEvent.at < q.until)
        if q.text:
            # The detail is stored as JSON text, non-ASCII escaped (\uXXXX): look for both spellings.
            detail = cast(AuditEvent.detail, String)
            spellings = {q.text, json.dumps(q.text)[1:-1]}
            conds.append(or_(*(detail.ilike("%" + _like(s) + "%", escape="\\") for s in spellings)))
        total = self.session.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0
        per_page = min(max(q.per_page, 1), 500)
        page = max(q.page, 1)
        events = list(self.session.scalars(select(AuditEvent).where(*conds)
                                           .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                                           .offset((page - 1) * per_page).limit(per_page)))
        return AuditPage(events, total, page, per_page)

    def actors(self) -> list[str]:
        """Every actor that appears in the log (for the filter's suggestions)."""
        return list(self.session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)))
