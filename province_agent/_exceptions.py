"""Errors raised by the province agent.

    AgentError                 base: everything the agent raises on purpose (exit status in ``exit_code``)
    ├── ConfigError        2   the configuration or a mapping is wrong (names the file and key)
    ├── BuildError         2   an export cannot be turned into the spec's files (names file, line, column)
    ├── RejectedError      1   a delivery was (or would be) rejected
    ├── TransportError     3   HQ could not be reached, or a transfer failed, after retries
    └── LockedError        0   another run holds the lock (cron overlap: not a failure)
"""
from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code = 1


class ConfigError(AgentError):
    """The configuration (or a column mapping) is wrong."""

    exit_code = 2

    def __init__(self, message: str, file: Path | str | None = None, key: str | None = None) -> None:
        where = f"{file}" if file else ""
        if key:
            where += f" [{key}]"
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.key = key


class BuildError(AgentError):
    """An export cannot be turned into a spec file."""

    exit_code = 2


class RejectedError(AgentError):
    """A delivery was rejected (locally or by HQ)."""

    exit_code = 1


class TransportError(AgentError):
    """HQ could not be reached or a transfer failed, after retries."""

    exit_code = 3


class LockedError(AgentError):
    """Another run of the agent holds the lock."""

    exit_code = 0
