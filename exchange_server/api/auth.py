"""Who is calling the API: bearer tokens of province, analyst and admin accounts."""
from __future__ import annotations

from flask import g, request

from ..accounts.models import Account
from ..accounts.services import AccountService
from ..db import get_session
from ..errors import Forbidden, Unauthorized


def with_article(word: str) -> str:
    """``word`` after its indefinite article: "an analyst", "an admin", "a province"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def authenticate(*roles: str) -> Account:
    """The account of the request's bearer token, if it has one of ``roles`` (any role if none given)."""
    if "account" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized("send an API token: Authorization: Bearer <token>",
                               "请提供API令牌：Authorization: Bearer <令牌>", code="token_missing")
        session = get_session()
        g.account = AccountService(session).authenticate_token(secret.strip())
        session.commit()  # records last use; ends the read transaction before the real work
    account: Account = g.account
    if roles and account.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; the token belongs to {with_article(account.role)} account",
                        f"需要 {' 或 '.join(roles)} 角色；此令牌属于 {account.role} 账户", code="wrong_role")
    return account
