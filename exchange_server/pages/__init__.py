"""The server's pages (server-rendered jinja2): sign-in, the analyst pages, the admin console, the province pages.

No page runs a script except the province upload page, whose one static script only shows the
upload's progress (the form works without it). Templates live in the top-level ``templates/``
package (``base.html``, ``auth/``, ``analyst/``, ``admin/``, ``province/``), the stylesheets in ``templates/static/``. The pages use the signed session
cookie of :mod:`.auth`; the API under ``/api/`` keeps its bearer tokens and JSON errors.
"""
from __future__ import annotations

from flask import Blueprint, Flask

from templates import TEMPLATE_DIR

from ..runtime.flask import runtime
from . import admin, analyst, auth, hub, i18n, province
from .auth import current_account
from .charts import compact_money, money, percent
from .csrf import csrf_token
from .services import short_area_name, stamp_text

static = Blueprint("pages_static", __name__, static_folder=str(TEMPLATE_DIR / "static"),
                   static_url_path="/static/pages")


def init_app(app: Flask) -> None:
    """Register the page blueprints, the pages' stylesheet and the template helpers."""
    app.register_blueprint(auth.bp)
    app.register_blueprint(i18n.bp)
    app.register_blueprint(analyst.bp)
    app.register_blueprint(admin.bp)  # admin pages: review queue, lists, monitor, reminders, management
    app.register_blueprint(province.bp)  # province pages: own deliveries, the calendar, upload in the browser
    if runtime(app).settings.is_hub:
        app.register_blueprint(hub.bp)  # a province hub's pages: approve networks, forward to HQ (docs/tiers.md)
    app.register_blueprint(static)
    app.add_template_global(csrf_token)
    app.add_template_global(current_account)
    app.add_template_global(hub.hub_link)  # the header's link to the hub pages (None unless at a hub)
    app.add_template_global(i18n.t)
    app.add_template_global(i18n.pick)
    app.add_template_global(i18n.html_lang)
    app.add_template_global(i18n.current_language)
    app.add_template_filter(money)
    app.add_template_filter(compact_money)
    app.add_template_filter(percent)
    app.add_template_filter(short_area_name, "short_area")
    app.add_template_filter(stamp_text, "stamp")
