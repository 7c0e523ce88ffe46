"""Take the documentation's screenshots of the pages from a running server (the demo's data looks best).

    exchange-server demo --data-dir /tmp/kam-demo --port 8080 &      # wait for "Stop with Ctrl-C"
    .venv/bin/python -m tests.pages.screenshots http://127.0.0.1:8080 --out docs/screenshots

Writes ``login.png``, ``dashboard.png`` and ``dashboard-en.png`` (and, with ``--province-user``,
``province-deliveries.png``) at the 1366×768 laptop size the pages are made for.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT


def take(base: str, out: Path, user: str, password: str, province: tuple[str, str] | None = None) -> list[Path]:
    """Sign in through the form and capture the sign-in page, the dashboard in both languages, a province's page."""
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
        page.goto(base.rstrip("/") + "/analyst/")
        page.screenshot(path=str(out / "login.png"))
        page.fill("#username", user)
        page.fill("#password", password)
        with page.expect_navigation():
            page.click("button.primary")
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        with page.expect_navigation():
            page.click("#lang-en")
        page.screenshot(path=str(out / "dashboard-en.png"), full_page=True)
        shots = [out / "login.png", out / "dashboard.png", out / "dashboard-en.png"]
        if province:
            page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
            page.goto(base.rstrip("/") + "/province/")
            page.fill("#username", province[0])
            page.fill("#password", province[1])
            with page.expect_navigation():
                page.click("button.primary")
            page.screenshot(path=str(out / "province-deliveries.png"), full_page=True)
            shots.append(out / "province-deliveries.png")
        browser.close()
    return shots


def main() -> None:
    """Command line: base URL, output folder, analyst login."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--user", default="analyst")
    parser.add_argument("--password", default="analyst-demo-2026")
    parser.add_argument("--province-user", nargs=2, metavar=("NAME", "PASSWORD"), default=("hubei", "province-demo-2026"),
                        help="a province user for province-deliveries.png (the demo's by default)")
    args = parser.parse_args()
    for path in take(args.url, args.out, args.user, args.password, tuple(args.province_user)):
        print(path)


if __name__ == "__main__":
    main()
