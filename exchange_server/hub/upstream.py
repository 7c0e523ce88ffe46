"""The hub's client for HQ: the province agent's transport layer, configured from the server's settings.

The hub reaches HQ exactly as a province agent does (``province_agent.transport``): the
same HTTP client with its token and CA, or the same SFTP client with its key and pinned
host key, the same receipts and verdicts. The agent package never imports the server; the
server imports only the agent's transports.
"""
from __future__ import annotations

from pathlib import Path

from province_agent.transport.base import Transport

from ..config import Settings
from ..errors import ConfigError


def read_token(path: str) -> str:
    """The hub's API token at HQ, from its own file (never from the configuration itself)."""
    try:
        token = Path(path).expanduser().read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"upstream_token_file {path}: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(f"upstream_token_file {path} is empty")
    return token


def open_upstream(settings: Settings) -> Transport:
    """A transport to HQ as the settings describe it (``upstream_*``)."""
    if not settings.is_hub:
        raise ConfigError("this server is not a province hub: set hub_party and the upstream_* settings")
    if settings.upstream_transport == "sftp":
        from province_agent.transport.sftp import SftpTransport

        return SftpTransport(settings.upstream_sftp_host, settings.upstream_sftp_port, settings.upstream_sftp_user,
                             settings.upstream_sftp_key_file, settings.upstream_sftp_known_hosts, settings.hub_party,
                             timeout=settings.upstream_timeout)
    from province_agent.transport.http import HttpTransport

    return HttpTransport(settings.upstream_url, read_token(settings.upstream_token_file),
                         timeout=settings.upstream_timeout, ca_file=settings.upstream_ca_file or None)
