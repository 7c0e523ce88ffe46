"""How the agent tells people what a report says: findings in the export's terms, counts per code, report files."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from schemas.validation import Report

from .provenance import SourceCell, SourceMap

log = logging.getLogger(__name__)

DEFAULT_PER_CODE = 5  # findings printed per code after a verdict; the full report is kept on disk


def source_map(folder: Path | None) -> SourceMap | None:
    """The map from a built delivery's files and lines back to the exports' cells, None where there is none."""
    if folder is None:
        return None
    try:
        return SourceMap.for_delivery(Path(folder))
    except Exception as exc:  # noqa: BLE001 - a map that cannot be read must not hide the findings
        log.warning("the export map of %s cannot be read (%s); findings name the built files only", folder, exc)
        return None


def locate(smap: SourceMap | None, finding: dict[str, Any]) -> SourceCell | None:
    """The export cell a finding (as a dict) is about, where the map knows it."""
    if smap is None or not finding.get("file") or not finding.get("line"):
        return None
    try:
        return smap.locate(str(finding["file"]), int(finding["line"]), finding.get("field"))
    except Exception as exc:  # noqa: BLE001
        log.debug("no export cell for %s: %s", finding, exc)
        return None


def annotate(findings: list[dict[str, Any]], smap: SourceMap | None) -> list[dict[str, Any]]:
    """The findings with ``source`` (export, sheet, row, column, cell, text) added where the map knows it."""
    out = []
    for f in findings:
        f = dict(f)
        cell = locate(smap, f)
        if cell is not None:
            f["source"] = {k: getattr(cell, k, None) for k in ("export", "sheet", "row", "column", "cell")}
            f["source"]["text"] = cell.describe()
        out.append(f)
    return out


def finding_line(f: dict[str, Any]) -> str:
    """One finding on one line: the export's cell (when known) beside the built file and line, code, both languages."""
    built = str(f.get("file") or "")
    if f.get("line"):
        built += f":{f['line']}"
    if f.get("xpath"):
        built += f" {f['xpath']}"
    src = (f.get("source") or {}).get("text")
    where = f"{src} [{built}]" if src and built else (src or built or "-")
    return f"    {where}  {f.get('code')}  {f.get('message_zh') or ''} / {f.get('message_en') or ''}"


def render_findings(counts: list[dict[str, Any]], findings: list[dict[str, Any]],
                    per_code: int | None) -> list[str]:
    """Counts per code, then the findings (the first ``per_code`` of each code; all when None)."""
    lines: list[str] = []
    if counts:
        lines.append("  by code / 按错误代码:")
        for c in counts:
            title = f"  {c['title_zh']} / {c['title_en']}" if c.get("title_zh") else ""
            lines.append(f"    {c['code']:<10} {c.get('severity') or '':<7} {c.get('count', 0):>8}{title}")
    if findings:
        head = "  findings / 明细" + (f" (first {per_code} per code / 每个代码前 {per_code} 条)" if per_code else "")
        lines.append(head + ":")
        order = [c["code"] for c in counts] + sorted({str(f.get("code")) for f in findings}
                                                     - {c["code"] for c in counts})
        for code in order:
            mine = [f for f in findings if f.get("code") == code]
            for f in mine[:per_code] if per_code else mine:
                lines.append(finding_line(f))
            total = next((int(c.get("count") or 0) for c in counts if c["code"] == code), len(mine))
            shown = min(len(mine), per_code) if per_code else len(mine)
            if total > shown:
                lines.append(f"    ... {code}: {total - shown} more / 另有 {total - shown} 条")
    return lines


def render_report(report: Report, smap: SourceMap | None, per_code: int | None = None,
                  hint: str | None = None) -> str:
    """A local report for people, both languages, findings in the export's terms where known."""
    from schemas.validation.feedback import report_head

    lines = report_head(report, with_party=False)
    lines += render_findings(report.code_summary(), annotate([f.as_dict() for f in report.sorted_findings()], smap),
                             per_code)
    if hint:
        lines.append(f"  {hint}")
    return "\n".join(lines) + "\n"


def problem_line(p: Any) -> str:
    """One problem the mapping found in the exports, on one line, both languages where it has them."""
    where = ""
    describe = getattr(p, "describe", None)
    cell = getattr(p, "cell", None) or getattr(p, "source", None)
    if callable(describe):
        where = str(describe())
    elif cell is not None and callable(getattr(cell, "describe", None)):
        where = str(cell.describe())
    zh, en = getattr(p, "message_zh", None), getattr(p, "message_en", None)
    text = f"{zh} / {en}" if zh and en else str(p)
    if where and where not in text:
        text = f"{where}  {text}"
    code = getattr(p, "code", None)
    return f"    {code + '  ' if code and code not in text else ''}{text}"


def write_report_files(json_path: Path, text_path: Path, doc: dict[str, Any], text: str) -> None:
    """Keep a report as JSON and readable text (each written whole, then renamed in place)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    for target, body in ((json_path, json.dumps(doc, ensure_ascii=False, indent=1, default=str)), (text_path, text)):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(body, "utf-8")
        os.replace(tmp, target)
