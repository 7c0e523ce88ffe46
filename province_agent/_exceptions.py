"""Errors raised by the province agent, and the exit statuses they end a command with.

    AgentError                 base: everything the agent raises on purpose (exit status in ``exit_code``)
    ├── ConfigError        2   the configuration or a mapping is wrong (names the file and key)
    ├── BuildError         1   an export cannot be turned into the spec's files (names file, line, column)
    │   └── ExportProblems 1   every problem found in the exports at once (``problems``)
    ├── RejectedError      1   a delivery was (or would be) rejected
    ├── TransportError     3   HQ could not be reached, or a transfer failed, after retries
    │   └── CredentialsError 4 HQ refused our credentials (API token revoked or wrong, SSH key refused)
    ├── ActionNeeded       5   nothing was sent because a person must act first (cycle closed without an
    │                          exception; HQ asked for a resend and the exports have not changed)
    └── LockedError        0   another run holds the lock (cron overlap: not a failure)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_REJECTED, EXIT_CONFIG, EXIT_TRANSPORT, EXIT_CREDENTIALS, EXIT_ACTION = 0, 1, 2, 3, 4, 5
# The most serious status wins when one run meets several outcomes.
EXIT_ORDER = {EXIT_OK: 0, EXIT_ACTION: 1, EXIT_REJECTED: 2, EXIT_TRANSPORT: 3, EXIT_CREDENTIALS: 4, EXIT_CONFIG: 5}


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code = 1
    #: a short bilingual head for the one line a command prints
    label = "错误 / error"


class ConfigError(AgentError):
    """The configuration (or a column mapping) is wrong."""

    exit_code = 2
    label = "配置错误 / configuration error"

    def __init__(self, message: str, file: Path | str | None = None, key: str | None = None) -> None:
        where = f"{file}" if file else ""
        if key:
            where += f" [{key}]"
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.key = key


class BuildError(AgentError):
    """An export cannot be turned into a spec file: a problem in the data, not in the configuration."""

    exit_code = 1
    label = "导出文件有误 / problem in the exports"


class ExportProblems(BuildError):
    """Every problem found while reading the exports, reported together (one per cell).

    ``problems`` are whatever the mapping found: objects with ``message_zh``/``message_en``
    (and optionally ``describe()`` naming the export's file, sheet, row, column and cell), or
    plain strings. ``check`` and ``submit`` print every one of them.
    """

    def __init__(self, problems: Sequence[Any], message: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__(message or f"{len(self.problems)} problem(s) in the exports / 导出文件中有 "
                                    f"{len(self.problems)} 处问题")


class RejectedError(AgentError):
    """A delivery was rejected (locally or by HQ)."""

    exit_code = 1
    label = "拒收 / rejected"


class TransportError(AgentError):
    """HQ could not be reached or a transfer failed, after retries."""

    exit_code = 3
    label = "无法连通总部 / HQ unreachable"


class CredentialsError(TransportError):
    """HQ refused our credentials: the API token is revoked or wrong, or the SSH key is not registered."""

    exit_code = 4
    label = "总部拒绝了本省的凭据 / HQ refused our credentials"


class ActionNeeded(AgentError):
    """Nothing was sent because a person must act first (HQ's admin, or the province's data owner)."""

    exit_code = 5
    label = "需要人工处理 / action needed"


class LockedError(AgentError):
    """Another run of the agent holds the lock."""

    exit_code = 0
    label = "另一次运行正在进行 / another run is in progress"
