"""The account pages in-process: create users, tokens shown once, rotate, revoke, SSH keys, enable/disable."""
from __future__ import annotations

import base64
import re

from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.models import Account, ApiToken
from exchange_server.accounts.services import AccountService, hash_token
from exchange_server.audit.models import AuditEvent
from exchange_server.runtime import Runtime
from tests.admin.conftest import Accounts, Login, sign_in

KEY = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()


def secret_of(html: str) -> str:
    m = re.search(r'<pre class="receipt" id="secret">([^<]+)</pre>', html)
    assert m, "no secret on the page"
    return m.group(1)


def test_create_users_of_every_role(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    for name, role, party in (("new-analyst", "analyst", ""), ("new-admin", "admin", ""), ("new-prov", "province", "46")):
        r = client.post("/admin/accounts", data={"csrf_token": csrf, "name": name, "role": role, "party": party,
                                                 "password": "long-enough-pw"})
        assert r.status_code == 303 and r.headers["Location"].endswith(f"/admin/accounts/{name}"), r.get_data(as_text=True)[:800]
    html = client.get("/admin/accounts").get_data(as_text=True)
    assert 'data-account="new-analyst" data-role="analyst"' in html and 'data-account="new-prov" data-role="province"' in html
    # The new analyst can sign in with the password set here.
    fresh = client.application.test_client()
    sign_in(fresh, Login("new-analyst", "long-enough-pw", "analyst"))
    for data, code in (({"name": "x1", "role": "analyst"}, "password_missing"),
                       ({"name": "x2", "role": "province", "party": "99"}, "bad_party"),
                       ({"name": "new-admin", "role": "admin", "password": "long-enough-pw"}, "account_exists"),
                       ({"name": "x3", "role": "admin", "password": "short"}, "weak_password")):
        r = client.post("/admin/accounts", data={"csrf_token": csrf, **data})
        assert r.status_code in (400, 409) and code in r.get_data(as_text=True), data
    with admin_runtime.db.session() as s:
        created = s.scalars(select(AuditEvent.target).where(AuditEvent.actor == admin.name,
                                                            AuditEvent.action == "account.create")).all()
    assert set(created) == {"account:new-analyst", "account:new-admin", "account:new-prov"}


def test_token_is_shown_once_rotated_and_revoked(client: FlaskClient, accounts: Accounts,
                                                 admin_runtime: Runtime) -> None:
    csrf = sign_in(client, accounts.admin())
    prov = accounts.province("50")
    r = client.post(f"/admin/accounts/{prov.name}/tokens", data={"csrf_token": csrf, "label": "agent", "ttl_days": "30"})
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    secret = secret_of(r.get_data(as_text=True))
    assert secret not in client.get(f"/admin/accounts/{prov.name}").get_data(as_text=True)  # shown once
    with admin_runtime.db.session() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
        assert token is not None and token.label == "agent"
        old_id = token.id
        assert AccountService(s).authenticate_token(secret).name == prov.name
    r = client.post(f"/admin/accounts/{prov.name}/tokens/{old_id}/rotate", data={"csrf_token": csrf})
    assert r.status_code == 201
    new_secret = secret_of(r.get_data(as_text=True))
    assert new_secret != secret
    with admin_runtime.db.session() as s:
        svc = AccountService(s)
        assert svc.authenticate_token(new_secret).name == prov.name
        old = s.get(ApiToken, old_id)
        assert old is not None and old.revoked_at is not None
        new = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(new_secret)))
        assert new is not None and new.label == "agent" and new.expires_at is not None
    r = client.post(f"/admin/accounts/{prov.name}/tokens/{new.id}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 303
    with admin_runtime.db.session() as s:
        t = s.get(ApiToken, new.id)
        assert t is not None and t.revoked_at is not None
    # A token of another account cannot be reached through this account's URL.
    other = accounts.province("51")
    with admin_runtime.db.session() as s:
        acc = s.scalar(select(Account).where(Account.name == other.name))
        assert acc is not None
        other_id = acc.tokens[0].id
    assert client.post(f"/admin/accounts/{prov.name}/tokens/{other_id}/revoke", data={"csrf_token": csrf}).status_code == 404


def test_ssh_keys_passwords_and_disabling(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    prov = accounts.province("52")
    r = client.post(f"/admin/accounts/{prov.name}/keys", data={"csrf_token": csrf, "public_key": KEY + " ops@52"})
    assert r.status_code == 303
    page = client.get(f"/admin/accounts/{prov.name}").get_data(as_text=True)
    fp = re.search(r'data-fingerprint="(SHA256:[^"]+)" data-state="live"', page)
    assert fp
    r = client.post(f"/admin/accounts/{prov.name}/keys", data={"csrf_token": csrf, "public_key": "not a key"})
    assert r.status_code == 400 and "bad_public_key" in r.get_data(as_text=True)
    r = client.post(f"/admin/accounts/{prov.name}/keys/revoke", data={"csrf_token": csrf, "fingerprint": fp.group(1)})
    assert r.status_code == 303
    assert 'data-state="revoked"' in client.get(f"/admin/accounts/{prov.name}").get_data(as_text=True)
    r = client.post(f"/admin/accounts/{prov.name}/password", data={"csrf_token": csrf, "password": "x"})
    assert r.status_code == 400 and "weak_password" in r.get_data(as_text=True)
    assert client.post(f"/admin/accounts/{prov.name}/password",
                       data={"csrf_token": csrf, "password": "a-new-password"}).status_code == 303
    assert client.post(f"/admin/accounts/{prov.name}/active", data={"csrf_token": csrf, "active": "0"}).status_code == 303
    with admin_runtime.db.session() as s:
        acc = s.scalar(select(Account).where(Account.name == prov.name))
        assert acc is not None and not acc.active
    # An admin cannot lock themselves out.
    r = client.post(f"/admin/accounts/{admin.name}/active", data={"csrf_token": csrf, "active": "0"})
    assert r.status_code == 400 and "disable_self" in r.get_data(as_text=True)
    with admin_runtime.db.session() as s:
        actions = {e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.actor == admin.name))}
    assert {"sshkey.add", "sshkey.revoke", "account.password", "account.disable"} <= actions


def _key(n: int) -> str:
    """A distinct, well-formed ed25519 public key line."""
    return "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([n] * 32)).decode()


def test_ssh_key_rotation_is_one_step(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    prov = accounts.province("53")
    csrf = sign_in(client, accounts.admin())
    old_line, new_line = _key(201), _key(202)
    assert client.post(f"/admin/accounts/{prov.name}/keys", data={
        "csrf_token": csrf, "public_key": old_line, "label": "运维机 ops"}).status_code == 303
    with admin_runtime.db.session() as s:
        old = s.scalars(select(Account).where(Account.name == prov.name)).one().ssh_keys[0].fingerprint
    page = client.get(f"/admin/accounts/{prov.name}").get_data(as_text=True)
    assert f'<option value="{old}" translate="no">' in page  # offered as the key to replace
    r = client.post(f"/admin/accounts/{prov.name}/keys", data={"csrf_token": csrf, "public_key": new_line,
                                                               "replaces": old})
    assert r.status_code == 303, r.get_data(as_text=True)[:800]
    with admin_runtime.db.session() as s:
        svc = AccountService(s)
        keys = {k.fingerprint: k for k in svc.get(prov.name).ssh_keys}
        assert keys[old].revoked_at is not None and len(keys) == 2
        [new] = [k for k in keys.values() if k.fingerprint != old]
        assert new.revoked_at is None and new.label == "运维机 ops"  # the label carries over
        blob = lambda line: base64.b64decode(line.split()[1])  # noqa: E731
        assert svc.account_for_key(blob(old_line)) is None  # the old key no longer signs in
        assert svc.account_for_key(blob(new_line)).name == prov.name
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "sshkey.rotate")).all()[-1]
        assert event.detail == {"old": old, "new": new.fingerprint}
    # Rotating a key that is already revoked is refused, and nothing is added.
    r = client.post(f"/admin/accounts/{prov.name}/keys", data={"csrf_token": csrf, "public_key": _key(203),
                                                               "replaces": old})
    assert r.status_code == 404 and "key_not_found" in r.get_data(as_text=True)
    with admin_runtime.db.session() as s:
        assert len(AccountService(s).get(prov.name).ssh_keys) == 2


def test_roles_change_with_their_party(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    admin = accounts.admin()
    analyst = accounts.analyst()
    csrf = sign_in(client, admin)
    r = client.post(f"/admin/accounts/{analyst.name}/role", data={"csrf_token": csrf, "role": "admin", "party": ""})
    assert r.status_code == 303
    fresh = client.application.test_client()
    sign_in(fresh, analyst)
    assert fresh.get("/admin/review/").status_code == 200  # an admin now
    r = client.post(f"/admin/accounts/{analyst.name}/role", data={"csrf_token": csrf, "role": "province", "party": "42"})
    assert r.status_code == 303
    assert fresh.get("/admin/review/").headers["Location"].startswith("/login")  # the role change ended the session
    sign_in(fresh, analyst)
    assert fresh.get("/admin/review/").status_code == 403 and fresh.get("/province/").status_code == 200
    for data, code in (({"role": "province", "party": "99"}, "bad_party"), ({"role": "root"}, "bad_role")):
        r = client.post(f"/admin/accounts/{analyst.name}/role", data={"csrf_token": csrf, **data})
        assert r.status_code == 400 and code in r.get_data(as_text=True)
    r = client.post(f"/admin/accounts/{admin.name}/role", data={"csrf_token": csrf, "role": "analyst"})
    assert r.status_code == 400 and "role_self" in r.get_data(as_text=True)
    with admin_runtime.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "account.role",
                                                    AuditEvent.target == f"account:{analyst.name}")).all()
        assert [(e.detail["before"]["role"], e.detail["role"], e.detail["party"]) for e in events] == [
            ("analyst", "admin", None), ("admin", "province", "42")]
