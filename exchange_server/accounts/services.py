"""Accounts, passwords, API tokens and SSH keys."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..audit.services import record
from ..clock import as_utc, utcnow
from ..errors import BadRequest, Conflict, NotFound, Unauthorized
from ..org.models import LOCAL_NETWORK, PROVINCE as PROVINCE_LEVEL, Area
from .models import ADMIN, PROVINCE, ROLES, Account, ApiToken, SshKey

TOKEN_PREFIX = "kam_"
_hasher = PasswordHasher()


def hash_token(token: str) -> str:
    """The stored form of an API token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ssh_fingerprint(blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key blob (as ``ssh-keygen -l`` prints it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> tuple[str, bytes, str]:
    """Split an OpenSSH public key line into (type, blob, comment); BadRequest when malformed."""
    parts = line.strip().split(None, 2)
    allowed = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
    if len(parts) < 2 or parts[0] not in allowed:
        raise BadRequest("not an OpenSSH public key line (type base64 [comment])",
                         "不是OpenSSH公钥格式（类型 base64 [注释]）", code="bad_public_key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise BadRequest("the public key's base64 part is malformed", "公钥的base64部分格式错误",
                         code="bad_public_key") from None
    return parts[0], blob, parts[2] if len(parts) > 2 else ""


class AccountService:
    """Creates accounts and checks their credentials."""

    def __init__(self, session: Session, actor: str = "system") -> None:
        self.session = session
        self.actor = actor

    # -- accounts -------------------------------------------------------------------------
    def _role_and_party(self, role: str, party: str | None) -> Area | None:
        """Check a role and its party: provinces name a province or local network, HQ roles none."""
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}", f"角色应为 {', '.join(ROLES)} 之一",
                             code="bad_role")
        if role == PROVINCE:
            area = self.session.get(Area, party) if party else None
            if area is None or area.level not in (PROVINCE_LEVEL, LOCAL_NETWORK):
                raise BadRequest(f"a province account needs a province or local network code, got {party!r}",
                                 f"省公司账户需要省份或本地网编码，收到 {party!r}", code="bad_party")
            if not area.active:
                # Abolished, or (at a province hub) another province's: nobody sends as it here.
                raise BadRequest(f"area {party} ({area.name_en}) is not served by this server: abolished, or "
                                 "another province's (a hub serves its own province only)",
                                 f"本服务器不受理 {party}（{area.name_zh}）：已撤销，或属于其他省份（省级枢纽只服务本省）",
                                 code="party_not_served", errors={"party": party})
            return area
        if party:
            raise BadRequest("only province accounts have a party", "只有省公司账户有所属单位", code="bad_party")
        return None

    def create(self, name: str, role: str, party: str | None = None, display_name: str = "",
               password: str | None = None) -> Account:
        """A new account; provinces name the party (province or local network code) they send as."""
        area = self._role_and_party(role, party)
        if self.session.scalar(select(Account).where(Account.name == name)) is not None:
            raise Conflict(f"account {name!r} already exists", f"账户 {name} 已存在", code="account_exists")
        if area is not None:
            display_name = display_name or area.name_zh
        account = Account(name=name, role=role, party=party, display_name=display_name)
        if password is not None:
            account.password_hash = _hasher.hash(password)
        self.session.add(account)
        self.session.flush()
        record(self.session, self.actor, "account.create", f"account:{name}", role=role, party=party)
        return account

    def set_role(self, account: Account, role: str, party: str | None = None) -> None:
        """Give an account another role (and, for provinces, the party it acts for); audited."""
        party = party or None
        self._role_and_party(role, party)
        if (account.role, account.party) == (role, party):
            return
        before = {"role": account.role, "party": account.party}
        account.role, account.party = role, party
        self.end_sessions(account)  # what its pages showed and allowed was the old role's
        record(self.session, self.actor, "account.role", f"account:{account.name}", before=before, role=role,
               party=party)

    def get(self, name: str) -> Account:
        """The account with this login name."""
        account = self.session.scalar(select(Account).where(Account.name == name))
        if account is None:
            raise NotFound(f"no account {name!r}", f"账户 {name} 不存在", code="account_not_found")
        return account

    def list(self) -> list[Account]:
        """Every account, by name."""
        return list(self.session.scalars(select(Account).order_by(Account.name)))

    def set_password(self, account: Account, password: str) -> None:
        """Store a new password (argon2id hash)."""
        if len(password) < 8:
            raise BadRequest("a password needs at least 8 characters", "密码至少8个字符", code="weak_password")
        account.password_hash = _hasher.hash(password)
        self.end_sessions(account)  # whoever knew the old one is signed out everywhere
        record(self.session, self.actor, "account.password", f"account:{account.name}")

    def set_active(self, account: Account, active: bool) -> None:
        """Enable or disable an account (disabled accounts cannot authenticate; their sessions end)."""
        account.active = active
        if not active:
            self.end_sessions(account)
        record(self.session, self.actor, "account.enable" if active else "account.disable", f"account:{account.name}")

    def end_sessions(self, account: Account) -> None:
        """End every sign-in session of the account, wherever its cookie is: its session epoch moves on.

        Sessions record the epoch they were opened under (``pages.auth``); one that does not
        match the account's is signed out. Moved in SQL, so concurrent changes each count.
        """
        self.session.execute(update(Account).where(Account.id == account.id)
                             .values(session_epoch=Account.session_epoch + 1)
                             .execution_options(synchronize_session=False))
        self.session.expire(account, ["session_epoch"])  # read again on next use

    def verify_password(self, name: str, password: str) -> Account:
        """The account, if the password is right; Unauthorized otherwise (same message either way)."""
        account = self.session.scalar(select(Account).where(Account.name == name))
        bad = Unauthorized("wrong account name or password", "账户名或密码错误", code="bad_credentials")
        if account is None or not account.active or not account.password_hash:
            _hasher.hash(password)  # same cost whether or not the account exists
            raise bad
        try:
            _hasher.verify(account.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise bad from None
        if _hasher.check_needs_rehash(account.password_hash):
            account.password_hash = _hasher.hash(password)
        return account

    # -- API tokens -----------------------------------------------------------------------
    def create_token(self, account: Account, label: str = "", ttl_days: int | None = 365) -> tuple[str, ApiToken]:
        """A new token for ``account``: returns the secret (shown once) and its stored record."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + dt.timedelta(days=ttl_days) if ttl_days else None
        token = ApiToken(account=account, prefix=secret[:12], token_hash=hash_token(secret), label=label,
                         expires_at=expires)
        self.session.add(token)
        self.session.flush()
        record(self.session, self.actor, "token.create", f"account:{account.name}", token_id=token.id,
               prefix=token.prefix, label=label)
        return secret, token

    def revoke_token(self, token_id: int) -> ApiToken:
        """Revoke a token at once."""
        token = self.session.get(ApiToken, token_id)
        if token is None:
            raise NotFound(f"no token {token_id}", f"令牌 {token_id} 不存在", code="token_not_found")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            record(self.session, self.actor, "token.revoke", f"account:{token.account.name}", token_id=token_id)
        return token

    def authenticate_token(self, secret: str) -> Account:
        """The account a bearer token belongs to; Unauthorized when unknown, revoked or expired."""
        token = self.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
        now = utcnow()
        if token is None or token.revoked_at is not None or not token.account.active or (
                token.expires_at is not None and as_utc(token.expires_at) <= now):
            raise Unauthorized("the API token is unknown, revoked or expired",
                               "API令牌无效、已吊销或已过期", code="bad_token")
        # Recording every use would make each request a write; once a minute is enough to audit.
        if token.last_used_at is None or now - as_utc(token.last_used_at) > dt.timedelta(minutes=1):
            token.last_used_at = now
        return token.account

    # -- SSH keys -------------------------------------------------------------------------
    def add_ssh_key(self, account: Account, public_key_line: str, label: str = "") -> SshKey:
        """Register a public key for SFTP."""
        key_type, blob, comment = parse_public_key(public_key_line)
        fp = ssh_fingerprint(blob)
        if self.session.scalar(select(SshKey).where(SshKey.fingerprint == fp)) is not None:
            raise Conflict(f"key {fp} is already registered", f"公钥 {fp} 已登记", code="key_exists")
        key = SshKey(account=account, fingerprint=fp, key_type=key_type,
                     public_key=f"{key_type} {base64.b64encode(blob).decode('ascii')}", label=label or comment)
        self.session.add(key)
        self.session.flush()
        record(self.session, self.actor, "sshkey.add", f"account:{account.name}", fingerprint=fp)
        return key

    def rotate_ssh_key(self, account: Account, old_fingerprint: str, public_key_line: str) -> SshKey:
        """Replace one of the account's live keys: the new key added, the old revoked, in one transaction."""
        old = next((k for k in account.ssh_keys if k.fingerprint == old_fingerprint and k.revoked_at is None), None)
        if old is None:
            raise NotFound(f"{account.name} has no live key {old_fingerprint}",
                           f"{account.name} 没有有效公钥 {old_fingerprint}", code="key_not_found")
        new = self.add_ssh_key(account, public_key_line, old.label)
        self.revoke_ssh_key(old.fingerprint)
        record(self.session, self.actor, "sshkey.rotate", f"account:{account.name}", old=old.fingerprint,
               new=new.fingerprint)
        return new

    def revoke_ssh_key(self, fingerprint: str) -> SshKey:
        """Revoke a public key."""
        key = self.session.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint))
        if key is None:
            raise NotFound(f"no key {fingerprint}", f"公钥 {fingerprint} 不存在", code="key_not_found")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            record(self.session, self.actor, "sshkey.revoke", f"account:{key.account.name}", fingerprint=fingerprint)
        return key

    def account_for_key(self, blob: bytes) -> Account | None:
        """The active account that owns this public key, if any."""
        key = self.session.scalar(select(SshKey).where(SshKey.fingerprint == ssh_fingerprint(blob)))
        if key is None or key.revoked_at is not None or not key.account.active:
            return None
        return key.account


def authorised_parties(session: Session, account: Account) -> frozenset[str]:
    """The parties an account may send as: a province itself and its networks; a network itself."""
    if account.role == ADMIN:
        return frozenset()
    if account.role != PROVINCE or not account.party:
        return frozenset()
    area = session.get(Area, account.party)
    if area is None:
        return frozenset()
    if area.level == LOCAL_NETWORK:
        return frozenset({area.code})
    nets = session.scalars(select(Area.code).where(Area.parent_code == area.code))
    return frozenset({area.code, *nets})


def visible_parties(session: Session, account: Account) -> frozenset[str] | None:
    """Whose deliveries an account may read: None means everyone (HQ roles)."""
    if account.role in (ADMIN, "analyst"):
        return None
    return authorised_parties(session, account)
