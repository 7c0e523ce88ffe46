"""Every setting of the exchange server, read in one place.

Precedence, lowest first: the defaults below, the instance file ``<data dir>/config.toml``,
environment variables ``KAM_<NAME>`` (e.g. ``KAM_DATABASE_URL``), then the mapping a caller
passes to ``create_app`` (tests, the ``demo`` command). Nothing else in the package reads
``os.environ``.
"""
from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

ENV_PREFIX = "KAM_"
MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Settings:
    """The server's configuration (see docs/server.md for every key)."""

    data_dir: str = "instance"
    database_url: str = ""  # default: SQLite file <data_dir>/exchange.db
    secret_key: str = ""  # default: generated once and kept in <data_dir>/secret_key
    # Uploads
    max_file_size: int = 2 * GiB  # one data file (CONVENTIONS §11)
    max_delivery_size: int = 8 * GiB  # all files of one HTTP request
    max_files_per_delivery: int = 1000  # 999 data files + the check file
    upload_chunk: int = 1 * MiB
    # Ingestion
    worker_threads: int = 1  # ingestion workers started by `serve` in its own process
    worker_poll_seconds: float = 0.5
    job_lease_seconds: int = 900  # a claimed job whose worker vanished is retried after this
    job_max_attempts: int = 3
    findings_cap: int = 1000  # occurrences listed per error code (totals always exact)
    # A data file this big is validated in parts on several processes (XML always; text under
    # the rows core), on validation_workers of them (0: one per core, at most 4; 1: never split).
    validation_workers: int = 0
    validation_parallel_min_bytes: int = 48 * MiB
    review_late_acceptances: bool = False  # a delivery late (W603) but otherwise clean is a review item
    # HTTP (see docs/deploying.md for what these promise)
    host: str = "127.0.0.1"
    port: int = 8080
    sftp_port: int = 8022
    http_threads: int = 8  # request threads kept ready; more are started while none is idle
    http_max_threads: int = 512  # the most request threads; spare ones end after a minute idle
    http_backlog: int = 1024  # connections the kernel queues before we accept them (listen backlog)
    http_header_timeout: float = 15.0  # to receive a request line and headers (and the TLS handshake)
    http_idle_timeout: float = 60.0  # a kept-alive connection waiting for its next request
    http_timeout: float = 120.0  # silence while a request body is read or an answer written
    http_max_header_size: int = 64 * 1024  # request line and headers; above it: 431
    public_url: str = ""  # how agents reach us, for links in receipts; default http://host:port
    # TLS served directly (cheroot's builtin ssl adapter); both or neither
    tls_cert: str = ""  # PEM certificate chain, the server's certificate first
    tls_key: str = ""  # PEM private key
    # Behind a reverse proxy: X-Forwarded-For/-Proto are believed only from these addresses
    trusted_proxies: str = ""  # comma-separated addresses or networks, e.g. "127.0.0.1, 10.1.2.0/24"
    proxy_hops: int = 1  # proxies in front of us, each adding one X-Forwarded-For entry
    hsts_max_age: int = 365 * 86400  # Strict-Transport-Security on answers over HTTPS (0: none)
    # SFTP (embedded server, drop-box mode)
    sftp_enabled: bool = True
    sftp_password_auth: bool = False  # public keys only unless turned on
    sftp_quota_bytes: int = 16 * GiB  # what one account may have waiting in its inbox
    sftp_complete_wait_seconds: int = 3600  # a check file waits this long for its data files
    sftp_scan_seconds: float = 2.0  # how often inboxes are scanned (uploads also wake the scanner)
    dropbox_root: str = ""  # drop-box mode: <root>/<party>/inbox and outbox served by OpenSSH
    # Province hub (docs/tiers.md): set hub_party to run this server for one province's
    # prefectures; it forwards what the province approves to HQ (the "upstream").
    hub_party: str = ""  # e.g. "42"; empty: this server is HQ
    upstream_transport: str = "http"  # how the hub reaches HQ: http | sftp
    upstream_url: str = ""  # HQ's base URL (http transport)
    upstream_token_file: str = ""  # the province account's API token at HQ, in a file of its own
    upstream_ca_file: str = ""  # HQ's CA certificate (PEM); empty: the system's trust store
    upstream_sftp_host: str = ""
    upstream_sftp_port: int = 22
    upstream_sftp_user: str = ""
    upstream_sftp_key_file: str = ""  # the province's private key for HQ's SFTP server
    upstream_sftp_known_hosts: str = ""  # HQ's host key (never accepted blindly)
    upstream_timeout: float = 120.0
    hub_sync_seconds: float = 300.0  # how often the hub fetches HQ's calendar, list and code lists
    hub_poll_seconds: float = 5.0  # how often the forwarder sends queued forwards and asks HQ for answers
    # Reminders before a cycle's deadline (docs/admin.md "Reminders")
    reminder_days_before: str = "3,1"  # leads in days; each is sent at most once per party and cycle
    reminder_check_seconds: float = 3600.0  # how often `serve` looks for reminders to send (0: never; cron instead)
    # E-mail (reminders): none is sent unless smtp_host is set
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""  # the sender address, e.g. kam-exchange@hq.example
    smtp_starttls: bool = False  # upgrade the connection with STARTTLS before signing in
    smtp_user: str = ""  # sign in when set
    smtp_password: str = ""
    smtp_timeout: float = 30.0
    # Auth
    token_ttl_days: int = 365
    session_cookie_secure: bool = False  # always Secure; without it, Secure whenever the request came over HTTPS
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def archive_path(self) -> Path:
        """Where received and issued files are kept, content-addressed."""
        return self.data_path / "archive"

    @property
    def sftp_root(self) -> Path:
        """The embedded SFTP server's tree: one folder per party with inbox/ and outbox/."""
        return self.data_path / "sftp"

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data directory."""
        return self.database_url or f"sqlite:///{self.data_path / 'exchange.db'}"

    @property
    def tls(self) -> bool:
        """Whether ``serve`` speaks HTTPS itself."""
        return bool(self.tls_cert)

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``trusted_proxies`` parsed (load_settings has checked it)."""
        return tuple(ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def is_hub(self) -> bool:
        """Whether this server is a province hub (it has an upstream HQ) rather than HQ."""
        return bool(self.hub_party)

    @property
    def reminder_leads(self) -> tuple[int, ...]:
        """``reminder_days_before`` parsed: whole days, largest first (load_settings has checked it)."""
        return tuple(sorted({int(p) for p in self.reminder_days_before.replace(";", ",").split(",") if p.strip()},
                            reverse=True))

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite (single writer) rather than PostgreSQL."""
        return self.effective_database_url.startswith("sqlite")


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} must be a whole number, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} must be a number, got {raw!r}") from None
    if isinstance(raw, (list, tuple)):  # a TOML array for a list-like setting (trusted_proxies)
        return ", ".join(str(v) for v in raw)
    return str(raw)


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings: defaults, instance file, environment, then ``overrides``."""
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    known = {f.name: f for f in fields(Settings) if f.name != "extra"}
    base = Settings()
    values: dict[str, Any] = {}
    data_dir = overrides.get("data_dir") or env.get(ENV_PREFIX + "DATA_DIR") or base.data_dir
    instance_file = Path(data_dir).expanduser() / "config.toml"
    if instance_file.is_file():
        try:
            from_file = tomllib.loads(instance_file.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{instance_file}: not valid TOML: {exc}") from None
        for k, v in from_file.items():
            if k not in known:
                raise ConfigError(f"{instance_file}: unknown setting {k!r}")
            values[k] = v
    for name in known:
        if ENV_PREFIX + name.upper() in env:
            values[name] = env[ENV_PREFIX + name.upper()]
    extra: dict[str, Any] = {}
    for k, v in overrides.items():
        if k in known:
            values[k] = v
        else:
            extra[k] = v
    values["data_dir"] = data_dir
    typed = {k: _coerce(k, v, getattr(base, k)) for k, v in values.items()}
    settings = replace(base, **typed, extra=extra)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    """Settings that cannot work together, refused before anything starts."""
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError("settings tls_cert and tls_key go together: set both (HTTPS) or neither (HTTP)")
    for name in ("tls_cert", "tls_key"):
        path = getattr(s, name)
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"setting {name}: no such file {path}")
    try:
        networks = s.trusted_proxy_networks
    except ValueError as exc:
        raise ConfigError(f"setting trusted_proxies: {exc}") from None
    if s.proxy_hops < 1 or (s.proxy_hops > 1 and not networks):
        raise ConfigError(f"setting proxy_hops ({s.proxy_hops}) counts the proxies listed in trusted_proxies: "
                          "1 or more, and trusted_proxies must name them")
    if not 1 <= s.http_threads <= s.http_max_threads:
        raise ConfigError(f"settings http_threads ({s.http_threads}) and http_max_threads ({s.http_max_threads}): "
                          "need 1 <= http_threads <= http_max_threads")
    if s.hub_party:
        if not (len(s.hub_party) == 2 and s.hub_party.isdigit()) or s.hub_party == "00":
            raise ConfigError(f"setting hub_party must be a province code (two digits, e.g. 42), got {s.hub_party!r}")
        if s.upstream_transport not in ("http", "sftp"):
            raise ConfigError(f"setting upstream_transport must be http or sftp, got {s.upstream_transport!r}")
        needed = (("upstream_url", "upstream_token_file") if s.upstream_transport == "http" else
                  ("upstream_sftp_host", "upstream_sftp_user", "upstream_sftp_key_file", "upstream_sftp_known_hosts"))
        missing = [n for n in needed if not getattr(s, n)]
        if missing:
            raise ConfigError(f"a hub ({s.hub_party}) reaching HQ over {s.upstream_transport} needs "
                              f"{', '.join(missing)} (docs/tiers.md)")
    try:
        leads = s.reminder_leads
    except ValueError:
        leads = (-1,)
    if any(d < 0 for d in leads):
        raise ConfigError(f"setting reminder_days_before must list whole days before a deadline, e.g. \"3,1\"; "
                          f"got {s.reminder_days_before!r}")
    if s.smtp_host and not s.smtp_from:
        raise ConfigError("setting smtp_host needs smtp_from (the sender address of reminder e-mails)")
    for name in ("http_header_timeout", "http_idle_timeout", "http_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"setting {name} must be a positive number of seconds")


def ensure_secret_key(settings: Settings) -> Settings:
    """A settings copy with a secret key: configured, else generated once and kept on disk."""
    if settings.secret_key:
        return settings
    from .private_files import create_private

    path = settings.data_path / "secret_key"
    if not path.exists():
        create_private(path, secrets.token_hex(32).encode("ascii"))  # one key even if two processes start
    return replace(settings, secret_key=path.read_text().strip())
