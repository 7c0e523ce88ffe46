"""The dashboard's completeness matrix shows the calendar: the cycle's state and deadline, and province exceptions."""
from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient

from exchange_server.admin.services import CycleExceptionService
from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST
from tests.pages.test_auth import sign_in


def test_exception_and_closed_cycle_show_in_the_matrix(client: FlaskClient, page_runtime: Runtime) -> None:
    sign_in(client, *ANALYST)
    html = client.get("/analyst/202609").get_data(as_text=True)
    assert 'id="comp-calendar" data-state="open" data-exceptions="0"' in html and 'id="comp-exceptions"' not in html
    with page_runtime.db.session() as s:
        CycleService(s, page_runtime.spec, "admin").close("202609")
        until = dt.datetime(2031, 1, 1, 10, 0, tzinfo=dt.timezone.utc)  # 18:00 Beijing time
        exc_id = CycleExceptionService(s, "admin").grant("202609", "44", until, "系统割接 cut-over").id
    try:
        html = client.get("/analyst/202609").get_data(as_text=True)
        assert 'id="comp-calendar" data-state="closed" data-exceptions="1"' in html
        assert 'class="prov exc" data-prov="44" data-exception-until="20310101180000"' in html
        assert html.count("excepted") == html.count('data-prov="44" data-unit=')  # every cell of 44, no other
        assert '<li data-prov="44" data-valid="yes">' in html and "2031-01-01 18:00" in html and "系统割接 cut-over" in html
        assert "已关闭" in html
        client.set_cookie("kam_lang", "en")
        english = client.get("/analyst/202609").get_data(as_text=True)
        assert "exception until" in english and "closed" in english
    finally:
        client.delete_cookie("kam_lang")
        with page_runtime.db.session() as s:
            CycleExceptionService(s, "admin").revoke(exc_id)
            CycleService(s, page_runtime.spec, "admin").reopen("202609")
    html = client.get("/analyst/202609").get_data(as_text=True)
    assert 'data-exceptions="0"' in html and "data-exception-until" not in html
