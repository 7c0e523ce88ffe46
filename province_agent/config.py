"""The agent's configuration: one TOML file, checked completely before anything runs.

```toml
[agent]
party = "42"                     # the province (or a local network, e.g. "0710", for the prefecture role)
state_dir = "/var/lib/kam-agent" # state.db, the run lock, fetched lists, the spool of built deliveries
export_dir = "/data/crm-exports" # where the CRM exports land

[server]
transport = "http"               # http | sftp
url = "https://hq.example:8080"  # the HTTP API (calendar, verdicts; uploads when transport = http)
token_file = "/etc/kam-agent/token"
ca_file = "/etc/kam-agent/hq-ca.pem"  # HQ's CA certificate(s), PEM; empty: the system's trust store
verify_tls = true                # false turns the certificate check off (logged as a warning every run)
timeout = 300

[sftp]                           # when transport = sftp
host = "hq.example"
port = 8022
user = "prov42"
key_file = "/etc/kam-agent/id_ed25519"
known_hosts = "/etc/kam-agent/known_hosts"   # the host key is checked against this, never learned

[retry]
attempts = 5                     # per operation, with exponential backoff and jitter
base_seconds = 2
max_seconds = 300
verdict_timeout = 1800           # how long submit/run wait for HQ's verdict

[output]
format = "txt"                   # txt | xml
encoding = "GB18030"             # GB18030 | UTF-8
delimiter = "PIPE"               # PIPE | TAB | COMMA | CARET | US

[units.VIP_SUMMARY]              # one table per unit; see docs/agent.md for the mapping keys
source = "summary_{cycle}.csv"
...

[codes.Domain_c_type_id]         # the province's own names for a code list's codes, written once and used
"钢铁冶金企业" = "1401"           # by every unit and field of that list (names the list has need no entry)
```

Secrets are never in this file: the token and the SSH key are read from the files it names.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from schemas.conventions import DELIMITERS, ENCODINGS

from ._exceptions import ConfigError

TRANSPORTS = ("http", "sftp")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up (exit status 3)."""

    attempts: int = 5
    base_seconds: float = 2.0
    max_seconds: float = 300.0
    verdict_timeout: float = 1800.0


@dataclass(frozen=True)
class SftpSettings:
    """Where and how to reach HQ's SFTP server."""

    host: str = ""
    port: int = 22
    user: str = ""
    key_file: str = ""
    known_hosts: str = ""


@dataclass(frozen=True)
class OutputSettings:
    """The format of the files the agent builds."""

    format: str = "txt"
    encoding: str = "GB18030"
    delimiter: str = "PIPE"


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration."""

    path: Path
    party: str
    state_dir: Path
    export_dir: Path
    transport: str = "http"
    url: str = ""
    token_file: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    timeout: float = 300.0
    sftp: SftpSettings = field(default_factory=SftpSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    output: OutputSettings = field(default_factory=OutputSettings)
    units: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # [codes.<Domain>]: "the province's name" = "code", for names the code list does not have
    codes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def spool_dir(self) -> Path:
        """Where built deliveries wait until HQ has judged them."""
        return self.state_dir / "spool"

    @property
    def lists_dir(self) -> Path:
        """Where fetched list versions are kept."""
        return self.state_dir / "lists"

    def token(self) -> str:
        """The API token, read from its file (never from the config itself)."""
        return _read_secret(self.token_file, "server.token_file")


def _read_secret(path: str, key: str) -> str:
    if not path:
        raise ConfigError(f"{key} is not set", key=key)
    p = Path(path).expanduser()
    try:
        return p.read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {key} {p}: {exc.strerror}", key=key) from None


def _section(doc: Mapping[str, Any], name: str, allowed: set[str], file: Path) -> dict[str, Any]:
    sec = doc.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"[{name}] must be a table", file=file, key=name)
    unknown = set(sec) - allowed
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))} in [{name}]; allowed: "
                          f"{', '.join(sorted(allowed))}", file=file, key=name)
    return dict(sec)


def _typed(sec: dict[str, Any], key: str, kind: type, default: Any, file: Path, section: str) -> Any:
    value = sec.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{section}.{key} must be {kind.__name__}, got {value!r}", file=file, key=f"{section}.{key}")
    return value


def load_config(path: Path) -> AgentConfig:
    """Read and check the configuration file; ConfigError names the file and key on any problem."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration: {exc.strerror}", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path) from None
    unknown = set(doc) - {"agent", "server", "sftp", "retry", "output", "units", "codes"}
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))}", file=path)
    agent = _section(doc, "agent", {"party", "state_dir", "export_dir"}, path)
    server = _section(doc, "server", {"transport", "url", "token_file", "verify_tls", "ca_file", "timeout"}, path)
    sftp = _section(doc, "sftp", {"host", "port", "user", "key_file", "known_hosts"}, path)
    retry = _section(doc, "retry", {"attempts", "base_seconds", "max_seconds", "verdict_timeout"}, path)
    output = _section(doc, "output", {"format", "encoding", "delimiter"}, path)
    party = str(agent.get("party", ""))
    from schemas.conventions import DATA_NAME_RE

    if not party or not DATA_NAME_RE.match(f"P_{party}_202601_32001_00_001.txt") or party == "00":
        raise ConfigError(f"agent.party must be a province code (42) or a local network code (0710), got {party!r}",
                          file=path, key="agent.party")
    base = path.parent

    def rel(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    if "state_dir" not in agent or "export_dir" not in agent:
        raise ConfigError("agent.state_dir and agent.export_dir are required", file=path, key="agent")
    transport = _typed(server, "transport", str, "http", path, "server")
    if transport not in TRANSPORTS:
        raise ConfigError(f"server.transport must be http or sftp, got {transport!r}", file=path,
                          key="server.transport")
    url = _typed(server, "url", str, "", path, "server")
    if transport == "http" and not url:
        raise ConfigError("server.url is required with transport = http", file=path, key="server.url")
    s = SftpSettings(host=_typed(sftp, "host", str, "", path, "sftp"), port=_typed(sftp, "port", int, 22, path, "sftp"),
                     user=_typed(sftp, "user", str, "", path, "sftp"),
                     key_file=str(rel(sftp["key_file"])) if sftp.get("key_file") else "",
                     known_hosts=str(rel(sftp["known_hosts"])) if sftp.get("known_hosts") else "")
    if transport == "sftp":
        for key in ("host", "user", "key_file", "known_hosts"):
            if not getattr(s, key):
                raise ConfigError(f"sftp.{key} is required with transport = sftp", file=path, key=f"sftp.{key}")
    out = OutputSettings(format=_typed(output, "format", str, "txt", path, "output"),
                         encoding=_typed(output, "encoding", str, "GB18030", path, "output"),
                         delimiter=_typed(output, "delimiter", str, "PIPE", path, "output"))
    if out.format not in ("txt", "xml"):
        raise ConfigError(f"output.format must be txt or xml, got {out.format!r}", file=path, key="output.format")
    if out.encoding not in ENCODINGS:
        raise ConfigError(f"output.encoding must be one of {', '.join(ENCODINGS)}", file=path, key="output.encoding")
    if out.delimiter not in DELIMITERS:
        raise ConfigError(f"output.delimiter must be one of {', '.join(DELIMITERS)}", file=path,
                          key="output.delimiter")
    units = doc.get("units", {})
    if not isinstance(units, dict):
        raise ConfigError("[units] must hold one table per unit", file=path, key="units")
    codes = doc.get("codes", {})
    if not isinstance(codes, dict):
        raise ConfigError("[codes] must hold one table per code list, e.g. [codes.Domain_c_type_id]", file=path,
                          key="codes")
    for domain, table in codes.items():
        if not isinstance(table, dict) or not all(isinstance(v, str) and v.strip() for v in table.values()):
            raise ConfigError(f'[codes.{domain}] must be a table of "name" = "code" (codes in quotes)', file=path,
                              key=f"codes.{domain}")
    code_tables = {d: {str(k).strip(): v.strip() for k, v in t.items()} for d, t in codes.items()}
    token_file = server.get("token_file", "")
    ca_file = _typed(server, "ca_file", str, "", path, "server")
    if ca_file:
        ca_file = str(rel(ca_file))
        if not Path(ca_file).is_file():
            raise ConfigError(f"server.ca_file {ca_file} does not exist (HQ's CA certificate, PEM)", file=path,
                              key="server.ca_file")
    return AgentConfig(
        path=path, party=party, state_dir=rel(str(agent["state_dir"])), export_dir=rel(str(agent["export_dir"])),
        transport=transport, url=url, token_file=str(rel(token_file)) if token_file else "",
        verify_tls=_typed(server, "verify_tls", bool, True, path, "server"),
        ca_file=ca_file,
        timeout=_typed(server, "timeout", float, 300.0, path, "server"), sftp=s,
        retry=RetryPolicy(attempts=_typed(retry, "attempts", int, 5, path, "retry"),
                          base_seconds=_typed(retry, "base_seconds", float, 2.0, path, "retry"),
                          max_seconds=_typed(retry, "max_seconds", float, 300.0, path, "retry"),
                          verdict_timeout=_typed(retry, "verdict_timeout", float, 1800.0, path, "retry")),
        output=out, units=units, codes=code_tables)
