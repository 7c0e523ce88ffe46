"""Names -> codes: a coded field accepts the code list's own names without configuration.

The standard's code lists carry every code's Chinese and English name (and, for areas, a
level). A CRM export usually prints the name, or a short form of it, rather than the code:
``武汉`` for ``027 武汉本地网``, ``银行托收`` for ``03``, ``是`` for ``Y``. For a field whose
type is a code of an enumerated list, :class:`CodeNames` maps such a value to its code,
using the version of the list in force for the cycle and only the codes the field may carry
(a ``LATN_ID`` looks among the local networks, a ``PROV_ID`` among the provinces):

1. the code itself (any version of the list: whether it is in force is the validator's call);
2. the province's own translation table for the list (``[codes.<Domain>]`` in the config);
3. a code's Chinese or English name (English case-insensitively, full-width forms folded);
4. a short form: the name and the value both without a generic suffix such as 本地网, 分公司,
   公司, 省, 市, 地区 — derived from the names, never a hand list per province;
5. for a yes/no list (codes ``Y`` and ``N``): also true/false, 对/错, 有/无.

A value matching two codes is refused with both candidates named (:class:`AmbiguousName`).
Anything else is passed on unchanged: the validator judges it (E307) and
:func:`CodeNames.suggest` offers the closest names for the finding.
"""
from __future__ import annotations

import datetime as dt
import difflib
import unicodedata
from dataclasses import dataclass
from typing import Mapping

from schemas.spec.model import CodeDomain, Field, Spec

# Generic suffixes of organisation and area names, longest first; stripped repeatedly.
SUFFIXES = ("特别行政区", "自治区", "本地网", "分公司", "子公司", "有限公司", "公司", "地区", "地市", "省", "市",
            "区", "县")
_YES = ("true", "yes", "y", "是", "对", "有", "1")
_NO = ("false", "no", "n", "否", "错", "无", "0")


class AmbiguousName(ValueError):
    """A value names more than one code of the field's list."""

    def __init__(self, value: str, candidates: list[tuple[str, str]]) -> None:
        shown = ", ".join(f"{c} {n}" for c, n in candidates)
        self.candidates = candidates
        self.en = f"a name of exactly one code, but {value!r} names several: {shown}; write the code instead"
        self.zh = f"唯一对应一个代码的名称，但“{value}”同时对应：{shown}；请改写为代码"
        super().__init__(self.en)


def fold(text: str) -> str:
    """A name as compared: NFKC (full-width -> half-width), case-folded, without spaces."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def short_form(text: str) -> str:
    """``text`` folded and without generic suffixes (武汉本地网 -> 武汉, 湖北省 -> 湖北); never shorter than 2."""
    s = fold(text)
    changed = True
    while changed:
        changed = False
        for suffix in SUFFIXES:
            if s.endswith(suffix) and len(s) - len(suffix) >= 2:
                s = s[: -len(suffix)]
                changed = True
                break
    return s


@dataclass(frozen=True)
class CodeNames:
    """How one coded field's values map to codes of its list, for one cycle."""

    domain: str
    all_codes: frozenset[str]
    names: Mapping[str, str]  # code -> "code name_zh", for messages
    exact: Mapping[str, tuple[str, ...]]  # folded name -> codes
    short: Mapping[str, tuple[str, ...]]  # short form -> codes
    table: Mapping[str, str]  # the province's own [codes.<Domain>] table

    @classmethod
    def for_field(cls, spec: Spec, fld: Field, day: dt.date,
                  tables: Mapping[str, Mapping[str, str]] | None = None) -> "CodeNames | None":
        """The name resolution of ``fld`` on ``day``; None when the field is not an enumerated code."""
        if fld.type != "code" or not fld.domain:
            return None
        try:
            dom: CodeDomain = spec.domain(fld.domain)
        except KeyError:
            return None
        if dom.kind != "enumerated":
            return None
        ver = dom.version_on(day)
        codes = ver.field_codes(fld.area_level)
        exact: dict[str, set[str]] = {}
        short: dict[str, set[str]] = {}
        names: dict[str, str] = {}
        for entry in ver.codes.values():
            if entry.code not in codes:
                continue
            names[entry.code] = f"{entry.code} {entry.name_zh}"
            for name in (entry.name_zh, entry.name_en):
                if name:
                    exact.setdefault(fold(name), set()).add(entry.code)
                    short.setdefault(short_form(name), set()).add(entry.code)
        if set(codes) == {"Y", "N"}:
            for words, code in ((_YES, "Y"), (_NO, "N")):
                for w in words:
                    exact.setdefault(w, set()).add(code)
        all_codes = frozenset(c for v in dom.versions for c in v.codes)
        table = {fold(k): v for k, v in (tables or {}).get(dom.domain, {}).items()}
        return cls(dom.domain, all_codes, names, {k: tuple(sorted(v)) for k, v in exact.items()},
                   {k: tuple(sorted(v)) for k, v in short.items()}, table)

    def resolve(self, value: str) -> str:
        """The code ``value`` stands for; ``value`` itself when it is a code or names none (AmbiguousName if several)."""
        if value in self.all_codes:
            return value
        key = fold(value)
        if key in self.table:
            return self.table[key]
        hits = self.exact.get(key)
        if hits is None:
            hits = self.short.get(short_form(value))
        if not hits:
            return value
        if len(hits) > 1:
            raise AmbiguousName(value, [(c, self.names[c].split(" ", 1)[1]) for c in hits])
        return hits[0]

    def suggest(self, value: str, limit: int = 3) -> list[str]:
        """The codes whose names are closest to an unknown ``value``, as ``"027 武汉本地网"``."""
        key = short_form(value)
        if not key:
            return []
        found: list[str] = []
        for name, codes in self.short.items():
            if len(key) >= 2 and (key in name or name in key):
                found.extend(c for c in codes if c not in found)
        for name in difflib.get_close_matches(key, list(self.short), n=limit, cutoff=0.6):
            found.extend(c for c in self.short[name] if c not in found)
        return [self.names[c] for c in found[:limit]]


def suggestion_for(spec: Spec, fld: Field, value: str, day: dt.date,
                   tables: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """What the code list suggests for an unknown ``value`` of ``fld`` (empty when nothing is close)."""
    names = CodeNames.for_field(spec, fld, day, tables)
    if names is None or not value:
        return []
    resolved = names.resolve(value) if value not in names.all_codes else value
    if resolved != value:
        return [names.names.get(resolved, resolved)]
    return names.suggest(value)
