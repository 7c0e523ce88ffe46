"""The province pages' marks: current or superseded data, an answered resend request, cycles never opened,
units by name, dates and file names that stay readable.

Hubei (42) sends 202610 six times: 00 (all six units), 01 (all six again), 02 (31201 only),
03 (31201, its bytes altered after the check file was written: rejected, and HQ requests a
resend), then on the page 04 (31202 only: accepted, but it does not resend what failed, so the
request stands) and 05 (31201), which answers it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask

from exchange_server.app import create_app
from exchange_server.cycles.services import CycleService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.review.services import ReviewService
from exchange_server.submissions.models import Delivery
from tests.pages.test_province_upload import Env, folder_files, post_files, sign_in, upload_runtime, upload_token
from tests.support.receiving import receive_folder

CSS = Path(__file__).resolve().parents[2] / "templates" / "static" / "province.css"


def resend_copy(sample: Path, out: Path, resend: int, units: tuple[str, ...] | None = None,
                spoil: bool = False) -> Path:
    """The sample delivery as resend ``resend`` (only ``units``, if given); ``spoil`` alters a data file's bytes."""
    out.mkdir(parents=True)
    chk = next(sample.glob("*.chk"))
    lines = chk.read_text("ascii").splitlines()
    head, entries = lines[0].split("|"), []
    for line in lines[1:]:
        fields = line.split("|")
        name = fields[1]
        if units is not None and name.split("_")[3] not in units:
            continue
        new = name.replace("_00_001", f"_{resend:02d}_001")
        data = (sample / name).read_bytes()
        (out / new).write_bytes(data + b"\n" if spoil else data)
        entries.append("|".join([fields[0], new, *fields[2:]]))
    head[5], head[-1] = f"{resend:02d}", str(len(entries))
    (out / chk.name.replace("_00.chk", f"_{resend:02d}.chk")).write_text("\n".join(["|".join(head), *entries]) + "\n",
                                                                         "ascii")
    return out


@dataclass(frozen=True)
class Story:
    """The five deliveries of the module's story."""

    env: Env
    ids: list[int]  # resends 00..04, in order


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The deliveries 00 to 03 received and judged, HQ's resend request on 03, and 04 uploaded on the page."""
    root = tmp_path_factory.mktemp("fixes")
    env = upload_runtime(root)
    rt = env.rt
    ids = [receive_folder(rt, "prov42", env.sample)]
    IngestionWorker(rt, "test").drain()
    ids.append(receive_folder(rt, "prov42", resend_copy(env.sample, root / "r01", 1)))
    IngestionWorker(rt, "test").drain()
    ids.append(receive_folder(rt, "prov42", resend_copy(env.sample, root / "r02", 2, ("31201",))))
    IngestionWorker(rt, "test").drain()
    ids.append(receive_folder(rt, "prov42", resend_copy(env.sample, root / "r03", 3, ("31201",), spoil=True)))
    IngestionWorker(rt, "test").drain()
    with rt.db.session() as s:
        statuses = [s.get(Delivery, i).status for i in ids]  # type: ignore[union-attr]
        assert statuses[:3] != ["rejected"] * 3 and "rejected" not in statuses[:3], statuses
        assert statuses[3] == "rejected", statuses
        review = ReviewService(s, rt.archive, rt.spec)
        review.request_resend("hq", review.delivery(ids[3]), "")
    with rt.db.session() as s:
        cycles = CycleService(s, rt.spec, "test")
        cycles.create("202612")  # planned: never opened
        cycles.create("202605", state="closed")  # entered closed: never opened either
        cycles.create("202609", state="open")
        cycles.close("202609")  # open once: what is missing there is missing
    yield Story(env, ids)
    rt.db.dispose()


@pytest.fixture(scope="module")
def app(story: Story) -> Flask:
    """The WSGI app on the story's runtime."""
    return create_app(runtime=story.env.rt)


def row(html: str, delivery_id: int) -> str:
    """A delivery's row in the list."""
    m = re.search(rf'<tr data-delivery="{delivery_id}".*?</tr>', html, re.S)
    assert m, delivery_id
    return m.group(0)


def test_resend_request_clears_once_a_resend_is_accepted(story: Story, app: Flask) -> None:
    ids = story.ids
    c = sign_in(app, "prov42")
    html = c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
    assert 'id="resend-requested"' in html and 'id="resend-answered"' not in html
    assert 'data-mark="resend"' in row(c.get("/province/").get_data(as_text=True), ids[3])
    root = story.env.sample.parent.parent

    def upload(resend: int, unit: str) -> int:
        r = post_files(c, folder_files(resend_copy(story.env.sample, root / f"r{resend:02d}", resend, (unit,))),
                       upload_token(c))
        assert r.status_code == 303, r.get_data(as_text=True)[:1500]
        ids.append(int(r.headers["Location"].split("/")[-1].split("?")[0]))
        # Judged yet? Not before the worker ran: the request still stands.
        assert 'id="resend-requested"' in c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
        IngestionWorker(story.env.rt, "test").drain()
        with story.env.rt.db.session() as s:
            assert s.get(Delivery, ids[-1]).status in ("accepted", "accepted_with_warnings")  # type: ignore[union-attr]
        return ids[-1]

    # A resend that leaves out what failed (31201) does not answer the request (nor close HQ's item) ...
    upload(4, "31202")
    assert 'id="resend-requested"' in c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
    with story.env.rt.db.session() as s:
        review = ReviewService(s, story.env.rt.archive, story.env.rt.spec)
        assert review.superseded_by(review.delivery(ids[3])) is None
    # ... the one that resends it does.
    upload(5, "31201")
    html = c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
    assert 'id="resend-requested"' not in html and f'id="resend-answered" data-answer="{ids[5]}"' in html
    assert "P_42_202610_05.chk" in html and "已被采纳" in html
    assert 'data-state="resent"' in html and 'data-state="resend_requested"' not in html  # the heading too
    listing = c.get("/province/").get_data(as_text=True)
    assert f'data-mark="resent" data-answer="{ids[5]}"' in row(listing, ids[3]) and 'data-mark="resend"' not in listing
    assert "要求重报" not in row(listing, ids[3]) and "已重报" in row(listing, ids[3])
    c.get("/lang/en")
    html = c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
    assert "has been accepted, which answers it" in html


def test_deliveries_are_marked_current_or_superseded(story: Story, app: Flask) -> None:
    ids = story.ids
    assert len(ids) == 6, "runs after the resend test (the module's story)"
    c = sign_in(app, "prov42")
    listing = c.get("/province/").get_data(as_text=True)
    marks = {i: re.search(r'data-counts="(\w*)"', row(listing, i)).group(1) for i in ids}  # type: ignore[union-attr]
    assert marks == {ids[0]: "superseded", ids[1]: "partly", ids[2]: "superseded", ids[3]: "", ids[4]: "current",
                     ids[5]: "current"}
    assert f'data-by="{ids[1]}"' in row(listing, ids[0]) and f'data-by="{ids[5]}"' in row(listing, ids[1])
    assert "已被取代" in row(listing, ids[0]) and "部分现行" in row(listing, ids[1]) and "现行版本" in row(listing, ids[4])
    # One delivery's page: per unit, which version counts now.
    html = c.get(f"/province/deliveries/{ids[1]}").get_data(as_text=True)
    units = dict(re.findall(r'<tr data-unit="(\d+)" data-mark="(\w+)"', html))
    assert units == {"31201": "superseded", "31202": "superseded", "31203": "current", "32001": "current",
                     "32002": "current", "32003": "current"}
    assert re.search(rf'<tr data-unit="31201" data-mark="superseded" data-by="{ids[5]}">', html)
    assert re.search(rf'<tr data-unit="31202" data-mark="superseded" data-by="{ids[4]}">', html)
    assert f'href="/province/deliveries/{ids[5]}">#{ids[5]}</a> (重报 05)' in html
    html = c.get(f"/province/deliveries/{ids[3]}").get_data(as_text=True)
    assert 'id="counts-none" data-why="not_accepted"' in html
    c.get("/lang/en")
    listing = c.get("/province/").get_data(as_text=True)
    assert "partly current" in row(listing, ids[1]) and ">superseded<" in row(listing, ids[0])
    assert "What counts now" in c.get(f"/province/deliveries/{ids[4]}").get_data(as_text=True)
    # A network's account sees none of it (nor links to it).
    assert sign_in(app, "net0714").get(f"/province/deliveries/{ids[1]}").status_code == 404


def test_cycles_never_opened_are_not_shown_as_missing(story: Story, app: Flask) -> None:
    html = sign_in(app, "prov42").get("/province/cycles").get_data(as_text=True)

    def states(cycle: str) -> set[str]:
        m = re.search(rf'<tr data-cycle="{cycle}"[^>]*>.*?</tr>', html, re.S)
        assert m, cycle
        return set(re.findall(r'data-unit="\d+" data-state="(\w+)"', m.group(0)))

    assert states("202612") == {"not_open"} and states("202605") == {"not_open"}
    assert states("202609") == {"missing"}  # open once, nothing sent: missing
    assert 'data-cycle="202612" data-state="planned" data-open="no" data-complete="no" data-opened="no"' in html
    assert "未开放" in html and "state-not_open" in html
    assert ".unit-state.state-not_open" in CSS.read_text() and "var(--miss)" not in \
        CSS.read_text().split(".unit-state.state-not_open", 1)[1].split("}", 1)[0]


def test_units_by_name_in_both_languages(story: Story, app: Flask) -> None:
    c = sign_in(app, "prov42")
    html = c.get("/province/cycles").get_data(as_text=True)
    assert '500强大客户基本信息 <span translate="no">VIP_CUST_INFO (31201)</span>' in html
    html = c.get(f"/province/deliveries/{story.ids[0]}").get_data(as_text=True)
    assert '500强大客户基本信息 <span translate="no">VIP_CUST_INFO (31201)</span>' in html  # the files' units
    c.get("/lang/en")
    html = c.get("/province/cycles").get_data(as_text=True)
    assert 'Top-500 customer details (master data) <span translate="no">VIP_CUST_INFO (31201)</span>' in html
    assert "500强大客户基本信息" not in html


def test_dates_do_not_wrap_and_file_names_break_at_underscores(story: Story, app: Flask) -> None:
    c = sign_in(app, "prov42")
    listing = c.get("/province/").get_data(as_text=True)
    assert re.search(r'<td class="date">\d{4}-\d{2}-\d{2} \d{2}:\d{2}', listing)
    assert 'title="P_42_202610_01.chk">P_<wbr>42_<wbr>202610_<wbr>01.chk</a>' in listing
    html = c.get(f"/province/deliveries/{story.ids[0]}").get_data(as_text=True)
    assert 'P_<wbr>42_<wbr>202610_<wbr>31201_<wbr>00_<wbr>001.txt' in html
    css = CSS.read_text()
    assert re.search(r"td\.date, \.date[^{]*\{ white-space: nowrap; \}", css)
    assert "text-underline-offset" in css
    html = c.get("/province/cycles").get_data(as_text=True)
    assert re.search(r'<span class="date">\d{4}-\d{2}-\d{2} \d{2}:\d{2}', html)


def test_the_page_needs_no_scripts_except_the_upload(story: Story, app: Flask) -> None:
    c = sign_in(app, "prov42")
    for url in ("/province/", "/province/cycles", f"/province/deliveries/{story.ids[0]}"):
        r = c.get(url)
        assert "<script" not in r.get_data(as_text=True) and "script-src" not in r.headers["Content-Security-Policy"]
