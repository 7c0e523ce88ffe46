"""Loading the standard: the real spec loads completely; a broken spec fails loudly with file and key."""
from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from schemas._exceptions import SpecError
from schemas.spec import load_spec
from schemas.spec.loader import SpecLoader, default_spec_dir
from schemas.spec.model import Spec


def test_the_standard_loads_completely(spec: Spec) -> None:
    assert [u.code for u in spec.units] == ["31101", "31201", "31202", "31203", "32001", "32002", "32003", "32004"]
    assert [d.number for d in spec.standard_domains] == list(range(1, 51))
    assert {d.domain for d in spec.extension_domains} == {"Ext_change_type", "Ext_cert_type", "Ext_yes_no",
                                                          "Ext_contact_role"}
    for u in spec.units:
        for f in u.fields:
            assert f.name_zh and f.name_en, (u.name, f.id)
            if f.domain:
                assert f.domain in spec.domains, (u.name, f.id)


def test_area_codes_cover_every_province_and_local_network(spec: Spec) -> None:
    area = spec.domain("Domain_area_id").version_on(dt.date(2026, 10, 1))
    provinces = area.at_level("province")
    assert len(provinces) == 31
    assert all(re.fullmatch(r"[1-6][0-9]", p.code) for p in provinces)
    networks = area.at_level("local_network")
    assert len(networks) >= 320
    assert all(re.fullmatch(r"0[0-9]{2,3}", n.code) and n.parent in {p.code for p in provinces} for n in networks)
    # every province has at least one network; the municipalities have exactly their city code
    by_province = {p.code: [n.code for n in networks if n.parent == p.code] for p in provinces}
    assert all(by_province.values())
    assert by_province["11"] == ["010"] and by_province["31"] == ["021"] and by_province["50"] == ["023"]
    assert "0755" in by_province["44"] and "027" in by_province["42"]


def test_code_list_versions_apply_by_date(spec: Spec) -> None:
    area = spec.domain("Domain_area_id")
    assert "0565" in area.version_on(dt.date(2011, 8, 1)) and "0565" not in area.version_on(dt.date(2011, 9, 1))
    assert area.version_on(dt.date(2005, 1, 1)).codes["0710"].name_zh == "襄樊本地网"
    assert area.version_on(dt.date(2026, 1, 1)).codes["0710"].name_zh == "襄阳本地网"
    assert "0955" not in area.version_on(dt.date(2003, 1, 1)) and "0955" in area.current
    assert "403" in spec.domain("Domain_bank_id").version_on(dt.date(2026, 10, 1))


def test_records_carry_leaf_codes_only(spec: Spec) -> None:
    prod = spec.domain("Domain_prod_id").current
    families = {c.code for c in prod.codes.values() if c.parent is None}
    assert families and not families & prod.field_codes()
    assert all(len(c) == 4 for c in prod.field_codes())


# -- broken specs ---------------------------------------------------------------------------
@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A private copy of interface_specs/ a test may break."""
    dest = tmp_path / "interface_specs"
    shutil.copytree(default_spec_dir(), dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


def _edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text("utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")


def _field(data: dict, field_id: str) -> dict:
    return next(f for f in data["fields"] if f["id"] == field_id)


UNIT = "units/32001_VIP_SUMMARY.yaml"
BROKEN: list[tuple[str, str, Callable[[dict], None] | None, str, str | None]] = [
    # name, file, change (None: replace the text), file the error names, key it names
    ("unknown field key", UNIT, lambda d: _field(d, "CUST_CNT").update(lenght=10), UNIT, "fields[3].lenght"),
    ("bad field type", UNIT, lambda d: _field(d, "CUST_CNT").update(type="number"), UNIT, "fields[3].type"),
    ("unknown domain", UNIT, lambda d: _field(d, "LATN_ID").update(domain="Domain_nowhere"), UNIT, "fields[2].domain"),
    ("duplicate field", UNIT, lambda d: d["fields"].append(dict(d["fields"][0])), UNIT, None),
    ("key names no field", UNIT, lambda d: d.update(primary_key=["CYCLE_ID", "NOPE"]), UNIT, "primary_key"),
    ("rule on unknown field", UNIT, lambda d: d["rules"][0].update({"assert": "NOPE > 1"}), UNIT, "rules[0]"),
    ("rule outside the expression language", UNIT,
     lambda d: d["rules"][0].update({"assert": "__import__('os').system('true')"}), UNIT, "rules[0]"),
    ("duplicate rule id", UNIT, lambda d: d["rules"].append(dict(d["rules"][0])), UNIT, None),
    ("missing message", UNIT, lambda d: d["rules"][0].pop("message_en"), UNIT, "rules[0].message_en"),
    ("code list without codes", "code_lists/Domain_level_id.yaml", lambda d: d["versions"][0].update(codes=[]),
     "code_lists/Domain_level_id.yaml", "versions[0].codes"),
    ("code list max_length wrong", "code_lists/Domain_level_id.yaml", lambda d: d.update(max_length=2),
     "code_lists/Domain_level_id.yaml", "max_length"),
    ("delta removes an unknown code", "code_lists/Domain_area_id.yaml",
     lambda d: d["versions"][-1].update(remove=["0999x"]), "code_lists/Domain_area_id.yaml", "remove"),
    ("versions out of order", "code_lists/Domain_bank_id.yaml",
     lambda d: d["versions"][1].update(effective_from=dt.date(2001, 1, 1)), "code_lists/Domain_bank_id.yaml", "versions"),
    ("parent not in list", "code_lists/Domain_prod_id.yaml",
     lambda d: d["versions"][0]["codes"][1].update(parent="77"), "code_lists/Domain_prod_id.yaml", "codes"),
    ("unknown cross-rule check", "rules/cross_unit.yaml", lambda d: d["rules"][0].update(check="sum_roughly"),
     "rules/cross_unit.yaml", None),
    ("bad spec version", "spec.yaml", lambda d: d.update(spec_version="1.0"), "spec.yaml", "spec_version"),
    ("error code without tier", "errors.yaml", lambda d: d["codes"][0].pop("tier"), "errors.yaml", None),
]


@pytest.mark.parametrize("name,file,change,names_file,names_key", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_spec_fails_with_file_and_key(copy: Path, name: str, file: str, change: Callable[[dict], None],
                                             names_file: str, names_key: str | None) -> None:
    _edit_yaml(copy / file, change)
    with pytest.raises(SpecError) as info:
        SpecLoader(copy).load()
    err = info.value
    assert err.file and err.file.replace("\\", "/").endswith(names_file), str(err)
    if names_key is not None:
        assert err.key and names_key in err.key, str(err)
    assert names_file in str(err)


def test_missing_domain_is_named(copy: Path) -> None:
    (copy / "code_lists" / "Domain_aff_mode.yaml").unlink()
    with pytest.raises(SpecError, match=r"missing: numbers \[49\]"):
        SpecLoader(copy).load()


def test_yaml_syntax_error_names_the_line(copy: Path) -> None:
    path = copy / UNIT
    path.write_text(path.read_text("utf-8") + "\n  - {id: [unclosed\n", "utf-8")
    with pytest.raises(SpecError, match=r"32001_VIP_SUMMARY\.yaml.*not valid YAML: line \d+"):
        SpecLoader(copy).load()


def test_missing_unit_file(copy: Path) -> None:
    (copy / "units" / "32003_VIP_INCOME_SUM.yaml").unlink()
    with pytest.raises(SpecError, match="32003"):
        SpecLoader(copy).load()


def test_spec_dir_override(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAM_SPEC_DIR", str(copy))
    assert default_spec_dir() == copy
    (copy / "spec.yaml").write_text((copy / "spec.yaml").read_text("utf-8").replace('"1.0.2"', '"1.0.9"'), "utf-8")
    assert load_spec().version == "1.0.9"
