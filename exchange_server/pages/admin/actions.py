"""What every admin action shares: who acts, commit-and-redirect, a refusal shown on its page, post-commit work.

Views parse the form, ask a service, commit once and redirect (a change and its audit
event commit together); a refused action shows the same page again with the reason and
the error's status. Work that must follow a commit (the calendar and list slices into the
SFTP outboxes) runs after it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import flash, redirect, url_for
from werkzeug.wrappers import Response

from ...db import get_session
from ...errors import ExchangeError, Forbidden, Unauthorized
from ..auth import current_account

log = logging.getLogger(__name__)

SEP = "\x1f"  # between the Chinese and the English of a flashed message (the templates split on it)


def actor() -> str:
    account = current_account()
    assert account is not None  # login_required ran first
    return account.name


def done(zh: str, en: str, endpoint: str, **values: Any) -> Response:
    """Commit, say what happened and go back to the page (POST/redirect/GET)."""
    get_session().commit()
    flash(f"{zh}{SEP}{en}", "ok")
    return redirect(url_for(endpoint, **values), code=303)


def refused(exc: ExchangeError, page: Callable[..., Any], **values: Any) -> Any:
    """Roll back and show the page again with the reason; server faults and access errors go to the error page."""
    get_session().rollback()
    if exc.status >= 500 or isinstance(exc, (Forbidden, Unauthorized)):
        raise exc
    html = page(error=exc, **values)
    return html, exc.status


def after_commit(zh: str, en: str, action: Callable[[], Any]) -> None:
    """Post-commit delivery to the SFTP outboxes: a failure there is reported, the change stands."""
    try:
        action()
    except (OSError, ExchangeError):
        log.exception("admin: %s failed after commit", en)
        flash(f"{zh}失败，请查看服务器日志后重试{SEP}{en} failed; see the server log", "warn")
