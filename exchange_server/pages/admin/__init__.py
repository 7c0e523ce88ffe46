"""The admin pages (``/admin/``, admin accounts only): the review queue, and the management pages.

This package creates the one ``admin`` blueprint; each view module registers its routes on
it with ``from . import bp``: :mod:`.review` (the review queue), :mod:`.lists` (the top-500
list) and :mod:`.manage` (cycles, code lists, accounts, the audit log), :mod:`.monitor` (the transmission
monitor and reminders); :mod:`.actions` holds
what their views share. Templates live in ``templates/admin/`` and
extend ``admin/base_admin.html``, whose navigation is :data:`NAV`.
"""
from __future__ import annotations

from flask import url_for

from ..blueprints import page_blueprint

# A page blueprint: CSRF on every POST, HTML error pages, the pages' security headers.
bp = page_blueprint("admin", __name__, url_prefix="/admin")

#: The admin navigation: (section, endpoint, Chinese, English).
NAV: list[tuple[str, str, str, str]] = [
    ("review", "admin.review_queue", "审核", "Review"),
    ("cycles", "admin.cycles", "周期", "Cycles"),
    ("lists", "admin.lists", "名单", "Lists"),
    ("code_lists", "admin.code_lists", "代码表", "Code lists"),
    ("accounts", "admin.accounts", "账户", "Accounts"),
    ("audit", "admin.audit", "审计", "Audit"),
    ("monitor", "admin.monitor", "传输监控", "Monitor"),
    ("reminders", "admin.reminders", "催报提醒", "Reminders"),
]


def admin_nav() -> list[tuple[str, str, str, str]]:
    """The navigation entries as (section, href, Chinese, English) for ``base_admin.html``."""
    return [(section, url_for(endpoint), zh, en) for section, endpoint, zh, en in NAV]


bp.add_app_template_global(admin_nav)

from . import lists, manage, monitor, review  # noqa: E402,F401  (they register their routes on bp)
