"""Errors raised by the contract package.

    SchemasError                 base of everything this package raises
    ├── SpecError                a spec file is wrong (names the file and the key)
    ├── ExpressionError          a rule expression is not in the allowed language
    ├── FileNameError            a name does not follow CONVENTIONS.md §3
    └── CheckFileError           a check file does not follow CONVENTIONS.md §4
"""
from __future__ import annotations


class SchemasError(Exception):
    """Base class of every error raised by the schemas package."""


class SpecError(SchemasError):
    """A spec file is missing, malformed or inconsistent."""

    def __init__(self, message: str, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file:
            where = f"{file}"
            if key:
                where += f" [{key}]"
            where += ": "
        super().__init__(f"{where}{message}")
        self.message = message


class ExpressionError(SchemasError):
    """A rule expression uses something outside the allowed language."""


class FileNameError(SchemasError):
    """A file name does not follow the naming convention."""


class CheckFileError(SchemasError):
    """A check file does not follow the check-file format."""

    def __init__(self, message: str, line: int = 0, value: str = "", expected: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.value = value
        self.expected = expected
