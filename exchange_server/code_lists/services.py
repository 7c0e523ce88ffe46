"""Code-list versions added at run time, and the standard as it stands with them.

Services take a session (and the acting account's name) and raise the server's domain
errors; nothing here commits, so a change and its audit event land in one transaction.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas import Spec, SpecError, load_spec, with_code_versions

from ..audit.services import record
from ..clock import utcnow
from ..errors import BadRequest, Conflict, NotFound
from .models import PROPOSED, PUBLISHED, WITHDRAWN, CodeListVersionRecord

# The organisation tree is a code list too, but accounts, facts and slices hang off it:
# it changes only with a release of the standard and ``exchange-server init``.
ORG_DOMAINS = frozenset({"Domain_area_id"})


def published_additions(session: Session) -> list[dict[str, Any]]:
    """Every published version in publishing order, as :func:`schemas.with_code_versions` takes them."""
    rows = session.scalars(select(CodeListVersionRecord).where(CodeListVersionRecord.state == PUBLISHED)
                           .order_by(CodeListVersionRecord.published_at, CodeListVersionRecord.id))
    return [{"domain": r.domain, "version": r.as_version()} for r in rows]


def additions_text(additions: list[dict[str, Any]]) -> str:
    """The canonical JSON of some additions: the cache key of the Spec they make."""
    return json.dumps(additions, ensure_ascii=False, sort_keys=True) if additions else ""


def live_spec(session: Session, spec: Spec) -> Spec:
    """The standard in force now: the YAML ``spec`` was loaded from plus every published version.

    One small query per call; the Spec for a given set of versions is built once per process
    (``load_spec`` caches it), so a version published by any process is seen by all at their
    next call, with no restart.
    """
    text = additions_text(published_additions(session))
    if text == spec.code_additions:
        return spec
    return load_spec(spec.root or None, text)


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


class CodeListService:
    """Admin-added versions of a code list: propose, publish (in force from its date), withdraw.

    Every check is made against the standard as it stands now (the YAML and the versions
    already published), and publishing runs the spec loader's own checks, so a published
    version is one the loader would have accepted from the YAML.
    """

    def __init__(self, session: Session, spec: Spec, actor: str = "system") -> None:
        self.session = session
        self.spec = live_spec(session, spec)  # the YAML plus every published version
        self.actor = actor

    def _domain(self, name: str) -> Any:
        if name not in self.spec.domains:
            raise NotFound(f"no code domain {name!r}", f"代码域 {name} 不存在", code="domain_not_found")
        return self.spec.domain(name)

    def records(self, domain: str | None = None) -> list[CodeListVersionRecord]:
        """Versions added here (of one domain, or all), newest first."""
        q = select(CodeListVersionRecord).order_by(CodeListVersionRecord.created_at.desc(), CodeListVersionRecord.id.desc())
        if domain is not None:
            q = q.where(CodeListVersionRecord.domain == domain)
        return list(self.session.scalars(q))

    def counts(self) -> dict[str, int]:
        """Proposed (not yet published) versions per domain."""
        rows = self.session.execute(select(CodeListVersionRecord.domain, func.count()).where(
            CodeListVersionRecord.state == PROPOSED).group_by(CodeListVersionRecord.domain))
        return {d: n for d, n in rows}

    def published_counts(self) -> dict[str, int]:
        """Versions published here per domain."""
        rows = self.session.execute(select(CodeListVersionRecord.domain, func.count()).where(
            CodeListVersionRecord.state == PUBLISHED).group_by(CodeListVersionRecord.domain))
        return {d: n for d, n in rows}

    def get(self, draft_id: int) -> CodeListVersionRecord:
        """One added version; NotFound otherwise."""
        draft = self.session.get(CodeListVersionRecord, draft_id)
        if draft is None:
            raise NotFound(f"no proposed code-list version {draft_id}", f"拟议代码表版本 {draft_id} 不存在",
                           code="draft_not_found")
        return draft

    def propose(self, domain: str, version: str, effective_from: dt.date, based_on: str,
                add: Sequence[CodeChange] = (), update: Sequence[CodeChange] = (), remove: Sequence[str] = (),
                note_zh: str = "", note_en: str = "") -> CodeListVersionRecord:
        """Record a new effective-dated version as a delta on a version in force; BadRequest/Conflict when the loader would refuse it."""
        dom = self._domain(domain)
        version = version.strip()
        problems: list[dict[str, str]] = []

        def bad(en: str, zh: str, **where: str) -> None:
            problems.append({"message_en": en, "message_zh": zh, **where})

        if domain in ORG_DOMAINS:
            raise BadRequest(f"{domain} is the organisation tree; it changes with a release of the standard "
                             "(interface_specs/ and exchange-server init), not here",
                             f"{domain} 是组织机构树，须随标准发布修改（interface_specs/ 与 exchange-server init），不能在此修改",
                             code="domain_is_org_tree")
        if dom.kind != "enumerated":
            raise BadRequest(f"{domain} is defined by a pattern, not a list of codes", f"{domain} 由正则表达式定义，没有代码列表",
                             code="domain_is_pattern")
        if not version or len(version) > 20:
            bad("the version label needs 1 to 20 characters", "版本号须为1至20个字符", field="version")
        if any(v.version == version for v in dom.versions):
            raise Conflict(f"{domain} already has version {version}", f"{domain} 已有版本 {version}",
                           code="code_version_exists")
        if self.session.scalar(select(CodeListVersionRecord).where(CodeListVersionRecord.domain == domain,
                                                                  CodeListVersionRecord.version == version)):
            raise Conflict(f"version {version} of {domain} has already been proposed",
                           f"{domain} 的版本 {version} 已有记录", code="code_version_proposed")
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
        draft = CodeListVersionRecord(domain=domain, version=version, effective_from=effective_from, based_on=based_on,
                                     add=[c.as_dict() for c in add], update=[c.as_dict() for c in update],
                                     remove=list(remove), note_zh=note_zh.strip(), note_en=note_en.strip(),
                                     state=PROPOSED, created_by=self.actor)
        self.session.add(draft)
        self.session.flush()
        record(self.session, self.actor, "codes.propose", f"domain:{domain}", draft_id=draft.id, version=version,
               effective_from=effective_from.isoformat(), based_on=based_on, add=draft.add, update=draft.update,
               remove=draft.remove)
        return draft

    def publish(self, draft_id: int) -> CodeListVersionRecord:
        """Put a proposed version in force from its effective date; the spec loader's checks decide."""
        draft = self._proposed(draft_id)
        try:
            with_code_versions(self.spec, [{"domain": draft.domain, "version": draft.as_version()}])
        except SpecError as exc:
            raise BadRequest(f"version {draft.version} of {draft.domain} cannot be published: {exc.message}",
                             f"{draft.domain} 的版本 {draft.version} 无法发布：{exc.message}",
                             code="code_version_invalid", errors=[{"field": exc.key or "", "message_en": exc.message,
                                                                   "message_zh": exc.message}]) from None
        draft.state = PUBLISHED
        draft.published_by = self.actor
        draft.published_at = utcnow()
        self.session.flush()
        record(self.session, self.actor, "codes.publish", f"domain:{draft.domain}", draft_id=draft.id,
               version=draft.version, effective_from=draft.effective_from.isoformat(), based_on=draft.based_on,
               add=draft.add, update=draft.update, remove=draft.remove)
        return draft

    def _proposed(self, draft_id: int) -> CodeListVersionRecord:
        draft = self.get(draft_id)
        if draft.state != PROPOSED:
            raise Conflict(f"version {draft.version} of {draft.domain} is {draft.state}, not proposed",
                           f"{draft.domain} 的版本 {draft.version} 状态为 {draft.state}，不是拟议",
                           code="draft_not_proposed")
        return draft

    def withdraw(self, draft_id: int) -> CodeListVersionRecord:
        """Withdraw a proposed version (kept on record); a published one is corrected by a later version."""
        draft = self._proposed(draft_id)
        draft.state = WITHDRAWN
        record(self.session, self.actor, "codes.withdraw", f"domain:{draft.domain}", draft_id=draft.id,
               version=draft.version)
        return draft

    @staticmethod
    def snippet(draft: CodeListVersionRecord) -> str:
        """The ``versions:`` entry for ``interface_specs/code_lists/<domain>.yaml``, to fold into the next release of the standard."""
        entry = {**draft.as_version(), "effective_from": draft.effective_from}  # a YAML date, as the files have
        body = yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, width=120)
        return (f"# append under versions: in interface_specs/code_lists/{draft.domain}.yaml\n"
                f"# {draft.state} by {draft.published_by or draft.created_by} on "
                f"{(draft.published_at or draft.created_at):%Y-%m-%d}\n"
                + "".join(f"  {line}\n" for line in body.splitlines()))


def code_lists_document(session: Session, spec: Spec) -> dict[str, Any]:
    """What agents fetch: the standard's version and every published code-list version.

    ``additions`` is exactly what :func:`schemas.with_code_versions` takes, so an agent
    holding the same standard validates with the same codes as HQ.
    """
    additions = published_additions(session)
    return {"spec_version": spec.version, "additions": additions,
            "generation": hashlib.sha256(additions_text(additions).encode()).hexdigest()[:16]}
