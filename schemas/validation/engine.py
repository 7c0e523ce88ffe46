"""Validate a delivery: the tiers of checks of CONVENTIONS.md §9, in order.

Tier 1 (delivery) runs first and stops everything when it finds an error: nothing else can
be trusted if the files are not the ones the check file describes. Tiers 2-6 then report
everything they find.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from lxml import etree

from .._exceptions import CheckFileError, FileNameError
from ..conventions import (
    CHECK_NAME_FORM, DATA_NAME_FORM, DELIMITERS, ENCODINGS, UPLOAD_MODES, CheckEntry, CheckFile, CheckFileName,
    Cycle, DataFileName, is_ignored,
)
from ..spec import load_spec
from ..spec.model import Rule, Spec, Unit
from ..spec import expressions
from .compiler import (
    RunContext, Sinks, build_checker, child_projection, key_fields, needed_projections, needed_sums, network_field,
    network_projection, parent_link,
)
from .readers import (
    ByteScan, CountedRows, XmlPart, XmlProblem, line_start_at_or_after, scan_bytes, text_lines, xml_encoding_problem,
    xml_parts, xml_root_attributes, xml_rows,
)
from .columnar import core_for_file, selected_core
from .report import DEFAULT_CAP, FileSummary, Report, SkippedRules
from .store import FLUSH_EVERY, SEP, KeyRow, KeyStore

if TYPE_CHECKING:
    from .parallel import RangeJob

DEFAULT_MAX_FILE_SIZE = 2 * 1024 ** 3


@dataclass
class ValidationOptions:
    """Limits of one validation run."""

    cap: int = DEFAULT_CAP
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    tmp_dir: str | None = None
    # Delimited files at least this big are split across worker processes.
    parallel_min_bytes: int = 48 * 1024 * 1024
    workers: int = 0  # 0: one per core, at most 4
    # Which core checks the rows: "auto" (the columnar core, schemas.validation.columnar, for
    # files of 512 KiB and more, the row path below), "columnar" or "rows" (the reference);
    # "" takes $KAM_VALIDATION_CORE, else "auto".
    core: str = ""

    @property
    def worker_count(self) -> int:
        """How many processes a large file is split across."""
        if self.workers:
            return self.workers
        return max(1, min(4, os.cpu_count() or 1))


@dataclass
class ValidationContext:
    """What the server (or the agent, from HQ's files) knows beyond the delivery itself.

    Every item is optional: a check whose context is missing is skipped, so the agent can
    validate offline and the server adds what only it knows.
    """

    list_ids: frozenset[str] | None = None  # the customers in force for the cycle that the sender's province leads
    list_version: str | None = None  # the list versions they come from (2026V01+2026V02)
    # Why a customer is or is not on the cycle's list (the version and entry that decided it),
    # for the findings of E604 and X-007; schemas.lists.CycleList.explain.
    list_explain: Callable[[str], str] | None = None
    # Whether the delivery must cover the whole list: a province's, not a local network's.
    list_complete: bool = True
    cycle_state: str | None = None  # open | closed | planned
    known_cycles: frozenset[str] | None = None
    units_due: frozenset[str] | None = None
    authorised_parties: frozenset[str] | None = None
    account: str | None = None
    last_resend: int | None = None
    deadline: str | None = None  # YYYYMMDDHHMMSS Beijing time
    received_at: str | None = None  # YYYYMMDDHHMMSS Beijing time
    previous: dict[str, dict[str, dict[str, str]]] | None = None
    outlier_ratio: Decimal = Decimal("0.5")
    # unit name -> the current accepted rows of that unit for the sender's area (the server's):
    # cross-unit rules compare a delivery with the units it leaves out (and with the local
    # networks it does not cover).
    accepted: Mapping[str, "AcceptedUnit"] | None = None


@dataclass(frozen=True)
class AcceptedSource:
    """One accepted version whose rows a delivery is compared with."""

    party: str  # whose scope it is: a unit the delivery carries replaces the sender's own versions
    file: str  # the accepted data file the rows come from (findings name it)
    label_zh: str  # 32003 第2版（交付 #17，P_42_202610_01）
    label_en: str  # 32003 v2 (delivery #17, P_42_202610_01)


@dataclass
class AcceptedUnit:
    """The current accepted rows of one unit, and the versions they come from.

    ``rows()`` yields (index into ``sources``, the local network the row counts for, the
    row's fields as text); it is called at most once, and only when a rule needs the unit.
    """

    sources: list[AcceptedSource]
    rows: Callable[[], Iterable[tuple[int, str, Mapping[str, str]]]]


@dataclass
class _DataFile:
    path: Path
    name: DataFileName
    unit: Unit
    rows_declared: int
    summary: FileSummary = dc_field(default_factory=lambda: FileSummary(""))
    checkpoints: list[tuple[int, int]] = dc_field(default_factory=list)
    declaration: tuple[int, str] | None = None  # XML: a DOCTYPE or entity declaration found by tier 1's byte pass
    crlf: bool | None = None  # text: every line ends in CRLF (else none does: tier 1 refuses a mix)


def group_deliveries(paths: Iterable[Path]) -> list[list[Path]]:
    """Split files (or directories of files) into deliveries, one per check file.

    A file belongs to the check file that lists it, even when its own name is wrong (so the
    wrong name is reported inside its delivery). Other data files are grouped by the check
    file their name implies, so each such group is reported as a delivery whose check file
    is missing; a badly named file no check file lists joins the only check file of its
    folder, or stands alone.
    """
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.is_file() and not is_ignored(q.name)))
        else:
            files.append(p)
    groups: dict[str, list[Path]] = {}
    listed: dict[tuple[Path, str], str] = {}
    checks_in: dict[Path, list[str]] = {}
    for f in files:
        if f.name.endswith(".chk"):
            groups.setdefault(f.name, []).append(f)
            checks_in.setdefault(f.parent, []).append(f.name)
            for name in _listed_names(f):
                listed[(f.parent, name)] = f.name
    for f in files:
        if f.name.endswith(".chk"):
            continue
        key = listed.get((f.parent, f.name))
        if key is None:
            try:
                key = str(DataFileName.parse(f.name).check_name)
            except FileNameError:
                own = checks_in.get(f.parent, [])
                key = own[0] if len(own) == 1 else f"?{f.name}"
        groups.setdefault(key, []).append(f)
    return [groups[k] for k in sorted(groups)]


def _listed_names(check_path: Path) -> list[str]:
    """File names a check file lists, or none when it cannot be read (tier 1 reports that)."""
    try:
        if check_path.stat().st_size > 4 * 1024 * 1024:
            return []
        return [e.name for e in CheckFile.parse(check_path.read_bytes()).entries]
    except (OSError, CheckFileError, ValueError, UnicodeDecodeError):  # reported by the delivery's tier 1
        return []


@functools.lru_cache(maxsize=16)
def _structural_schema(spec_root: str, unit_code: str) -> etree.XMLSchema | None:
    """The unit's XSD with every value type relaxed to text, for streaming structure checks.

    Values are checked by the compiled row checks, which report every bad value with its
    own code and keep going; the XSD here only guards the structure (names, order,
    presence, namespace), which is where a stream stops being readable.
    """
    from ..codegen.xsd import unit_xsd

    spec = load_spec(spec_root)
    doc = etree.fromstring(unit_xsd(spec, spec.unit(unit_code)), etree.XMLParser(resolve_entities=False))
    xs = "{http://www.w3.org/2001/XMLSchema}"
    for st in doc.iter(f"{xs}simpleType"):
        for child in list(st):
            st.remove(child)
        etree.SubElement(st, f"{xs}restriction", base="xs:string")
    # A global ROW lets the reader check one record on its own to find the line of an error.
    doc.append(etree.Element(f"{xs}element", name="ROW", type="ROW_type"))
    return etree.XMLSchema(doc)


class _AcceptedRows:
    """Feeds the accepted rows of units a delivery leaves out (or does not fully cover) into the key store and sums.

    A unit the delivery carries replaces, once accepted, the sender's own versions of it and
    the other scopes' rows for the local networks it covers; the accepted rows that stay are
    those of other scopes (a local network's own delivery) for the networks it does not
    cover. A unit it leaves out stays as accepted. Rows are loaded once per unit, after the
    delivery's own rows (and after the key checks of tier 4, which they must not touch).
    """

    def __init__(self, validator: "DeliveryValidator", store: KeyStore) -> None:
        self.v = validator
        self.store = store
        self.units = dict(validator.context.accepted or {})
        self.loaded: set[str] = set()
        self.file_ids: dict[int, tuple[str, AcceptedSource]] = {}  # store file id -> (unit, source)
        self.used: dict[str, set[int]] = {}  # unit -> store file ids of the sources whose rows were loaded
        # (rule, side) -> key -> store file ids of accepted sources that added to that sum
        self.sum_sources: dict[tuple[str, str], dict[tuple[str, ...], set[int]]] = {}
        # (rule, side) -> keys to which the delivery itself added
        self.sum_delivered: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._snapshot_delivered()

    def _snapshot_delivered(self) -> None:
        for key, table in self.v.sinks.sums.items():
            self.sum_delivered[key] = set(table)

    def available(self, unit: str) -> bool:
        """Whether the server supplied accepted rows of ``unit``."""
        return unit in self.units

    def order(self, unit: str) -> tuple[int, str]:
        """Parents before network-less children: a contact's network is its customer's."""
        return (1 if parent_link(self.v.spec, self.v.spec.unit(unit)) else 0, unit)

    def delivered(self, side: tuple[str, str], key: tuple[str, ...]) -> bool:
        """Whether the delivery's own rows added to one side's sum for ``key``."""
        return key in self.sum_delivered.get(side, set())

    def is_accepted_file(self, file: str | None) -> bool:
        """Whether a finding's file is an accepted version (not a file of this delivery)."""
        return file is not None and any(self.store.file_name(fid) == file for fid in self.file_ids)

    def labels(self, units: Iterable[str], keys: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """(zh, en) labels of the accepted sources loaded for ``units`` (one file's source where ``keys`` says)."""
        out: list[tuple[str, str]] = []
        for unit in units:
            wanted = (keys or {}).get(unit)
            for fid in sorted(self.used.get(unit, ())):
                if wanted is not None and self.store.file_name(fid) != wanted:
                    continue
                src = self.file_ids[fid][1]
                if (src.label_zh, src.label_en) not in out:
                    out.append((src.label_zh, src.label_en))
        return out

    def sum_labels(self, rule: str, key: tuple[str, ...]) -> tuple[str, str] | None:
        """The accepted sources that added to either side of a sum rule for ``key``."""
        fids: set[int] = set()
        for side in ("left", "right"):
            fids |= self.sum_sources.get((rule, side), {}).get(key, set())
        labels = []
        for fid in sorted(fids):
            src = self.file_ids[fid][1]
            if (src.label_zh, src.label_en) not in labels:
                labels.append((src.label_zh, src.label_en))
        if not labels:
            return None
        return "；".join(zh for zh, _ in labels), "; ".join(en for _, en in labels)

    def load(self, unit_name: str) -> None:
        """Add the accepted rows of one unit that stay once this delivery is accepted."""
        if unit_name in self.loaded or unit_name not in self.units:
            return
        self.loaded.add(unit_name)
        v, store, spec = self.v, self.store, self.v.spec
        unit = spec.unit(unit_name)
        accepted = self.units[unit_name]
        present = any(d.unit.name == unit_name for d in v.data)
        assert v.check is not None
        sender = v.check.party
        covered = self._covered(unit) if present else set()
        fids = [store.file_id(src.file) for src in accepted.sources]
        for fid, src in zip(fids, accepted.sources):
            self.file_ids[fid] = (unit_name, src)
        projections = needed_projections(spec, unit)
        net_proj = network_projection(spec, unit)
        feeders = [_ProjectionFeeder(unit, p) for p in projections]
        acc_net: list[KeyRow] = []
        sums = [(sm, spec.unit(sm.unit).field(sm.field)) for sm in needed_sums(spec, unit)]
        used = self.used.setdefault(unit_name, set())
        n = 0
        for index, network, fields in accepted.rows():
            src = accepted.sources[index]
            if present and (src.party == sender or network in covered):
                continue  # replaced by this delivery once it is accepted
            fid = fids[index]
            used.add(fid)
            for feeder in feeders:
                feeder.feed(fields, fid)
            if net_proj is not None:
                acc_net.append((SEP.join(fields.get(k, "") for k in net_proj.key), network, None, fid))
            for sm, fld in sums:
                key = tuple(fields.get(k, "") for k in sm.by)
                table = v.sinks.sums.setdefault((sm.rule, sm.side), {})
                amount = typed_value(fld.type, fields.get(sm.field, "") or "") or 0
                table[key] = table.get(key, Decimal(0)) + amount
                v.sinks.first_line.setdefault((sm.rule, sm.side), {}).setdefault(key, (None, fid))  # type: ignore[arg-type]
                self.sum_sources.setdefault((sm.rule, sm.side), {}).setdefault(key, set()).add(fid)
            n += 1
            if n % FLUSH_EVERY == 0:
                for feeder in feeders:
                    feeder.flush(store)
        for feeder in feeders:
            feeder.flush(store)
        if net_proj is not None:
            store.flush(_accepted_network_table(unit), acc_net)

    def _covered(self, unit: Unit) -> set[str]:
        """The local networks a unit of this delivery covers (and so replaces)."""
        if network_field(unit) is not None:
            return set(self.v.sinks.networks_by_unit.get(unit.name, set()))
        link = parent_link(self.v.spec, unit)
        child = child_projection(self.v.spec, unit)
        if link is None or child is None:
            return set()
        parent_proj = network_projection(self.v.spec, link[0])
        assert parent_proj is not None
        self.store.ensure(_accepted_network_table(link[0]))
        return self.store.networks_through(child.name, parent_proj.name, _accepted_network_table(link[0]))


def _accepted_network_table(unit: Unit) -> str:
    return f"acc_net_{unit.code}"


def typed_value(ftype: str, text: str) -> Any:
    """A field's text as the compiled checks type it (None when empty)."""
    if text == "":
        return None
    if ftype == "decimal":
        return Decimal(text)
    if ftype == "integer":
        return int(text)
    return text


class _ProjectionFeeder:
    """Appends accepted rows to one projection's table, applying its ``where``."""

    def __init__(self, unit: Unit, projection: Any) -> None:
        self.p = projection
        self.buffer: list[KeyRow] = []
        self.types = {f.id: f.type for f in unit.fields}
        self.where = None
        if projection.where:
            expr = expressions.parse(projection.where, unit.has_field)
            names = sorted(expr.names)
            index = {n: f"v{i}" for i, n in enumerate(names)}
            numeric = {f.id for f in unit.fields if f.type in ("integer", "decimal")}
            src = expr.to_python(lambda n: index[n], numeric.__contains__)
            self.where = (compile(src, "<where>", "eval"), names)

    def feed(self, fields: Mapping[str, str], fid: int) -> None:
        """Add one accepted row (if its ``where`` holds)."""
        if self.where is not None:
            code, names = self.where
            env = {f"v{i}": typed_value(self.types[n], fields.get(n, "") or "") for i, n in enumerate(names)}
            if not eval(code, {"__builtins__": {}, "Decimal": Decimal, **expressions.RUNTIME}, env):  # noqa: S307 — whitelisted
                return
        key = SEP.join(fields.get(k, "") or "" for k in self.p.key)
        value = (fields.get(self.p.value, "") or "") if self.p.value else ""
        self.buffer.append((key, value, None, fid))

    def flush(self, store: KeyStore) -> None:
        """Move the buffered rows into the store."""
        store.flush(self.p.name, self.buffer)


class DeliveryValidator:
    """Runs every tier over one delivery and fills a Report."""

    def __init__(self, spec: Spec, files: Sequence[Path], context: ValidationContext | None,
                 options: ValidationOptions) -> None:
        self.spec = spec
        self.files = list(files)
        self.context = context or ValidationContext()
        self.options = options
        self.report = Report(spec, cap=options.cap)
        self.check: CheckFile | None = None
        self.check_path: Path | None = None
        self.data: list[_DataFile] = []
        # True when tier 1 left text undecoded for the core that reads it to decode (see run); the row
        # path then reads such a file in this process (its split across processes needs tier 1's decoding).
        self.decoding_deferred = False
        # Tier 1's byte passes over the files the columnar core reads, running beside tiers 2-4
        # (settle_scans); their digests, and those of the files passed in order.
        self.pending_scans: list[tuple[_DataFile, CheckEntry, Future[ByteScan]]] = []
        self.scan_pool: ThreadPoolExecutor | None = None
        self.digests: dict[str, str] = {}
        # A big XML file may be read in parts on several cores; not when a run is done again in order.
        self.split_xml = True

    # -- tier 1 -----------------------------------------------------------------------
    def tier1(self, decode: bool = True) -> bool:
        """Delivery checks; False when the delivery cannot be read further.

        ``decode`` False leaves text files undecoded here (the caller then decodes them later
        and must treat a decoding error as this tier's, see ``run``).
        """
        r = self.report
        by_name: dict[str, Path] = {}
        for p in self.files:
            if p.name in by_name:
                r.add("E114", p.name, value=p.name)
            by_name[p.name] = p
        checks = [p for p in by_name.values() if p.name.endswith(".chk")]
        data = [p for p in by_name.values() if not p.name.endswith(".chk")]
        for p in data:
            try:
                DataFileName.parse(p.name)
            except FileNameError:
                r.add("E101", p.name, value=p.name, expected=DATA_NAME_FORM)
        if not checks:
            for p in data:
                try:
                    expected = str(DataFileName.parse(p.name).check_name)
                except FileNameError:
                    expected = CHECK_NAME_FORM
                r.add("E102", p.name, expected=expected)
            return False
        if len(checks) > 1:
            for p in checks[1:]:
                r.add("E114", p.name, value=p.name)
            return False
        self.check_path = checks[0]
        cname_text = self.check_path.name
        try:
            cname = CheckFileName.parse(cname_text)
        except FileNameError:
            r.add("E101", cname_text, value=cname_text, expected=CHECK_NAME_FORM)
            return False
        r.delivery = cname.stem
        size = self.check_path.stat().st_size
        if size == 0:
            r.add("E112", cname_text)
            return False
        if size > 16 * 1024 * 1024:
            r.add("E118", cname_text, value=size, expected=16 * 1024 * 1024)
            return False
        try:
            check = CheckFile.parse(self.check_path.read_bytes())
        except CheckFileError as exc:
            r.add("E103", cname_text, line=exc.line, value=exc.value, expected=exc.expected)
            return False
        self.check = check
        r.party, r.period, r.mode, r.resend = check.party, check.period, check.mode, check.resend
        for part, got, want in (("mode", check.mode, cname.mode), ("party", check.party, cname.party),
                                ("period", check.period, cname.period), ("resend", check.resend, cname.resend)):
            if got != want:
                r.add("E116", cname_text, field=part, value=got, expected=want)
        if check.spec_version.split(".")[0] != self.spec.version.split(".")[0]:
            r.add("E119", cname_text, value=check.spec_version, expected=f"{self.spec.version.split('.')[0]}.x")
        if check.encoding not in ENCODINGS:
            r.add("E117", cname_text, field="encoding", value=check.encoding, expected=", ".join(ENCODINGS))
        if check.delimiter_name not in DELIMITERS:
            r.add("E117", cname_text, field="delimiter", value=check.delimiter_name, expected=", ".join(DELIMITERS))
        listed: dict[str, int] = {}
        for e in check.entries:
            if e.name in listed:
                r.add("E114", cname_text, line=e.line, value=e.name)
                continue
            listed[e.name] = e.line
            if e.period != check.period:
                r.add("E109", e.name, value=e.period, expected=check.period)
            try:
                dn = DataFileName.parse(e.name)
            except FileNameError:
                r.add("E101", e.name, value=e.name, expected=DATA_NAME_FORM)
                continue
            if not self.spec.has_unit(dn.unit):
                r.add("E115", e.name, value=dn.unit, expected=", ".join(u.code for u in self.spec.units))
                continue
            unit = self.spec.unit(dn.unit)
            if check.mode in UPLOAD_MODES and unit.direction == "down":
                r.add("E120", e.name, value=f"{unit.code} {unit.name}", expected="集团 / Group HQ")
            for part, got, want in (("mode", dn.mode, check.mode), ("party", dn.party, check.party),
                                    ("resend", dn.resend, check.resend)):
                if got != want:
                    r.add("E116", e.name, field=part, value=got, expected=want)
            if dn.period != check.period:
                r.add("E109", e.name, value=dn.period, expected=check.period)
            path = by_name.get(e.name)
            if path is None:
                r.add("E104", cname_text, line=e.line, value=e.name)
                continue
            self.data.append(_DataFile(path, dn, unit, e.rows, FileSummary(e.name, unit=unit.name, format=dn.ext)))
        for p in data:
            if p.name not in listed:
                r.add("E105", p.name)
        if not check.entries:
            r.add("E121", cname_text)
        if r.has_tier1_errors:
            return False
        entries = {e.name: e for e in check.entries}
        for df in self.data:
            e = entries[df.path.name]
            fs = df.summary
            r.files[fs.name] = fs
            size = df.path.stat().st_size
            fs.size = size
            if size > self.options.max_file_size:
                r.add("E118", fs.name, value=size, expected=self.options.max_file_size)
                continue
            if size == 0:
                r.add("E112", fs.name)
                continue
            text = df.name.ext == "txt"
            fs.encoding = check.encoding if text else None
            later = not decode and text
            self.decoding_deferred |= later
            encoding = check.encoding if text else None
            if not decode and core_for_file(self.options.core, size) == "columnar":
                # Speculative: tiers 2-4 read the file while this pass runs beside them (see run).
                self.pending_scans.append((df, e, self._scanner().submit(scan_bytes, df.path, encoding, False)))
            else:
                self._scan_findings(df, e, scan_bytes(df.path, encoding, decode=not later))
            if not text:
                declared = xml_encoding_problem(df.path)
                if declared is not None:  # only UTF-8 and GB18030 exist (CONVENTIONS.md §6)
                    r.add("E110", fs.name, line=1, value=declared, expected="UTF-8 / GB18030")
                    continue
                # The root's attributes repeat the file name (CONVENTIONS.md §6): a file renamed
                # to another party, unit or cycle says so inside.
                attrs = xml_root_attributes(df.path)
                if attrs is not None:
                    for attr, want in (("unit", df.name.unit), ("party", df.name.party),
                                       ("period", df.name.period)):
                        stated = attrs.get(attr)
                        if stated is not None and stated != want:
                            r.add("E116", fs.name, line=attrs.get("@line"), field=f"@{attr}", value=stated,
                                  expected=want)
        return not r.has_tier1_errors

    def _scan_findings(self, df: _DataFile, e: CheckEntry, scan: ByteScan) -> None:
        """What tier 1 finds in a data file's bytes: size, digest, repeats, and for text encoding and line ends."""
        r, fs = self.report, df.summary
        assert self.check is not None
        fs.sha256 = scan.sha256
        df.checkpoints = scan.checkpoints
        df.declaration = scan.declaration
        df.crlf = scan.crlf > 0
        if scan.size != e.size:
            r.add("E106", fs.name, value=scan.size, expected=e.size)
        if scan.sha256 != e.sha256:
            r.add("E108", fs.name, value=scan.sha256, expected=e.sha256)
        if scan.sha256 in self.digests:
            r.add("E114", fs.name, value=f"{fs.name} = {self.digests[scan.sha256]}")
        self.digests[scan.sha256] = fs.name
        if df.name.ext != "txt":
            return
        if scan.encoding_error_line is not None:
            r.add("E110", fs.name, line=scan.encoding_error_line, value=scan.encoding_error,
                  expected=self.check.encoding)
        if scan.bare_cr_line is not None:
            r.add("E111", fs.name, line=scan.bare_cr_line, value="CR", expected="LF or CRLF")
        elif scan.mixed_line is not None:
            first = "LF" if scan.newline == "LF" and scan.crlf else scan.newline
            r.add("E111", fs.name, line=scan.mixed_line, value="LF/CRLF mixed", expected=first)
        if scan.truncated:
            r.add("E113", fs.name, line=scan.lines + 1, value="last line has no line terminator / 末行无换行符")
        elif scan.lines != e.rows:
            r.add("E107", fs.name, value=scan.lines, expected=e.rows)
        fs.rows = scan.lines

    def _scanner(self) -> ThreadPoolExecutor:
        """The one thread tier 1's speculative byte passes run on, in file order."""
        if self.scan_pool is None:
            self.scan_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier1-scan")
        return self.scan_pool

    def settle_scans(self) -> bool:
        """Finish tier 1's speculative byte passes; False when they found anything (the run is then done again).

        Tiers 2-4 ran on the files meanwhile, trusting what tier 1 had not yet proved. That
        stands only if the passes add no finding (and find no XML declaration, which tier 2
        must refuse before parsing): then the report is exactly the one a run in order gives.
        """
        if self.scan_pool is None:
            return True
        found = sum(self.report.counts.values())
        try:
            for df, e, scan in self.pending_scans:
                rows = df.summary.rows
                self._scan_findings(df, e, scan.result())
                df.summary.rows = rows  # tiers 2-4 counted them already, as they do after tier 1
        finally:
            self.scan_pool.shutdown(wait=True, cancel_futures=True)
            self.scan_pool = None
        return sum(self.report.counts.values()) == found and not any(df.declaration for df, _, _ in self.pending_scans)

    # -- tiers 2-4 ----------------------------------------------------------------------
    def _run_context(self) -> RunContext:
        assert self.check is not None
        spec, party = self.spec, self.check.party
        area = spec.domain("Domain_area_id")
        day = self._reference_day()
        codes = area.version_on(day).codes
        entry = codes.get(party)
        province: str | None = None
        network: str | None = None
        if entry is not None and entry.level == "province":
            province = party
        elif entry is not None and entry.level == "local_network":
            province, network = entry.parent, party
        return RunContext(spec=spec, day=day, period=self.check.period, party=party, party_province=province,
                          party_network=network, list_ids=self.context.list_ids,
                          list_version=self.context.list_version, list_explain=self.context.list_explain,
                          previous=self.context.previous,
                          outlier_ratio=self.context.outlier_ratio)

    def _reference_day(self) -> dt.date:
        """The day that picks code-list versions: the cycle's first day, else generation day."""
        assert self.check is not None
        try:
            return Cycle.parse(self.check.period).begin
        except ValueError:
            stamp = self.check.generated_at
            return dt.date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))

    def tiers_2_to_4(self, store: KeyStore) -> None:
        """Read every data file once, checking structure, fields and records."""
        assert self.check is not None
        ctx = self._run_context()
        sinks = Sinks()
        order = {u.code: i for i, u in enumerate(self.spec.units)}
        self.data.sort(key=lambda d: (order[d.unit.code], d.name.seq))
        for df in self.data:
            self._read_file(df, ctx, sinks, store)
        for name, rows in sinks.projections.items():
            store.flush(name, rows)
        self.sinks = sinks

    def _read_file(self, df: _DataFile, ctx: RunContext, sinks: Sinks, store: KeyStore) -> None:
        r = self.report
        assert self.check is not None
        fname = df.path.name
        unit = df.unit
        xml = df.name.ext == "xml"
        unit_name = unit.name

        def xpath(rowno: int, field: str | None) -> str | None:
            if not xml:
                return None
            return f"/{unit_name}/ROW[{rowno}]" + (f"/{field}" if field else "")

        def emit_field(code: str, line: int, rowno: int, field: str, value: str, expected: Any) -> None:
            r.add(code, fname, line, field, value, expected, xpath=xpath(rowno, field), unit=unit_name)

        field_ids = unit.field_ids

        def emit_rule(code: str, line: int, rowno: int, field: str | None, value: Any, vals: list[str]) -> None:
            r.add(code, fname, line, field, value, None, row=dict(zip(field_ids, vals)),
                  xpath=xpath(rowno, field), unit=unit_name)

        buffers = [(p.name, sinks.projections.setdefault(p.name, [])) for p in needed_projections(self.spec, unit)]

        def flush() -> None:
            for name, buf in buffers:
                store.flush(name, buf)

        def emit_columns(line: int, rowno: int, found: int) -> None:
            r.add("E201", fname, line, value=found, expected=len(field_ids), xpath=xpath(rowno, None), unit=unit_name)

        checks = build_checker(ctx, unit, sinks, emit_field=emit_field, emit_rule=emit_rule,
                               emit_columns=emit_columns, flush=flush, file_id=store.file_id(fname),
                               flush_every=FLUSH_EVERY)
        columnar = core_for_file(self.options.core, df.summary.size or 0) == "columnar"
        if not xml:
            from .columnar import check_text_file

            if columnar:
                done = check_text_file(ctx, unit, df.path, self.check.encoding, self.check.delimiter,
                                       checks.run_rows, sinks, store, store.file_id(fname), df.crlf)
                if done is not None:
                    df.summary.rows = done
                    return
            size = df.summary.size or 0
            workers = self.options.worker_count
            if workers > 1 and size >= self.options.parallel_min_bytes and not self.decoding_deferred:
                df.summary.rows = self._read_text_in_parallel(df, ctx, sinks, store, workers)
            else:
                lines = text_lines(df.path, self.check.encoding)
                df.summary.rows = checks.run_text(lines, self.check.delimiter)
            return
        if df.declaration is not None:  # anywhere in the file, refused before parsing (never resolved)
            r.add("E205", fname, line=df.declaration[0], value=df.declaration[1], unit=unit_name)
            r.structural.setdefault(fname, "E205")
            return
        workers = self.options.worker_count
        split = self.split_xml and workers > 1 and (df.summary.size or 0) >= self.options.parallel_min_bytes
        parts = xml_parts(df.path, workers) if split else None
        if parts is not None:
            df.summary.rows = self._read_xml_in_parallel(df, ctx, sinks, store, parts)
        else:
            schema = _structural_schema(self.spec.root, unit.code)
            counter = CountedRows(xml_rows(df.path, unit.name, field_ids, self.spec.namespace, schema))
            try:
                from .columnar import check_parsed_rows

                if not (columnar and check_parsed_rows(ctx, unit, counter, checks.run_rows, sinks, store,
                                                       store.file_id(fname))):
                    checks.run_rows(counter)
            except XmlProblem as exc:
                expected = {"E204": f"{{{self.spec.namespace}}}{unit.name}", "E110": self.check.encoding}.get(exc.code)
                r.add(exc.code, fname, exc.line, value=exc.message, expected=expected, unit=unit_name)
                r.structural.setdefault(fname, exc.code)  # E110 too: the stream stopped, the unit is partial
                df.summary.rows = counter.n
                return
            df.summary.rows = counter.n
        if df.summary.rows != df.rows_declared:
            r.add("E107", fname, value=df.summary.rows, expected=df.rows_declared)

    def _read_text_in_parallel(self, df: _DataFile, ctx: RunContext, sinks: Sinks, store: KeyStore,
                               workers: int) -> int:
        """Split a big delimited file at line starts and check the parts on worker processes."""
        from . import parallel

        size = df.summary.size or 0
        cuts = [(0, 0)]
        for i in range(1, workers):
            offset, line = line_start_at_or_after(df.path, size * i // workers, df.checkpoints)
            if offset < size and offset > cuts[-1][0]:
                cuts.append((offset, line))
        jobs = [self._range_job(df, ctx, store, start, cuts[i + 1][0] if i + 1 < len(cuts) else size, line)
                for i, (start, line) in enumerate(cuts)]
        results = parallel.run_ranges(jobs)
        return parallel.merge(self.report, df.path.name, results, sinks, store)

    def _read_xml_in_parallel(self, df: _DataFile, ctx: RunContext, sinks: Sinks, store: KeyStore,
                              parts: list[XmlPart]) -> int:
        """Check the parts of a big XML file on worker processes (speculative, as tier 1's pass: see run).

        Should any part stop parsing, the delivery is validated again in order with the file
        read whole, which reports the problem where and as a whole read does.
        """
        from . import parallel

        results = parallel.run_ranges([self._range_job(df, ctx, store, part.start, part.end, 0, part)
                                       for part in parts])
        if any(res.stopped for res in results):
            for res in results:
                Path(res.keys_db).unlink(missing_ok=True)
            raise _SpeculationFailed
        return parallel.merge(self.report, df.path.name, results, sinks, store)

    def _range_job(self, df: _DataFile, ctx: RunContext, store: KeyStore, start: int, end: int, first_line: int,
                   xml: XmlPart | None = None) -> RangeJob:
        """A worker's share of ``df`` (bytes ``start``..``end``; for XML, the part to read as a document)."""
        from . import parallel

        assert self.check is not None
        # The run context without its spec: a worker process loads the spec itself.
        context = {k: getattr(ctx, k) for k in ("day", "period", "party", "party_province", "party_network",
                                                "list_ids", "list_version", "list_explain", "previous",
                                                "outlier_ratio")}
        return parallel.RangeJob(self.spec.root, context, df.unit.code, str(df.path), self.check.encoding,
                                 self.check.delimiter, start, end, first_line, df.path.name,
                                 store.file_id(df.path.name), self.options.cap, self.options.tmp_dir,
                                 self.spec.code_additions, xml=xml)

    # -- file level and cross-unit --------------------------------------------------------
    def file_level(self, store: KeyStore) -> None:
        """Primary keys, unique rules and network coverage, across all files of a unit."""
        r = self.report
        present = {d.unit.name: d for d in self.data}
        ctx = self._run_context()
        for unit_name, df in present.items():
            unit = df.unit
            if unit_name in self.failed_units:
                self._skip(unit_name, [r.id for r in unit.rules if r.scope == "file"])
            for p in needed_projections(self.spec, unit)[:1]:
                for key, line, file, first, first_file in store.duplicates(p.name):
                    where = str(first) if first_file == file else f"{first_file}:{first}"
                    r.add("E401", file, line, "+".join(p.key), key.replace(SEP, "|"), where,
                          unit=unit_name)
            for rule in unit.rules:
                if rule.scope != "file" or unit_name in self.failed_units:
                    continue
                if rule.check == "unique":
                    fields = key_fields(rule.fields)
                    name = next(p.name for p in needed_projections(self.spec, unit) if p.key == fields)
                    for key, line, file, _first, _ff in store.duplicates(name):
                        row = dict(zip(fields, key.split(SEP)))
                        r.add(rule.id, file, line, rule.field, key.replace(SEP, "|"), row=row, unit=unit_name)
                elif rule.check == "covers_sender_networks":
                    seen = self.sinks.networks_seen.get(rule.id, set())
                    for net in sorted(self._sender_networks(ctx) - seen):
                        r.add(rule.id, df.path.name, None, rule.field, net, row={rule.field or "": net},
                              unit=unit_name)

    def _sender_networks(self, ctx: RunContext) -> set[str]:
        if ctx.party_network:
            return {ctx.party_network}
        area = self.spec.domain("Domain_area_id").version_on(ctx.day)
        return {c.code for c in area.codes.values() if c.level == "local_network" and c.parent == ctx.party_province}

    @property
    def failed_units(self) -> set[str]:
        """Units with a file that could not be read in full (a structural, tier-2 error)."""
        return {d.unit.name for d in self.data if d.path.name in self.report.structural}

    def _skip(self, unit_name: str, rules: list[str]) -> None:
        """Say once that ``rules`` were not run because ``unit_name`` could not be read."""
        if not rules:
            return
        df = next(d for d in self.data if d.unit.name == unit_name and d.path.name in self.report.structural)
        for s in self.report.skipped:
            if s.unit == unit_name:
                self.report.skipped[self.report.skipped.index(s)] = SkippedRules(
                    s.unit, s.file, s.code, tuple(dict.fromkeys((*s.rules, *rules))))
                return
        self.report.skipped.append(SkippedRules(unit_name, df.path.name, self.report.structural[df.path.name],
                                                tuple(rules)))

    def cross_unit(self, store: KeyStore) -> None:
        """Tier 5: the rules of rules/cross_unit.yaml over the delivery's units.

        A rule runs when one of its units is in the delivery; a unit it leaves out is taken
        from the accepted rows the server supplies (``ValidationContext.accepted``), and
        the accepted rows of networks the delivery does not cover join those it carries —
        the data as it will stand once the delivery is accepted. Without accepted rows (the
        agent, offline), a rule runs only when all its units are in the delivery.
        """
        present = {d.unit.name: d for d in self.data}
        failed = self.failed_units
        self._accepted = _AcceptedRows(self, store)
        for rule in self.spec.cross_rules:
            assert rule.left is not None and rule.right is not None
            units = {rule.left["unit"], rule.right["unit"]}
            if units & failed:
                for unit in sorted(units & failed):
                    self._skip(unit, [rule.id])
                continue
            if rule.requires == "list":
                if (self.context.list_ids is None or not self.context.list_complete
                        or rule.right["unit"] not in present):
                    continue
            elif not units & present.keys():
                continue  # nothing of this delivery: not its concern
            elif not all(u in present or self._accepted.available(u) for u in units):
                continue
            for u in sorted(units, key=self._accepted.order):
                self._accepted.load(u)
            getattr(self, f"_x_{rule.check}")(rule, store, present)

    def _compared(self, units: Iterable[str], keys: Mapping[str, tuple[str, ...] | str] | None = None
                  ) -> tuple[str, str] | None:
        """The accepted versions of ``units`` that took part (per key when ``keys`` names it), both languages."""
        labels = self._accepted.labels(units, keys)
        if not labels:
            return None
        return "；".join(zh for zh, _ in labels), "; ".join(en for _, en in labels)

    def _x_sum_equals(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile], at_most: bool = False) -> None:
        assert rule.left is not None and rule.right is not None
        left = self.sinks.sums.get((rule.id, "left"), {})
        right = self.sinks.sums.get((rule.id, "right"), {})
        acc = self._accepted
        for key, lval in left.items():
            if key not in right and at_most:
                continue
            rval = right.get(key, Decimal(0))
            bad = lval > rval if at_most else lval != rval
            if not bad:
                continue
            from_left = acc.delivered((rule.id, "left"), key)
            from_right = acc.delivered((rule.id, "right"), key)
            if not from_left and not from_right:
                continue  # both sides accepted before: not this delivery's finding
            side = "left" if from_left or not from_right else "right"
            line, fid = self.sinks.first_line.get((rule.id, side), {}).get(key, (None, None))
            file = store.file_name(fid) if fid is not None else None
            row: dict[str, Any] = dict(zip(rule.by, key))
            row.update(left=lval, right=rval)
            anchor = rule.left if side == "left" else rule.right
            self.report.add(rule.id, file, line, anchor["field"], lval if side == "left" else rval,
                            rval if side == "left" else lval, row=row, unit=anchor["unit"],
                            compared_with=acc.sum_labels(rule.id, key))

    def _x_sum_at_most(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile]) -> None:
        self._x_sum_equals(rule, store, present, at_most=True)

    def _x_count_distinct_equals(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile]) -> None:
        assert rule.right is not None and rule.left is not None
        unit = self.spec.unit(rule.right["unit"])
        by = key_fields(rule.by)
        proj = next(p for p in needed_projections(self.spec, unit) if p.value == rule.right["field"] and p.key == by)
        counts = store.distinct_counts(proj.name)
        left = self.sinks.sums.get((rule.id, "left"), {})
        lines = self.sinks.first_line.get((rule.id, "left"), {})
        keep = [i for i, k in enumerate(rule.by) if k in by]
        right_delivered = rule.right["unit"] in present
        for key, lval in left.items():
            n = counts.get(SEP.join(key[i] for i in keep), 0)
            if lval != n:
                if not self._accepted.delivered((rule.id, "left"), key) and not right_delivered:
                    continue
                line, fid = lines.get(key, (None, None))
                file = store.file_name(fid) if fid is not None else None
                row: dict[str, Any] = dict(zip(rule.by, key))
                row.update(left=lval, right=n)
                self.report.add(rule.id, file, line, rule.left["field"], lval, n, row=row, unit=rule.left["unit"],
                                compared_with=self._compared([rule.left["unit"], rule.right["unit"]]))

    def _proj(self, side: Any) -> str:
        unit = self.spec.unit(side["unit"])
        key = key_fields(side["key"])
        return next(p.name for p in needed_projections(self.spec, unit)
                    if p.key == key and p.where == side.get("where") and p.value is None)

    def _x_exists(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile]) -> None:
        assert rule.left is not None and rule.right is not None
        keys = key_fields(rule.left["key"])
        right_delivered = rule.right["unit"] in present
        for key, line, file in store.missing(self._proj(rule.left), self._proj(rule.right)):
            accepted_row = self._accepted.is_accepted_file(file)
            if accepted_row and not right_delivered:
                continue
            row = dict(zip(keys, key.split(SEP)))
            units = [rule.right["unit"]] + ([rule.left["unit"]] if accepted_row else [])
            self.report.add(rule.id, file, line, keys[-1], key.replace(SEP, "|"), row=row, unit=rule.left["unit"],
                            compared_with=self._compared(units, {rule.left["unit"]: file}))

    def _x_exactly_one(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile]) -> None:
        assert rule.left is not None and rule.right is not None
        keys = key_fields(rule.left["key"])
        right_delivered = rule.right["unit"] in present
        for key, line, file, n in store.count_by_key(self._proj(rule.left), self._proj(rule.right)):
            if n != 1:
                accepted_row = self._accepted.is_accepted_file(file)
                if accepted_row and not right_delivered:
                    continue
                row: dict[str, Any] = dict(zip(keys, key.split(SEP)))
                row.update(right=n)
                units = [rule.right["unit"]] + ([rule.left["unit"]] if accepted_row else [])
                self.report.add(rule.id, file, line, keys[-1], key.replace(SEP, "|"), 1, row=row,
                                unit=rule.left["unit"], compared_with=self._compared(units, {rule.left["unit"]: file}))

    def _x_list_covered(self, rule: Rule, store: KeyStore, present: dict[str, _DataFile]) -> None:
        assert rule.right is not None and self.context.list_ids is not None
        right = self._proj(rule.right)
        df = present[rule.right["unit"]]
        keys = key_fields(rule.right["key"])
        explain = self.context.list_explain
        for cust in sorted(self.context.list_ids):
            if not store.has_key(right, cust):
                expected = explain(cust) if explain is not None else self.context.list_version
                self.report.add(rule.id, df.path.name, None, keys[-1], cust, expected,
                                row={keys[-1]: cust, "expected": expected}, unit=rule.right["unit"])

    # -- tier 6 -------------------------------------------------------------------------
    def context_checks(self) -> None:
        """Delivery-level context the server supplies: cycle, sender, resend, deadline."""
        assert self.check is not None
        c, r, chk = self.context, self.report, self.check
        where = self.check_path.name if self.check_path else None
        if c.known_cycles is not None and chk.period not in c.known_cycles:
            r.add("E602", where, value=chk.period)
        elif c.cycle_state is not None and c.cycle_state != "open":
            state = {"closed": "已关闭 closed", "planned": "未开放 not yet open"}.get(c.cycle_state, c.cycle_state)
            r.add("E601", where, value=chk.period, expected=state)
        if c.authorised_parties is not None and chk.party not in c.authorised_parties:
            r.add("E606", where, value=chk.party, expected=c.account or ",".join(sorted(c.authorised_parties)))
        if c.last_resend is not None and chk.resend <= c.last_resend:
            r.add("E605", where, value=f"{chk.resend:02d}", expected=f"{c.last_resend:02d}")
        if c.units_due is not None:
            for df in self.data:
                if df.unit.code not in c.units_due:
                    r.add("E607", df.path.name, field=df.unit.code, value=chk.period,
                          expected=",".join(sorted(c.units_due)))
        if c.deadline and c.received_at and c.received_at > c.deadline:
            r.add("W603", where, value=c.received_at, expected=c.deadline)

    def run(self) -> Report:
        """Every tier in order; tier 1 errors stop the run.

        Unless the row core is chosen for the run, tier 1 does not decode text: whichever core
        reads a file decodes every byte of it anyway (the row path with Python's codec, the
        columnar core transcoding GB18030 and having polars validate UTF-8), so a file is
        decoded once, not twice. And tier 1's pass over the bytes of a file the columnar core
        reads (digest, size, line ends) runs on a thread beside tiers 2-4 instead of before
        them. Should a core meet bytes not in the file's encoding, or should tier 1 find
        anything, the delivery is checked again from the start with tier 1 decoding and in
        order, so that the report is exactly the one tier 1 always gives (E110 with its line,
        in its place among the rest; nothing from tiers 2-4 when tier 1 stops).
        """
        try:
            report = self._run(decode=selected_core(self.options.core) == "rows")
        except _SpeculationFailed:
            report = None
        except UnicodeDecodeError:
            if not self.decoding_deferred:
                raise
            report = None
        if report is not None and not (self.decoding_deferred and report.stopped_at_tier == 1):
            return report
        again = DeliveryValidator(self.spec, self.files, self.context, self.options)
        again.split_xml = False
        return again._run(decode=True)

    def _run(self, decode: bool) -> Report:
        try:
            if not self.tier1(decode):
                self._settled()
                self.report.stopped_at_tier = 1
                return self.report
            with KeyStore(self.options.tmp_dir) as store:
                try:
                    self.tiers_2_to_4(store)
                except Exception:
                    # A file tier 1 would have refused can make the cores fail in ways of their own.
                    self._settled()
                    raise
                self._settled()
                self.file_level(store)
                self.cross_unit(store)
            self.context_checks()
            return self.report
        finally:
            if self.scan_pool is not None:
                self.scan_pool.shutdown(wait=True, cancel_futures=True)

    def _settled(self) -> None:
        """Raise _SpeculationFailed when tier 1's passes beside tiers 2-4 found anything (``settle_scans``)."""
        if not self.settle_scans():
            raise _SpeculationFailed


class _SpeculationFailed(Exception):
    """Work done ahead of its turn did not stand: tier 1's pass, run beside tiers 2-4, found something,
    or a part of an XML file read on several cores stopped parsing. The delivery is validated again in order."""


def validate_delivery(files: Sequence[Path | str], spec: Spec | None = None,
                      context: ValidationContext | None = None,
                      options: ValidationOptions | None = None) -> Report:
    """Validate one delivery (its check file and data files) and return the report."""
    return DeliveryValidator(spec or load_spec(), [Path(f) for f in files], context,
                             options or ValidationOptions()).run()


def validate_paths(paths: Sequence[Path | str], spec: Spec | None = None, context: ValidationContext | None = None,
                   options: ValidationOptions | None = None) -> list[Report]:
    """Validate every delivery found among files and directories."""
    spec = spec or load_spec()
    return [validate_delivery(group, spec, context, options) for group in group_deliveries([Path(p) for p in paths])]
