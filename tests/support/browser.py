"""Headless Debian Chromium driven by Playwright: one browser for the whole test session.

Playwright's sync API allows one running instance per thread, so the browser is a single
session-wide fixture (registered in tests/conftest.py) that every browser test shares;
each test gets a fresh context (no cookies) and page.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, which this machine refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT: "ViewportSize" = {"width": 1366, "height": 768}


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (scripts/test installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (skipped locally when missing, failed in CI)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e .[test])")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        _missing("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Error as exc:
            _missing(f"chromium does not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) with a laptop-sized window; downloads allowed."""
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="zh-CN")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    """A page in a fresh profile."""
    return context.new_page()


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """Where a test's screenshot goes: docs/screenshots/ when KAM_SCREENSHOTS=1 (to refresh the docs), else tmp."""
    if os.environ.get("KAM_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "screenshots" / name
    return tmp_path / name
