"""Signing in to the pages: Flask's signed session cookie, a CSRF token, role checks.

The session holds the account's id, when it signed in, the account's session epoch at
that moment and a CSRF token. Every request re-reads the account, so a session ends on the
server, whatever becomes of its cookie: when the account is disabled, and when its epoch
moves on — on sign-out (every session of the account), a password change (by the user or an
admin) and a role change (:meth:`~exchange_server.accounts.services.AccountService.end_sessions`).
An ended session is signed out: its pages go to the sign-in form. Every POST to a page
blueprint must carry the session's CSRF token (see :mod:`.csrf`).
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, Callable, TypeVar, cast
from urllib.parse import urlsplit

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST, Account, ApiToken
from ..accounts.services import AccountService
from ..admin.services import LoginGuard
from ..api.auth import with_article
from ..clock import BEIJING, as_utc, utcnow
from ..db import get_session
from ..errors import BadRequest, ExchangeError, Forbidden, Unauthorized
from .blueprints import page_blueprint
from .csrf import csrf_token

bp = page_blueprint("auth", __name__)

SESSION_HOURS = 12  # a working day; after that the analyst signs in again

F = TypeVar("F", bound=Callable[..., Any])


def current_account() -> Account | None:
    """The signed-in, still active account of this request, or None."""
    if "page_account" in g:
        found: Account | None = g.page_account
        return found
    account = None
    account_id, signed_in, epoch = session.get("account_id"), session.get("signed_in"), session.get("epoch")
    if isinstance(account_id, int) and isinstance(signed_in, (int, float)) and isinstance(epoch, int):
        age = dt.datetime.now(dt.timezone.utc).timestamp() - signed_in
        if 0 <= age < SESSION_HOURS * 3600:
            candidate = get_session().get(Account, account_id)
            if candidate is not None and candidate.active and candidate.session_epoch == epoch:
                account = candidate
    if account is None and "account_id" in session:
        session.clear()  # ended (expired, signed out, password or role changed, disabled): nothing of it stays
    g.page_account = account
    return account


def _open_session(account: Account) -> None:
    """Start a fresh session (and CSRF token) for ``account``: nothing from before survives it."""
    session.clear()
    session["account_id"] = account.id
    session["signed_in"] = dt.datetime.now(dt.timezone.utc).timestamp()
    session["epoch"] = account.session_epoch
    g.pop("page_account", None)  # the start page depends on who has just signed in
    csrf_token()


def keep_session(account: Account) -> None:
    """After moving the signed-in account's own epoch on (its own password): keep this session, end the others.

    Call it after the change is flushed; the cookie then carries the new epoch.
    """
    get_session().flush()
    session["epoch"] = account.session_epoch


def login_required(*roles: str) -> Callable[[F], F]:
    """Only signed-in accounts (with one of ``roles``, if given); others go to the sign-in page or get 403."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account = current_account()
            if account is None:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if roles and account.role not in roles:
                raise Forbidden(f"this page is for {' or '.join(roles)} accounts; you are signed in as "
                                f"{with_article(account.role)} account",
                                f"此页面仅限 {' 或 '.join(roles)} 账户；当前为 {account.role} 账户", code="wrong_role")
            return view(*args, **kwargs)

        return cast(F, wrapped)  # functools.wraps keeps the view's signature

    return decorate


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirects)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target:
            return target
    return home_path()


def home_path() -> str:
    """The signed-in account's own start page: provinces their deliveries, HQ the dashboard."""
    account = current_account()
    if account is not None and account.role == "province":
        return url_for("province.index")
    return url_for("analyst.index")


def _locked_out(until: dt.datetime) -> Unauthorized:
    """The refusal while an account is locked after repeated wrong passwords."""
    minutes = max(1, math.ceil((until - dt.datetime.now(dt.timezone.utc)).total_seconds() / 60))
    stamp = until.astimezone(BEIJING).strftime("%H:%M")
    return Unauthorized(f"too many wrong passwords: this account is locked for {minutes} more minute(s) "
                        f"(until {stamp} Beijing time)",
                        f"密码错误次数过多，该账户已被锁定，请 {minutes} 分钟后（北京时间 {stamp} 之后）再试",
                        code="account_locked")


@bp.get("/")
def home() -> Response:
    """The site's front door: the signed-in account's start page (the dashboard asks to sign in first)."""
    return redirect(home_path())


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the sign-in form; on POST check the password and start a session."""
    error = None
    name = ""
    if request.method == "POST":
        name = request.form.get("username", "").strip()
        guard = LoginGuard(get_session())
        locked = guard.locked_until(name)
        try:
            if locked is not None:
                raise _locked_out(locked)
            account = AccountService(get_session()).verify_password(name, request.form.get("password", ""))
        except Unauthorized as exc:
            error = exc
            if locked is None:
                until = guard.failed(name, request.remote_addr)
                get_session().commit()  # the failure counts even though sign-in was refused
                if until is not None:
                    error = _locked_out(until)
        else:
            guard.succeeded(name)
            get_session().commit()  # the cleared failures, and verify_password may have upgraded the hash
            _open_session(account)
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error, username=name, next=request.args.get("next", "")), \
        (429 if error and error.code == "account_locked" else 401 if error else 200)


@bp.post("/logout")
def logout() -> Response:
    """End the session on the server: every session of the account, so a copied cookie stops working too."""
    account = current_account()
    if account is not None:
        AccountService(get_session(), account.name).end_sessions(account)
        get_session().commit()
    session.clear()
    g.pop("page_account", None)
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required()
def password() -> Any:
    """Change one's own password: the other sessions of the account end, this one stays signed in."""
    account = current_account()
    assert account is not None  # login_required ran first
    error: ExchangeError | None = None
    if request.method == "POST":
        guard = LoginGuard(get_session())
        locked = guard.locked_until(account.name)
        try:
            if locked is not None:
                raise _locked_out(locked)
            new = request.form.get("new_password", "")
            if new != request.form.get("confirm_password", ""):
                raise BadRequest("the two new passwords differ", "两次输入的新密码不一致",
                                 code="password_mismatch")
            service = AccountService(get_session(), account.name)
            service.verify_password(account.name, request.form.get("current_password", ""))
            service.set_password(account, new)
        except Unauthorized as exc:  # the current password is wrong: it counts towards the lockout
            get_session().rollback()
            error = exc
            if locked is None and exc.code == "bad_credentials":
                until = guard.failed(account.name, request.remote_addr)
                get_session().commit()
                if until is not None:
                    error = _locked_out(until)
        except ExchangeError as exc:
            get_session().rollback()
            error = exc
        else:
            keep_session(account)
            get_session().commit()
            return redirect(url_for("auth.password", changed=1), code=303)
    status = 200 if error is None else 429 if error.code == "account_locked" else error.status
    return render_template("auth/password.html", error=error, changed=request.args.get("changed") == "1"), status


# -- one's own API token (analysts and admins) ---------------------------------------------------------------
OWN_TOKEN_LABEL = "own token / 本人令牌"  # how a token made on the page is labelled in the admins' listing
OWN_TOKEN_DAYS = 365


def _live_tokens(account: Account) -> list[ApiToken]:
    """The account's tokens that still authenticate (not revoked, not expired), newest first."""
    now = utcnow()
    return sorted((tk for tk in account.tokens if tk.revoked_at is None
                   and (tk.expires_at is None or as_utc(tk.expires_at) > now)),
                  key=lambda tk: tk.created_at, reverse=True)


@bp.route("/account/token", methods=["GET", "POST"])
@login_required(ANALYST, ADMIN)
def token() -> Any:
    """An analyst's (or admin's) own API token for the reports API: create it, or rotate it.

    POST makes a new token and, in the same transaction, revokes every token of the account that
    still worked: after a rotation only the new one authenticates. The secret is shown on this
    answer only; the server keeps its SHA-256 (as for every API token). Both steps are audited
    under the account's own name.
    """
    account = current_account()
    assert account is not None  # login_required ran first
    secret: str | None = None
    revoked: list[ApiToken] = []
    status = 200
    if request.method == "POST":
        service = AccountService(get_session(), account.name)
        revoked = _live_tokens(account)
        secret, _new = service.create_token(account, OWN_TOKEN_LABEL, OWN_TOKEN_DAYS)
        for old in revoked:
            service.revoke_token(old.id)
        get_session().commit()
        status = 201
    live = _live_tokens(account)
    return render_template("auth/token.html", secret=secret, new_token=live[0] if secret and live else None,
                           revoked=revoked, tokens=live, days=OWN_TOKEN_DAYS), status
