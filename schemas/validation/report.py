"""The verdict on a delivery: findings, counts per code, status."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Iterable, Mapping, Sequence

from ..conventions import shown
from ..spec.model import Rule, Spec

ACCEPTED = "accepted"
ACCEPTED_WITH_WARNINGS = "accepted_with_warnings"
REJECTED = "rejected"
DEFAULT_CAP = 1000


@dataclass(frozen=True)
class Finding:
    """One thing found wrong: where, what, what was expected, in both languages."""

    code: str
    severity: str
    tier: int
    message_zh: str
    message_en: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    value: str | None = None
    expected: str | None = None
    xpath: str | None = None
    unit: str | None = None
    # The accepted version(s) a cross-unit finding compared the delivery with, both languages.
    compared_with: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready mapping (None values left out)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class SkippedRules:
    """Rules not run because a unit they need could not be read: said once, not per row."""

    unit: str
    file: str
    code: str  # the structural error that made the file unreadable
    rules: tuple[str, ...]

    @property
    def message_zh(self) -> str:
        """Why, in Chinese."""
        return (f"{self.file} 存在结构错误（{self.code}），其数据无法完整读取；依赖 {self.unit} 的规则 "
                f"{'、'.join(self.rules)} 未执行")

    @property
    def message_en(self) -> str:
        """Why, in English."""
        return (f"{self.file} has a structural error ({self.code}) and could not be read in full; the rules that "
                f"need {self.unit} were not run: {', '.join(self.rules)}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"unit": self.unit, "file": self.file, "code": self.code, "rules": list(self.rules),
                "message_zh": self.message_zh, "message_en": self.message_en}


@dataclass
class FileSummary:
    """What was read from one data file."""

    name: str
    unit: str | None = None
    format: str | None = None
    encoding: str | None = None
    size: int | None = None
    sha256: str | None = None
    rows: int = 0
    errors: int = 0
    warnings: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    """All findings of one delivery; occurrences are capped per code, totals never are."""

    spec: Spec
    cap: int = DEFAULT_CAP
    delivery: str | None = None
    party: str | None = None
    period: str | None = None
    mode: str | None = None
    resend: int | None = None
    counts: Counter[str] = dc_field(default_factory=Counter)
    findings: list[Finding] = dc_field(default_factory=list)
    files: dict[str, FileSummary] = dc_field(default_factory=dict)
    stopped_at_tier: int | None = None
    # file -> the first structural (tier 2) error met in it: its unit cannot be trusted whole
    structural: dict[str, str] = dc_field(default_factory=dict)
    skipped: list[SkippedRules] = dc_field(default_factory=list)
    _rules: dict[str, Rule] = dc_field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._rules = {r.id: r for r in self.spec.all_rules()}

    # -- adding -------------------------------------------------------------------------
    def severity_of(self, code: str) -> str:
        """error or warning, from the catalogue or the rule."""
        if code in self.spec.errors:
            return self.spec.errors[code].severity
        return self._rules[code].severity

    def tier_of(self, code: str) -> int:
        """The tier a code belongs to (rules: 3-4 for unit rules, 5 for cross-unit)."""
        if code in self.spec.errors:
            return self.spec.errors[code].tier
        return 5 if self._rules[code].scope == "cross_unit" else 4

    def add(self, code: str, file: str | None = None, line: int | None = None, field: str | None = None,
            value: Any = None, expected: Any = None, *, row: Mapping[str, Any] | None = None,
            xpath: str | None = None, unit: str | None = None,
            compared_with: tuple[str, str] | None = None) -> None:
        """Record one occurrence of ``code``; the details are kept only under the cap.

        ``compared_with`` names (Chinese, English) the accepted version(s) a cross-unit
        finding compared the delivery with; the messages say it too.
        """
        self.counts[code] += 1
        tier = self.tier_of(code)
        if file is not None and file in self.files:
            fs = self.files[file]
            if self.severity_of(code) == "error":
                fs.errors += 1
            else:
                fs.warnings += 1
            if tier == 2:
                self.structural.setdefault(file, code)
        if self.counts[code] > self.cap:
            return
        # Whatever a file held, a finding carries only text that XML 1.0, JSON and a database
        # can hold: forbidden characters (a NUL, U+FFFF, ...) are shown as escapes (\x00).
        value_s = None if value is None else _bounded(shown(str(value)))
        expected_s = None if expected is None else _bounded(shown(str(expected)))
        file = None if file is None else shown(file)
        field = None if field is None else shown(field)
        zh, en = self._messages(code, file, line, field, value_s, expected_s, row)
        zh, en = shown(zh), shown(en)
        compared = None
        if compared_with is not None:
            zh += f"（对照已采纳的 {shown(compared_with[0])}）"
            en += f" (compared with accepted {shown(compared_with[1])})"
            compared = shown(f"{compared_with[0]} / {compared_with[1]}")
        self.findings.append(Finding(code, self.severity_of(code), tier, zh, en, file, line, field,
                                     value_s, expected_s, None if xpath is None else shown(xpath), unit, compared))

    def _messages(self, code: str, file: str | None, line: int | None, field: str | None, value: str | None,
                  expected: str | None, row: Mapping[str, Any] | None) -> tuple[str, str]:
        if code in self.spec.errors:
            e = self.spec.errors[code]
            params = _Params(file=file or "", line=line if line is not None else "", field=field or "",
                             value=value if value is not None else "", expected=expected if expected is not None else "")
            return e.message_zh.format_map(params), e.message_en.format_map(params)
        r = self._rules[code]
        params = _Params(row or {})
        return r.message_zh.format_map(params), r.message_en.format_map(params)

    # -- reading ------------------------------------------------------------------------
    @property
    def errors(self) -> int:
        """Total occurrences of error-severity codes."""
        return sum(n for c, n in self.counts.items() if self.severity_of(c) == "error")

    @property
    def warnings(self) -> int:
        """Total occurrences of warning-severity codes."""
        return sum(n for c, n in self.counts.items() if self.severity_of(c) == "warning")

    @property
    def status(self) -> str:
        """accepted, accepted_with_warnings or rejected."""
        if self.errors:
            return REJECTED
        if self.warnings:
            return ACCEPTED_WITH_WARNINGS
        return ACCEPTED

    @property
    def has_tier1_errors(self) -> bool:
        """Whether a delivery-level (tier 1) error was found."""
        return any(self.tier_of(c) == 1 and self.severity_of(c) == "error" for c in self.counts)

    def codes(self) -> list[str]:
        """Codes found, in catalogue order."""
        return sorted(self.counts, key=_code_order)

    def of_code(self, code: str) -> list[Finding]:
        """The recorded occurrences of one code."""
        return [f for f in self.findings if f.code == code]

    def sorted_findings(self) -> list[Finding]:
        """Findings ordered: what makes a file unreadable (tiers 1 and 2) first, then by file, line, code."""
        return sorted(self.findings, key=lambda f: (f.tier > 2, f.file or "", f.line or 0, _code_order(f.code)))

    def code_summary(self) -> list[dict[str, Any]]:
        """One entry per code: count, listed, severity, tier, titles."""
        out = []
        for c in self.codes():
            title_zh, title_en = self.titles(c)
            listed = min(self.counts[c], self.cap)
            out.append({"code": c, "severity": self.severity_of(c), "tier": self.tier_of(c), "count": self.counts[c],
                        "listed": listed, "title_zh": title_zh, "title_en": title_en})
        return out

    def titles(self, code: str) -> tuple[str, str]:
        """Short titles for a code (rules use their unit and id)."""
        return code_titles(self.spec, code, self._rules)

    def as_dict(self) -> dict[str, Any]:
        """The whole report as a JSON-ready mapping."""
        return {
            "status": self.status,
            "delivery": self.delivery,
            "party": self.party,
            "period": self.period,
            "mode": self.mode,
            "resend": self.resend,
            "spec_version": self.spec.version,
            "errors": self.errors,
            "warnings": self.warnings,
            "stopped_at_tier": self.stopped_at_tier,
            "occurrence_cap": self.cap,
            "files": [f.as_dict() for f in self.files.values()],
            "counts": self.code_summary(),
            "skipped": [s.as_dict() for s in self.skipped],
            "findings": [f.as_dict() for f in self.sorted_findings()],
        }


# The longest value or expected text a finding lists: a megabyte-long value must not make
# every feedback file a gigabyte (the finding still says how long it was).
MAX_SHOWN = 1000


def _bounded(text: str) -> str:
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}…（共{len(text)}个字符 / {len(text)} characters）"


class _Params(dict[str, Any]):
    """format_map mapping that leaves unknown placeholders visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _code_order(code: str) -> tuple[int, str]:
    if code[0] in "EW" and code[1:].isdigit():
        return (int(code[1]), code[1:] + code[0])
    if code.startswith("X-"):
        return (5, code)
    return (4, code)


def merge_counts(reports: Iterable[Report]) -> Counter[str]:
    """Sum the per-code counts of several reports."""
    total: Counter[str] = Counter()
    for r in reports:
        total.update(r.counts)
    return total


def worst_status(statuses: Sequence[str]) -> str:
    """The worst of several statuses (rejected > warnings > accepted)."""
    order = [ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED]
    return max(statuses, key=order.index) if statuses else ACCEPTED


def code_titles(spec: Spec, code: str, rules: Mapping[str, Rule] | None = None) -> tuple[str, str]:
    """(Chinese, English) title of a finding code: the catalogue's, or for a rule its id and unit; empty if unknown."""
    if code in spec.errors:
        e = spec.errors[code]
        return e.title_zh, e.title_en
    r = (rules if rules is not None else {x.id: x for x in spec.all_rules()}).get(code)
    if r is None:
        return "", ""
    if r.unit and spec.has_unit(r.unit):
        unit = spec.unit(r.unit)
        return (f"规则 {code}（{unit.code} {unit.name_zh}）", f"Rule {code} ({unit.code} {unit.name_en})")
    if r.unit:
        return f"规则 {code}（{r.unit}）", f"Rule {code} ({r.unit})"
    return f"跨单元规则 {code}", f"Cross-unit rule {code}"
