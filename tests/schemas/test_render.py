"""The rendered standard lists every unit, field, rule, code domain and error code, and is up to date."""
from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from schemas.render import render_html, render_markdown, write_documents
from schemas.spec.model import Spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def markdown(spec: Spec) -> str:
    return render_markdown(spec)


@pytest.fixture(scope="module")
def html(spec: Spec) -> str:
    return render_html(spec)


def test_checked_in_documents_are_up_to_date(spec: Spec) -> None:
    assert write_documents(spec, REPO / "docs" / "standard", check=True) == [], "run: python -m schemas generate"


def _names(spec: Spec) -> list[str]:
    names = [spec.version, spec.namespace]
    for u in spec.units:
        names += [u.code, u.name, u.name_zh, u.name_en, *u.field_ids, *(r.id for r in u.rules)]
    names += [r.id for r in spec.cross_rules]
    names += [d.domain for d in spec.domains.values()] + [d.name_zh for d in spec.domains.values()]
    names += list(spec.errors)
    return names


@pytest.mark.parametrize("edition", ["markdown", "html"])
def test_every_unit_field_rule_domain_and_error_is_listed(spec: Spec, edition: str, request: pytest.FixtureRequest) -> None:
    text = request.getfixturevalue(edition)
    missing = [n for n in _names(spec) if n not in text]
    assert not missing, missing
    assert len(spec.standard_domains) == 50


def test_every_local_network_and_code_is_listed(spec: Spec, markdown: str) -> None:
    for d in spec.domains.values():
        for code in d.current.codes.values():
            assert f"{code.code} {code.name_zh}" in markdown or f"`{code.code}` | {code.name_zh}" in markdown, \
                (d.domain, code.code)


def test_versions_and_their_changes_are_shown(spec: Spec, markdown: str) -> None:
    area = spec.domain("Domain_area_id")
    for v in area.versions:
        assert f"| {v.version} | {v.effective_from.isoformat()} |" in markdown
    assert "0565" in markdown and "0634" in markdown  # removed codes stay visible in the history


def test_html_is_well_formed_with_anchors(spec: Spec, html: str) -> None:
    doc = lxml.html.document_fromstring(html)
    ids = set(doc.xpath("//@id"))
    assert {f"unit-{u.code}" for u in spec.units} <= ids
    assert {d.domain.lower() for d in spec.domains.values()} <= ids
    assert {f"error-{c.lower()}" for c in spec.errors} <= ids
    # every internal link points at an anchor that exists
    targets = {h[1:] for h in doc.xpath("//a/@href") if h.startswith("#")}
    assert targets and targets <= ids, sorted(targets - ids)[:5]
    assert doc.xpath("//table") and doc.get("lang") == "zh-CN"
    assert "<script" not in html


def test_rendering_is_deterministic(spec: Spec) -> None:
    assert render_markdown(spec) == render_markdown(spec)


def test_check_mode_writes_nothing(spec: Spec, tmp_path: Path) -> None:
    stale = write_documents(spec, tmp_path, check=True)
    assert {p.name for p in stale} == {"standard.md", "standard.html"} and not any(tmp_path.iterdir())
    assert write_documents(spec, tmp_path) == [] and write_documents(spec, tmp_path, check=True) == []
