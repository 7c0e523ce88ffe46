"""Render a report: readable text, JSON, and the standard's feedback files (CONVENTIONS §9)."""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

from lxml import etree

from ..conventions import shown
from .report import ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED, Report

STATUS_ZH = {ACCEPTED: "接收", ACCEPTED_WITH_WARNINGS: "接收（有警告）", REJECTED: "拒收"}
STATUS_EN = {ACCEPTED: "accepted", ACCEPTED_WITH_WARNINGS: "accepted with warnings", REJECTED: "rejected"}
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def report_json(report: Report, indent: int | None = 2) -> str:
    """The report as JSON text (UTF-8, Chinese kept as is; any lone surrogate as a ``\\udxxx`` escape)."""
    text = json.dumps(report.as_dict(), ensure_ascii=False, indent=indent, default=str)
    # Findings carry none (report.py shows them as escapes), but the text must encode as UTF-8 whatever it holds.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def report_head(report: Report, with_party: bool = True) -> list[str]:
    """The first lines of a report for people: verdict and counts, what was not run, the files."""
    out: list[str] = []
    name = report.delivery or "(no check file)"
    out.append(f"{name}: {STATUS_ZH[report.status]} / {STATUS_EN[report.status].upper()}"
               f"  — {report.errors} error(s), {report.warnings} warning(s)")
    if with_party and report.party and report.resend is not None:
        out.append(f"  party {report.party}, period {report.period}, mode {report.mode}, "
                   f"resend {report.resend:02d}, spec {report.spec.version}")
    if report.stopped_at_tier == 1:
        out.append("  delivery checks failed: later checks were not run / 交付检查未通过，后续检查未执行")
    for skipped in report.skipped:
        out.append(f"  not run / 未执行: {skipped.message_zh} / {skipped.message_en}")
    if report.files:
        out.append("  files / 文件:")
        for fs in report.files.values():
            out.append(f"    {fs.name}  {fs.unit or ''}  {fs.rows} rows  {fs.errors} errors  {fs.warnings} warnings")
    return out


def render_text(report: Report, max_findings: int | None = 200) -> str:
    """The report as plain text for a terminal or an e-mail, Chinese and English."""
    out = report_head(report)
    if report.counts:
        out.append("  by code / 按错误代码:")
        for c in report.code_summary():
            more = f" (first {c['listed']} listed)" if c["listed"] < c["count"] else ""
            out.append(f"    {c['code']:<10} {c['severity']:<7} {c['count']:>8}{more}  {c['title_zh']} / {c['title_en']}")
        out.append("  findings / 明细:")
        shown = report.sorted_findings()
        for f in shown[:max_findings] if max_findings else shown:
            where = f.file or ""
            if f.line:
                where += f":{f.line}"
            if f.xpath:
                where += f" {f.xpath}"
            out.append(f"    {where}  {f.code}  {f.message_zh} / {f.message_en}")
        if max_findings and len(shown) > max_findings:
            out.append(f"    ... {len(shown) - max_findings} more in the full report (--format json)")
    return "\n".join(line for line in out if line) + "\n"


def _ns(report: Report) -> str:
    return report.spec.namespace


def _el(parent: etree._Element, ns: str, tag: str, text: Any = None, **attrs: Any) -> etree._Element:
    # Findings already show forbidden characters as escapes; a name or id from elsewhere
    # (a receipt's file names) gets the same, so that any input can be answered.
    e = etree.SubElement(parent, f"{{{ns}}}{tag}", {k: shown(str(v)) for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = shown(str(text))
    return e


def _bytes(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def receipt_xml(report_or_ns: Report | str, delivery_id: str, check_name: str, received_at: str,
                files: Iterable[Mapping[str, Any]], spec_version: str | None = None) -> bytes:
    """The receipt (``.rct.xml``) issued the moment a delivery arrives."""
    ns = report_or_ns if isinstance(report_or_ns, str) else _ns(report_or_ns)
    root = etree.Element(f"{{{ns}}}Receipt", nsmap={None: ns})
    root.set("specVersion", spec_version or (report_or_ns.spec.version if isinstance(report_or_ns, Report) else ""))
    _el(root, ns, "DeliveryId", delivery_id)
    _el(root, ns, "CheckFile", check_name)
    _el(root, ns, "ReceivedAt", received_at)
    fl = _el(root, ns, "Files")
    for f in files:
        _el(fl, ns, "File", name=f.get("name"), size=f.get("size"), sha256=f.get("sha256"))
    return _bytes(root)


def file_feedback_xml(report: Report, delivery_id: str | None = None) -> bytes:
    """File-level feedback (``.fbf.xml``): status, files, counts per code."""
    ns = _ns(report)
    root = etree.Element(f"{{{ns}}}FileFeedback", nsmap={None: ns})
    root.set("specVersion", report.spec.version)
    _el(root, ns, "DeliveryId", delivery_id or report.delivery or "")
    _el(root, ns, "Status", report.status)
    _el(root, ns, "Errors", report.errors)
    _el(root, ns, "Warnings", report.warnings)
    files = _el(root, ns, "Files")
    for f in report.files.values():
        _el(files, ns, "File", name=f.name, unit=f.unit, rows=f.rows, errors=f.errors, warnings=f.warnings)
    counts = _el(root, ns, "Counts")
    for c in report.code_summary():
        e = _el(counts, ns, "Code", code=c["code"], severity=c["severity"], tier=c["tier"], count=c["count"],
                listed=c["listed"])
        _el(e, ns, "Title", c["title_zh"], lang="zh")
        _el(e, ns, "Title", c["title_en"], lang="en")
    _skipped(root, ns, report)
    return _bytes(root)


def record_feedback_xml(report: Report, delivery_id: str | None = None) -> bytes:
    """Record-level feedback (``.fbr.xml``): every listed finding."""
    ns = _ns(report)
    root = etree.Element(f"{{{ns}}}RecordFeedback", nsmap={None: ns})
    root.set("specVersion", report.spec.version)
    _el(root, ns, "DeliveryId", delivery_id or report.delivery or "")
    _el(root, ns, "Status", report.status)
    fs = _el(root, ns, "Findings")
    for f in report.sorted_findings():
        e = _el(fs, ns, "Finding", code=f.code, severity=f.severity, tier=f.tier)
        for tag, val in (("File", f.file), ("Line", f.line), ("XPath", f.xpath), ("Field", f.field),
                         ("Value", f.value), ("Expected", f.expected), ("ComparedWith", f.compared_with)):
            if val is not None:
                _el(e, ns, tag, val)
        _el(e, ns, "Message", f.message_zh, lang="zh")
        _el(e, ns, "Message", f.message_en, lang="en")
    _skipped(root, ns, report)
    return _bytes(root)


def _skipped(root: etree._Element, ns: str, report: Report) -> None:
    """The rules not run because a unit they need could not be read, once each."""
    for s in report.skipped:
        e = _el(root, ns, "Skipped", unit=s.unit, file=s.file, code=s.code, rules=" ".join(s.rules))
        _el(e, ns, "Message", s.message_zh, lang="zh")
        _el(e, ns, "Message", s.message_en, lang="en")
