"""Render the standard as a readable bilingual document (Markdown and HTML) with jinja2.

This is "the modern edition of the standard": every unit with its fields and rules, the
cross-unit rules, all code domains with every version, and the error catalogue. The output
is deterministic (dates come from the spec, not the clock) so the checked-in copies under
docs/standard/ can be tested for being up to date.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ..spec.model import CodeDomain, CodeListVersion, Rule, Spec, Unit

__all__ = ["render_markdown", "render_html", "write_documents", "document_model"]


def _md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _rule_text(rule: Rule) -> str:
    """What a rule checks, in the spec's own words (expression or named check)."""
    parts = []
    if rule.when_expr:
        parts.append(f"when {rule.when_expr}")
    if rule.assert_expr:
        parts.append(f"assert {rule.assert_expr}")
    if rule.check:
        detail = rule.check
        if rule.fields:
            detail += "(" + ", ".join(rule.fields) + ")"
        if rule.left and rule.right:
            def side(s: Any) -> str:
                key = s.get("field") or "+".join(s.get("key") or [])
                where = f" where {s['where']}" if s.get("where") else ""
                return f"{s.get('unit')}.{key}{where}"
            detail += f": {side(rule.left)} ~ {side(rule.right)}"
            if rule.by:
                detail += " by " + ", ".join(rule.by)
        if rule.requires:
            detail += f" (needs the {rule.requires})"
        parts.append(detail)
    return "; ".join(parts)


def _networks_by_province(version: CodeListVersion) -> list[dict[str, Any]]:
    provinces = version.at_level("province")
    return [{"province": p, "networks": [c for c in version.at_level("local_network") if c.parent == p.code]}
            for p in provinces]


def document_model(spec: Spec) -> dict[str, Any]:
    """Everything the templates show, precomputed so the templates stay simple."""
    conventions = Path(spec.root, "CONVENTIONS.md")
    changelog = Path(spec.root, "CHANGELOG.md")
    domains: list[dict[str, Any]] = []
    for d in [*spec.standard_domains, *spec.extension_domains]:
        domains.append({
            "d": d,
            "anchor": d.domain.lower(),
            "used_by": [f"{u.code} {u.name}.{f.id}" for u, f in spec.referencing_fields(d.domain)],
            "grouped": _networks_by_province(d.current) if d.domain == "Domain_area_id" else None,
            "hierarchical": any(c.parent for c in d.current.codes.values()) and d.domain != "Domain_area_id",
        })
    tiers = [{"tier": t, "codes": [e for e in spec.errors.values() if e.tier == n]}
             for n, t in sorted(spec.tiers.items())]
    return {
        "spec": spec,
        "units": spec.units,
        "cross_rules": spec.cross_rules,
        "domains": domains,
        "tiers": tiers,
        "conventions_md": conventions.read_text("utf-8") if conventions.exists() else "",
        "changelog_md": changelog.read_text("utf-8") if changelog.exists() else "",
        "rule_text": _rule_text,
        "domain_anchor": lambda name: name.lower(),
        "unit_anchor": lambda u: f"unit-{u.code}",
    }


def _environment() -> jinja2.Environment:
    from templates import TEMPLATE_DIR

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cell"] = _md_cell
    return env


def _demote(text: str) -> str:
    """Push a Markdown document's headings two levels down, to nest it inside a section."""
    out = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "##" + line
        out.append(line)
    return "\n".join(out) + "\n"


def render_markdown(spec: Spec) -> str:
    """The standard as one Markdown document."""
    model = document_model(spec)
    model["conventions_md"] = _demote(model["conventions_md"])
    model["changelog_md"] = _demote(model["changelog_md"])
    return _environment().get_template("spec/standard.md.j2").render(**model)


def render_html(spec: Spec) -> str:
    """The standard as one self-contained HTML page: the Markdown edition, rendered.

    One template holds the content, so the two editions cannot drift apart; markdown-it
    (CommonMark with tables) turns it into HTML, and the page template adds the styling.
    """
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(render_markdown(spec))
    return _environment().get_template("spec/standard.html.j2").render(spec=spec, body=Markup(body))


def write_documents(spec: Spec, out_dir: Path, check: bool = False) -> list[Path]:
    """Write standard.md and standard.html into ``out_dir``; with ``check``, return stale paths instead."""
    stale = []
    for name, text in (("standard.md", render_markdown(spec)), ("standard.html", render_html(spec))):
        path = out_dir / name
        data = text.encode("utf-8")
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(path)
        elif not path.exists() or path.read_bytes() != data:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return stale


# Re-exported for templates' type hints and callers that build their own pages.
_ = (CodeDomain, Unit)
