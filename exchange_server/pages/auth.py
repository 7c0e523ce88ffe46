"""Signing in to the pages: Flask's signed session cookie, a CSRF token, role checks.

The session holds the account's id, when it signed in and a CSRF token; every
request re-reads the account so that disabling it takes effect at once. Every POST to a
page blueprint must carry the session's CSRF token (see :mod:`.csrf`).
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, Callable, TypeVar, cast
from urllib.parse import urlsplit

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from ..accounts.models import Account
from ..accounts.services import AccountService
from ..admin.services import LoginGuard
from ..clock import BEIJING
from ..db import get_session
from ..errors import Forbidden, Unauthorized
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
    account_id, signed_in = session.get("account_id"), session.get("signed_in")
    if isinstance(account_id, int) and isinstance(signed_in, (int, float)):
        age = dt.datetime.now(dt.timezone.utc).timestamp() - signed_in
        if 0 <= age < SESSION_HOURS * 3600:
            candidate = get_session().get(Account, account_id)
            if candidate is not None and candidate.active:
                account = candidate
    g.page_account = account
    return account


def login_required(*roles: str) -> Callable[[F], F]:
    """Only signed-in accounts (with one of ``roles``, if given); others go to the sign-in page or get 403."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account = current_account()
            if account is None:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if roles and account.role not in roles:
                raise Forbidden(f"this page is for {' or '.join(roles)} accounts; you are signed in as a "
                                f"{account.role} account",
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
            # A fresh session (and CSRF token) on sign-in: nothing from before survives it.
            session.clear()
            session["account_id"] = account.id
            session["signed_in"] = dt.datetime.now(dt.timezone.utc).timestamp()
            g.pop("page_account", None)  # the start page depends on who has just signed in
            csrf_token()
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error, username=name, next=request.args.get("next", "")), \
        (429 if error and error.code == "account_locked" else 401 if error else 200)


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    session.clear()
    return redirect(url_for("auth.login"))
