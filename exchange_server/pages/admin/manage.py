"""The admin console's management pages: cycles (and exceptions), code lists, accounts, audit (the list: lists.py).

Views parse the form, ask a service, commit once and redirect (a change and its audit
event commit together); a refused action shows the same page again with the reason and
the error's status. Work that must follow a commit (the calendar and list slices into the
SFTP outboxes) runs after it. Every route is for admin accounts only; every POST carries
the session's CSRF token (checked by the blueprint).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import abort, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from ...accounts.models import ADMIN, ANALYST, PROVINCE, ROLES, ApiToken
from ...accounts.services import AccountService
from ...admin.calendar_impact import CalendarImpactService
from ...admin.services import AuditQuery, AuditSearch, CycleExceptionService
from ...clock import BEIJING, utcnow
from ...code_lists.services import ORG_DOMAINS, CodeListService
from ...cycles.models import STATES as CYCLE_STATES
from ...cycles.services import CycleService
from ...db import get_session
from ...errors import BadRequest, ExchangeError
from ...org.models import LOCAL_NETWORK, Area
from ...org.services import OrgService
from ...runtime.flask import runtime
from ...sftp import outbox
from ..auth import keep_session, login_required
from . import bp, forms
from .actions import actor, after_commit, done, refused

log = logging.getLogger(__name__)

AUDIT_PAGE = 50


# -- cycles -----------------------------------------------------------------------------------


def _cycles(error: ExchangeError | None = None, form: dict[str, str] | None = None) -> str:
    session = get_session()
    cycles = CycleService(session, runtime().spec).calendar()
    exceptions = CycleExceptionService(session).listing()
    provinces = OrgService(session).provinces()
    now = utcnow()
    # The exception form proposes the open cycle (the newest open one), where exceptions are asked for.
    default_cycle = next((c.id for c in cycles if c.state == "open"), cycles[0].id if cycles else "")
    return render_template("admin/cycles.html", cycles=cycles, exceptions=exceptions, provinces=provinces,
                           names={p.code: p.name_zh for p in provinces}, now=now, error=error, form=form or {},
                           names_en={p.code: p.name_en for p in provinces}, default_cycle=default_cycle,
                           local=forms.beijing_local, default_until=forms.beijing_local(now + dt.timedelta(days=3)),
                           states=CYCLE_STATES)


def _calendar_changed() -> None:
    after_commit("日历同步到SFTP发件箱", "placing the calendar in the SFTP outboxes",
                  lambda: outbox.place_calendar(runtime()))


@bp.get("/cycles")
@login_required(ADMIN)
def cycles() -> str:
    """The reporting calendar with its exceptions, and the forms that change them."""
    return _cycles()


@bp.post("/cycles")
@login_required(ADMIN)
def cycle_create() -> Any:
    """Add a cycle to the calendar (planned, or open at once)."""
    f = request.form
    try:
        deadline = forms.beijing_datetime(f["deadline"], "deadline 截止时间") if f.get("deadline", "").strip() else None
        cycle = CycleService(get_session(), runtime().spec, actor()).create(
            f.get("cycle_id", "").strip(), deadline, f.get("units_due", "").strip() or None,
            f.get("name", "").strip() or None, f.get("remark", "").strip(),
            state="open" if f.get("open") else "planned")
    except ExchangeError as exc:
        return refused(exc, _cycles, form=dict(f))
    response = done(f"已创建周期 {cycle.id}", f"cycle {cycle.id} created", "admin.cycles")
    _calendar_changed()
    return response


@bp.post("/cycles/<cycle_id>/<any(open, close, reopen):action>")
@login_required(ADMIN)
def cycle_move(cycle_id: str, action: str) -> Any:
    """Open, close or reopen a cycle; closing is done only once its impact was shown and confirmed."""
    session = get_session()
    if action == "close" and not _confirmed():
        # Closing turns every later delivery into E601: show who that hits first (409: nothing done).
        return _confirm_close(cycle_id, asked="confirm" in request.form)
    svc = CycleService(session, runtime().spec, actor())
    try:
        {"open": svc.open, "close": svc.close, "reopen": svc.reopen}[action](cycle_id)
    except ExchangeError as exc:
        return refused(exc, _cycles)
    zh = {"open": "已开放", "close": "已关闭", "reopen": "已重新开放"}[action]
    en = {"open": "opened", "close": "closed", "reopen": "reopened"}[action]
    response = done(f"周期 {cycle_id} {zh}", f"cycle {cycle_id} {en}", "admin.cycles")
    _calendar_changed()
    return response


def _confirm_close(cycle_id: str, asked: bool) -> Any:
    """The confirmation page of closing a cycle, with its impact; 200 when first shown, 409 when not ticked."""
    try:
        impact = CalendarImpactService(get_session()).close(cycle_id)
    except ExchangeError as exc:
        return refused(exc, _cycles)
    html = render_template("admin/calendar_confirm.html", kind="close", close=impact, unticked=asked,
                           names=_area_names())
    return html, 409 if asked else 200


def _confirmed() -> bool:
    """The confirmation box was ticked (the form also sends confirm=no, so an unticked submit is told apart)."""
    return "yes" in request.form.getlist("confirm")


def _area_names() -> dict[str, tuple[str, str]]:
    return {p.code: (p.name_zh, p.name_en) for p in OrgService(get_session()).provinces()}


@bp.post("/cycles/<cycle_id>/deadline")
@login_required(ADMIN)
def cycle_deadline(cycle_id: str) -> Any:
    """Move a cycle's deadline (entered in Beijing time)."""
    try:
        deadline = forms.beijing_datetime(request.form.get("deadline", ""), "deadline 截止时间")
        CycleService(get_session(), runtime().spec, actor()).set_deadline(cycle_id, deadline)
    except ExchangeError as exc:
        return refused(exc, _cycles)
    stamp = deadline.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    response = done(f"周期 {cycle_id} 截止时间改为 {stamp}（北京时间）",
                     f"cycle {cycle_id} deadline moved to {stamp} Beijing time", "admin.cycles")
    _calendar_changed()
    return response


@bp.post("/cycles/exceptions")
@login_required(ADMIN)
def exception_grant() -> Any:
    """Let one province deliver to a closed or overdue cycle until a given time."""
    f = request.form
    cycle_id = f.get("cycle_id", "")
    try:
        until = forms.beijing_datetime(f.get("until", ""), "until 截止时间")
        exc = CycleExceptionService(get_session(), actor()).grant(cycle_id, f.get("province", ""), until,
                                                                   f.get("reason", ""))
    except ExchangeError as error:
        return refused(error, _cycles, form=dict(f))
    stamp = until.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    response = done(f"已准许 {exc.province} 在北京时间 {stamp} 前向周期 {cycle_id} 报送",
                     f"province {exc.province} may deliver to cycle {cycle_id} until {stamp} Beijing time",
                     "admin.cycles")
    _calendar_changed()  # SFTP agents learn of the exception from their outbox's calendar.json
    return response


@bp.post("/cycles/exceptions/<id:exception_id>/revoke")
@login_required(ADMIN)
def exception_revoke(exception_id: int) -> Any:
    """End an exception at once, once its impact was shown and confirmed."""
    if not _confirmed():
        try:
            impact = CalendarImpactService(get_session()).revoke(exception_id)
        except ExchangeError as error:
            return refused(error, _cycles)
        asked = "confirm" in request.form
        html = render_template("admin/calendar_confirm.html", kind="revoke", revoke=impact, unticked=asked,
                               names=_area_names())
        return html, 409 if asked else 200
    try:
        exc = CycleExceptionService(get_session(), actor()).revoke(exception_id)
    except ExchangeError as error:
        return refused(error, _cycles)
    response = done(f"已撤销 {exc.province} 对周期 {exc.cycle_id} 的例外",
                     f"exception for {exc.province} on cycle {exc.cycle_id} revoked", "admin.cycles")
    _calendar_changed()
    return response


# -- code lists -------------------------------------------------------------------------------


@bp.get("/code-lists")
@login_required(ADMIN)
def code_lists() -> str:
    """Every code domain of the standard (and the extensions) with its versions, as in force now."""
    service = CodeListService(get_session(), runtime().spec)
    return render_template("admin/codes.html", standard=service.spec.standard_domains,
                           extensions=service.spec.extension_domains, proposed=service.counts(),
                           published=service.published_counts())


def _domain(name: str, error: ExchangeError | None = None, form: dict[str, str] | None = None) -> str:
    service = CodeListService(get_session(), runtime().spec)
    if name not in service.spec.domains:
        abort(404)
    dom = service.spec.domain(name)
    picked = request.args.get("version") or dom.current.version
    shown = next((v for v in dom.versions if v.version == picked), dom.current)
    today = utcnow().astimezone(BEIJING).date()
    records = service.records(name)
    return render_template("admin/codes_domain.html", d=dom, shown=shown, in_force=dom.version_on(today),
                           records=records, added_here={r.version: r for r in records if r.state == "published"},
                           error=error, form=form or {}, today=today, org_tree=name in ORG_DOMAINS,
                           default_from=max(today, dom.current.effective_from) + dt.timedelta(days=1))


@bp.get("/code-lists/<name>")
@login_required(ADMIN)
def code_domain(name: str) -> str:
    """One domain: its versions and codes, versions added here, and the form to propose one."""
    return _domain(name)


@bp.post("/code-lists/<name>/drafts")
@login_required(ADMIN)
def code_propose(name: str) -> Any:
    """Record a proposed effective-dated version (nothing changes until it is published)."""
    f = request.form
    try:
        draft = CodeListService(get_session(), runtime().spec, actor()).propose(
            name, f.get("version", ""), forms.date(f.get("effective_from", ""), "effective_from 生效日期"),
            f.get("based_on", ""), forms.code_changes(f.get("add", ""), "add 新增"),
            forms.code_changes(f.get("update", ""), "update 修改"), forms.code_list(f.get("remove", "")),
            f.get("note_zh", ""), f.get("note_en", ""))
    except ExchangeError as exc:
        return refused(exc, _domain, name=name, form=dict(f))
    return done(f"已记录 {name} 的拟议版本 {draft.version}：发布后才生效",
                 f"proposed version {draft.version} of {name} recorded: it takes effect once published",
                 "admin.code_domain", name=name)


@bp.post("/code-lists/<name>/drafts/<id:draft_id>/publish")
@login_required(ADMIN)
def code_publish(name: str, draft_id: int) -> Any:
    """Publish a proposed version: in force from its date for validation, roll-ups and the provinces' agents."""
    try:
        draft = CodeListService(get_session(), runtime().spec, actor()).publish(draft_id)
        if draft.domain != name:
            abort(404)
    except ExchangeError as exc:
        return refused(exc, _domain, name=name)
    response = done(f"已发布 {name} 的版本 {draft.version}，自 {draft.effective_from} 起开始的周期适用",
                     f"version {draft.version} of {name} published: in force for cycles beginning on or after "
                     f"{draft.effective_from}", "admin.code_domain", name=name)
    after_commit("代码表放入SFTP发件箱", "placing the code lists in the SFTP outboxes",
                  lambda: outbox.place_code_lists(runtime()))
    return response


@bp.get("/code-lists/<name>/drafts/<id:draft_id>.yaml")
@login_required(ADMIN)
def code_snippet(name: str, draft_id: int) -> Response:
    """The version as the YAML entry for interface_specs/code_lists/<domain>.yaml (the next release of the standard)."""
    draft = CodeListService(get_session(), runtime().spec).get(draft_id)
    if draft.domain != name:
        abort(404)
    return Response(CodeListService.snippet(draft), mimetype="text/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{draft.version}.yaml"'})


@bp.post("/code-lists/<name>/drafts/<id:draft_id>/withdraw")
@login_required(ADMIN)
def code_withdraw(name: str, draft_id: int) -> Any:
    """Withdraw a proposal (it stays on record)."""
    try:
        draft = CodeListService(get_session(), runtime().spec, actor()).withdraw(draft_id)
    except ExchangeError as exc:
        return refused(exc, _domain, name=name)
    return done(f"已撤回拟议版本 {draft.version}", f"proposal {draft.version} withdrawn", "admin.code_domain",
                 name=name)


# -- accounts ---------------------------------------------------------------------------------


# What an account is, as the pages name it: Chinese, English. A province-role account whose party is a
# local network is a local network's (本地网), not a province company's (省公司).
ROLE_NAMES: dict[str, tuple[str, str]] = {"province": ("省公司", "Province"), "local_network": ("本地网", "Local network"),
                                          "analyst": ("分析员", "Analyst"), "admin": ("管理员", "Admin")}


def _parties(codes: set[str]) -> dict[str, Area]:
    """The areas behind the accounts' parties (provinces and local networks), by code."""
    wanted = sorted(c for c in codes if c)
    return {a.code: a for a in get_session().scalars(select(Area).where(Area.code.in_(wanted)))} if wanted else {}


def role_kind(role: str, party: Area | None) -> str:
    """The key of ROLE_NAMES for an account: its role, or ``local_network`` for a province role on a local network."""
    return LOCAL_NETWORK if role == PROVINCE and party is not None and party.level == LOCAL_NETWORK else role


def _accounts(error: ExchangeError | None = None, form: dict[str, str] | None = None) -> str:
    session = get_session()
    accounts = AccountService(session).list()
    parties = _parties({a.party or "" for a in accounts})
    return render_template("admin/accounts.html", accounts=accounts, roles=ROLES, error=error, form=form or {},
                           areas={p.code: p.name_zh for p in OrgService(session).provinces()}, now=utcnow(),
                           parties=parties, role_names=ROLE_NAMES,
                           kinds={a.name: role_kind(a.role, parties.get(a.party or "")) for a in accounts})


@bp.get("/accounts")
@login_required(ADMIN)
def accounts() -> str:
    """Every account with its role, party and credentials, and the form to add one."""
    return _accounts()


@bp.post("/accounts")
@login_required(ADMIN)
def account_create() -> Any:
    """Create a province, analyst or admin account (analysts and admins need a password to sign in)."""
    f = request.form
    role = f.get("role", "")
    password = f.get("password", "") or None
    try:
        if role in (ANALYST, ADMIN) and not password:
            raise BadRequest("analyst and admin accounts sign in with a password: set one",
                             "分析员和管理员账户需要密码登录，请设置密码", code="password_missing")
        svc = AccountService(get_session(), actor())
        if password is not None and len(password) < 8:
            raise BadRequest("a password needs at least 8 characters", "密码至少8个字符", code="weak_password")
        account = svc.create(f.get("name", "").strip(), role, f.get("party", "").strip() or None if role == PROVINCE
                             else None, f.get("display_name", "").strip(), password)
    except ExchangeError as exc:
        return refused(exc, _accounts, form={k: v for k, v in f.items() if k != "password"})
    return done(f"已创建账户 {account.name}", f"account {account.name} created", "admin.account", name=account.name)


def _account_page(name: str, error: ExchangeError | None = None, secret: str | None = None,
                  new_token: ApiToken | None = None, revoked: ApiToken | None = None) -> str:
    account = AccountService(get_session()).get(name)
    tokens = sorted(account.tokens, key=lambda t: t.created_at, reverse=True)
    keys = sorted(account.ssh_keys, key=lambda k: k.created_at, reverse=True)
    party = _parties({account.party or ""}).get(account.party or "")
    return render_template("admin/accounts_detail.html", a=account, tokens=tokens, keys=keys, error=error,
                           secret=secret, new_token=new_token, revoked=revoked, now=utcnow(),
                           is_self=account.name == actor(), party=party, role_names=ROLE_NAMES,
                           kind=role_kind(account.role, party))


@bp.get("/accounts/<name>")
@login_required(ADMIN)
def account(name: str) -> str:
    """One account: enable or disable it, set its password, manage its tokens and SSH keys."""
    return _account_page(name)


@bp.post("/accounts/<name>/active")
@login_required(ADMIN)
def account_active(name: str) -> Any:
    """Enable or disable an account (a disabled account stops authenticating at once)."""
    active = request.form.get("active") == "1"
    try:
        if not active and name == actor():
            raise BadRequest("you cannot disable the account you are signed in with",
                             "不能停用当前登录的账户", code="disable_self")
        svc = AccountService(get_session(), actor())
        svc.set_active(svc.get(name), active)
    except ExchangeError as exc:
        return refused(exc, _account_page, name=name)
    return done(f"账户 {name} 已{'启用' if active else '停用'}", f"account {name} {'enabled' if active else 'disabled'}",
                 "admin.account", name=name)


@bp.post("/accounts/<name>/role")
@login_required(ADMIN)
def account_role(name: str) -> Any:
    """Change an account's role (and a province account's party)."""
    role, party = request.form.get("role", ""), request.form.get("party", "").strip()
    try:
        if name == actor():
            raise BadRequest("you cannot change the role of the account you are signed in with",
                             "不能修改当前登录账户的角色", code="role_self")
        svc = AccountService(get_session(), actor())
        svc.set_role(svc.get(name), role, party if role == PROVINCE else None)
    except ExchangeError as exc:
        return refused(exc, _account_page, name=name)
    return done(f"账户 {name} 的角色已改为 {role}", f"account {name} is now {role}", "admin.account", name=name)


@bp.post("/accounts/<name>/password")
@login_required(ADMIN)
def account_password(name: str) -> Any:
    """Set an account's password."""
    try:
        svc = AccountService(get_session(), actor())
        account = svc.get(name)
        svc.set_password(account, request.form.get("password", ""))  # ends the account's sessions
        if name == actor():
            keep_session(account)  # an admin setting their own: this session stays, the others end
    except ExchangeError as exc:
        return refused(exc, _account_page, name=name)
    return done(f"已为 {name} 设置新密码", f"new password set for {name}", "admin.account", name=name)


def _ttl(text: str) -> int | None:
    return None if text.strip() in ("", "0") else forms.integer(text, "ttl_days 有效天数", 1, 3650)


@bp.post("/accounts/<name>/tokens")
@login_required(ADMIN)
def token_create(name: str) -> Any:
    """Create an API token; its secret is shown on this answer only (only its hash is kept)."""
    try:
        svc = AccountService(get_session(), actor())
        secret, token = svc.create_token(svc.get(name), request.form.get("label", "").strip()[:100],
                                         _ttl(request.form.get("ttl_days", "365")))
        get_session().commit()
    except ExchangeError as exc:
        return refused(exc, _account_page, name=name)
    return _account_page(name, secret=secret, new_token=token), 201


def _token_of(svc: AccountService, name: str, token_id: int) -> ApiToken:
    token = get_session().get(ApiToken, token_id)
    if token is None or token.account.name != name:
        abort(404)
    return token


@bp.post("/accounts/<name>/tokens/<id:token_id>/revoke")
@login_required(ADMIN)
def token_revoke(name: str, token_id: int) -> Any:
    """Revoke a token at once."""
    svc = AccountService(get_session(), actor())
    token = _token_of(svc, name, token_id)
    svc.revoke_token(token.id)
    return done(f"已吊销令牌 {token.prefix}…", f"token {token.prefix}… revoked", "admin.account", name=name)


@bp.post("/accounts/<name>/tokens/<id:token_id>/rotate")
@login_required(ADMIN)
def token_rotate(name: str, token_id: int) -> Any:
    """Replace a token: a new one with the same label and lifetime, the old one revoked, in one transaction."""
    svc = AccountService(get_session(), actor())
    old = _token_of(svc, name, token_id)
    if old.revoked_at is not None:
        return refused(BadRequest("this token is already revoked; create a new one instead",
                                   "该令牌已吊销，请直接新建令牌", code="token_revoked"), _account_page, name=name)
    ttl = None
    if old.expires_at is not None:
        ttl = max(1, round((old.expires_at - old.created_at).total_seconds() / 86400))
    secret, token = svc.create_token(old.account, old.label, ttl)
    svc.revoke_token(old.id)
    get_session().commit()
    return _account_page(name, secret=secret, new_token=token, revoked=old), 201


@bp.post("/accounts/<name>/keys")
@login_required(ADMIN)
def key_add(name: str) -> Any:
    """Register an OpenSSH public key for the SFTP channel; with ``replaces``, rotate that key to it."""
    replaces = request.form.get("replaces", "")
    try:
        svc = AccountService(get_session(), actor())
        account = svc.get(name)
        line = request.form.get("public_key", "")
        if replaces:
            key = svc.rotate_ssh_key(account, replaces, line)
        else:
            key = svc.add_ssh_key(account, line, request.form.get("label", "").strip()[:100])
    except ExchangeError as exc:
        return refused(exc, _account_page, name=name)
    if replaces:
        return done(f"公钥 {replaces} 已由 {key.fingerprint} 替换", f"key {replaces} replaced by {key.fingerprint}",
                     "admin.account", name=name)
    return done(f"已登记公钥 {key.fingerprint}", f"key {key.fingerprint} registered", "admin.account", name=name)


@bp.post("/accounts/<name>/keys/revoke")
@login_required(ADMIN)
def key_revoke(name: str) -> Any:
    """Revoke a public key."""
    svc = AccountService(get_session(), actor())
    fingerprint = request.form.get("fingerprint", "")
    if not any(k.fingerprint == fingerprint for k in svc.get(name).ssh_keys):
        abort(404)
    svc.revoke_ssh_key(fingerprint)
    return done(f"已吊销公钥 {fingerprint}", f"key {fingerprint} revoked", "admin.account", name=name)


# -- the audit log ----------------------------------------------------------------------------


@bp.get("/audit")
@login_required(ADMIN)
def audit() -> Any:
    """The append-only audit log, newest first: filter by actor, action, target, dates and detail text."""
    a = request.args
    error = None
    since = until = None
    try:
        if a.get("since", "").strip():
            since = dt.datetime.combine(forms.date(a["since"], "since 起始日期"), dt.time(), BEIJING)
        if a.get("until", "").strip():
            until = dt.datetime.combine(forms.date(a["until"], "until 截止日期") + dt.timedelta(days=1), dt.time(),
                                        BEIJING)
        page = forms.integer(a.get("page", "1") or "1", "page 页码", 1, 1_000_000)
    except BadRequest as exc:
        error, page = exc, 1
    query = AuditQuery(actor=a.get("actor", "").strip(), action=a.get("action", "").strip(),
                       target=a.get("target", "").strip(), since=since, until=until, text=a.get("q", "").strip(),
                       page=page, per_page=AUDIT_PAGE)
    search = AuditSearch(get_session())
    found = search.search(query)
    args = {k: v for k, v in a.items() if k != "page" and v}
    html = render_template("admin/audit.html", found=found, query=query, args=args, actors=search.actors(),
                           error=error)
    return (html, 400) if error else html
