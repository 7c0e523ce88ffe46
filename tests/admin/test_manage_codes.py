"""The code-list pages in-process: browse domains and versions, propose a version, download its YAML (publishing: test_code_lists_live)."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from flask.testing import FlaskClient

from exchange_server.runtime import Runtime
from schemas import Spec, load_spec
from tests.admin.conftest import Accounts, sign_in


def test_every_domain_is_listed_and_browsable(client: FlaskClient, accounts: Accounts, spec: Spec) -> None:
    sign_in(client, accounts.admin())
    html = client.get("/admin/code-lists").get_data(as_text=True)
    for d in spec.domains:
        assert f'data-domain="{d}"' in html
    page = client.get("/admin/code-lists/Domain_level_id").get_data(as_text=True)
    dom = spec.domain("Domain_level_id")
    assert all(f'data-version="{v.version}"' in page for v in dom.versions)
    assert all(f'data-code="{c}"' in page for c in dom.current.codes)
    first = dom.versions[0]
    old = client.get(f"/admin/code-lists/Domain_level_id?version={first.version}").get_data(as_text=True)
    assert all(f'data-code="{c}"' in old for c in first.codes)
    assert client.get("/admin/code-lists/Domain_nothing").status_code == 404


def test_propose_a_version_and_download_its_yaml(client: FlaskClient, accounts: Accounts, spec: Spec,
                                                 admin_runtime: Runtime, tmp_path: Path) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    dom = spec.domain("Domain_level_id")
    base = dom.current
    old_code = next(iter(base.codes))
    free = next(str(n) for n in range(10) if str(n) not in base.codes)
    r = client.post("/admin/code-lists/Domain_level_id/drafts", data={
        "csrf_token": csrf, "version": "9.1", "effective_from": "2031-01-01", "based_on": base.version,
        "add": f"{free} | 测试级 | Test level", "update": f"{old_code} | | Renamed level", "remove": "",
        "note_zh": "测试", "note_en": "test"})
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]
    page = client.get("/admin/code-lists/Domain_level_id").get_data(as_text=True)
    assert 'data-version="9.1" data-state="proposed"' in page
    assert 'id="publish-notice"' in page
    assert f'data-code="{free}"' not in page  # not in force until published: the shown codes are the standard's
    draft_id = page.split('data-draft="')[1].split('"')[0]
    snippet = client.get(f"/admin/code-lists/Domain_level_id/drafts/{draft_id}.yaml")
    assert snippet.status_code == 200 and snippet.mimetype == "text/yaml"
    entry = yaml.safe_load(snippet.get_data(as_text=True))[0]
    assert entry["version"] == "9.1" and str(entry["effective_from"]) == "2031-01-01"
    assert entry["based_on"] == base.version and entry["add"] == [{"code": free, "name_zh": "测试级", "name_en": "Test level"}]
    assert entry["update"] == [{"code": old_code, "name_en": "Renamed level"}]
    # Merged into a copy of interface_specs, the snippet loads with the spec loader's own rules.
    root = tmp_path / "interface_specs"
    shutil.copytree(spec.root, root)
    target = root / "code_lists" / "Domain_level_id.yaml"
    raw = yaml.safe_load(target.read_text("utf-8"))
    raw["versions"].append(entry)
    target.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), "utf-8")
    merged = load_spec(root).domain("Domain_level_id").get_version("9.1")
    assert merged.codes[free].name_zh == "测试级" and merged.codes[old_code].name_en == "Renamed level"
    # Withdraw it: kept, marked.
    r = client.post(f"/admin/code-lists/Domain_level_id/drafts/{draft_id}/withdraw", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert 'data-state="withdrawn"' in client.get("/admin/code-lists/Domain_level_id").get_data(as_text=True)


def test_invalid_proposals_are_refused_with_reasons(client: FlaskClient, accounts: Accounts, spec: Spec) -> None:
    csrf = sign_in(client, accounts.admin())
    dom = spec.domain("Domain_level_id")
    base = dom.current
    form = {"csrf_token": csrf, "version": "9.2", "effective_from": "2031-01-01", "based_on": base.version,
            "add": "", "update": "", "remove": ""}
    cases = [({}, "code_version_invalid"),  # nothing changes
             ({"remove": "ZZ"}, "code_version_invalid"),
             ({"add": f"{next(iter(base.codes))} | 重复 | Duplicate"}, "code_version_invalid"),
             ({"add": "X | a", "effective_from": "2031-01-01"}, "code_version_invalid"),
             ({"add": "7 | 甲 | A", "effective_from": "2001-01-01"}, "code_version_invalid"),
             ({"version": base.version, "remove": next(iter(base.codes))}, "code_version_exists"),
             ({"based_on": "nope", "remove": "1"}, "bad_based_on"),
             ({"add": "bad code with spaces"}, "bad_code_line")]
    for change, code in cases:
        r = client.post("/admin/code-lists/Domain_level_id/drafts", data={**form, **change})
        assert r.status_code in (400, 409) and code in r.get_data(as_text=True), (change, r.status_code)
