"""Generated artefacts: XSDs and JSON Schemas are in sync, and they accept exactly what the writer writes."""
from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from marshmallow import ValidationError

from schemas.codegen import unit_json_schema, unit_marshmallow_schema, unit_xsd, write_json_schemas, write_xsds
from schemas.spec.model import Spec
from schemas.writer import format_value
from tests.support.deliveries import DeliveryRows, data_file

REPO = Path(__file__).resolve().parents[2]
XSD_DIR = REPO / "schemas" / "xsd"


def test_checked_in_xsds_and_json_schemas_are_up_to_date(spec: Spec) -> None:
    assert write_xsds(spec, XSD_DIR, check=True) == [], "run: python -m schemas generate"
    assert write_json_schemas(spec, REPO / "schemas" / "jsonschema", check=True) == [], "run: python -m schemas generate"


def test_check_mode_reports_stale_and_extra_files(spec: Spec, tmp_path: Path) -> None:
    assert write_xsds(spec, tmp_path) == []
    (tmp_path / "32001_VIP_SUMMARY.xsd").write_bytes(b"<stale/>")
    (tmp_path / "99999_OLD.xsd").write_bytes(b"<old/>")
    stale = {p.name for p in write_xsds(spec, tmp_path, check=True)}
    assert stale == {"32001_VIP_SUMMARY.xsd", "99999_OLD.xsd"}


def test_generation_is_deterministic(spec: Spec) -> None:
    unit = spec.unit("31201")
    assert unit_xsd(spec, unit) == unit_xsd(spec, unit)


def _xsd(code: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(next(XSD_DIR.glob(f"{code}_*.xsd")))))


@pytest.mark.parametrize("encoding", ["UTF-8", "GB18030"])
def test_written_xml_validates_against_every_xsd(rows: DeliveryRows, tmp_path: Path, encoding: str) -> None:
    out = rows.write(tmp_path / "d", fmt="xml", encoding=encoding)
    for unit in rows.rows:
        code = rows.spec.unit(unit).code
        schema = _xsd(code)
        doc = etree.parse(str(data_file(out, code)))
        assert schema.validate(doc), (unit, schema.error_log.last_error)


def test_xmllint_accepts_the_written_xml(rows: DeliveryRows, tmp_path: Path) -> None:
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        pytest.skip("xmllint is not installed (scripts/test installs libxml2-utils)")
    out = rows.write(tmp_path / "d", fmt="xml")
    for unit in rows.rows:
        code = rows.spec.unit(unit).code
        xsd = next(XSD_DIR.glob(f"{code}_*.xsd"))
        done = subprocess.run([xmllint, "--noout", "--nonet", "--schema", str(xsd), str(data_file(out, code))],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


BAD_VALUES = [
    ("32002", "<PROD_ID>", "<PROD_ID>99", "PROD_ID"),                # code not in the list (becomes 99xxxx)
    ("31201", "<CUST_NAME>", "<CUST_NAME>" + "长" * 200, "CUST_NAME"),  # too long
    ("32001", "<INCOME_AMT>", "", "INCOME_AMT"),                      # three decimals (rewritten below)
    ("32001", "<CUST_CNT>", "<CUST_CNT>x", "CUST_CNT"),               # not an integer
    ("31201", "<JOIN_DATE>", "<JOIN_DATE>2026", "JOIN_DATE"),         # not a date
]


@pytest.mark.parametrize("code,find,replace,field", BAD_VALUES, ids=[b[3] for b in BAD_VALUES])
def test_bad_values_fail_the_xsd(rows: DeliveryRows, tmp_path: Path, code: str, find: str, replace: str,
                                 field: str) -> None:
    out = rows.write(tmp_path / "d", fmt="xml")
    path = data_file(out, code)
    text = path.read_text("utf-8")
    if field == "INCOME_AMT":
        # three decimals: money has exactly two
        start = text.index("<INCOME_AMT>") + len("<INCOME_AMT>")
        end = text.index("</INCOME_AMT>", start)
        text = text[:start] + "1.005" + text[end:]
    else:
        text = text.replace(find, replace, 1)
    path.write_text(text, "utf-8")
    schema = _xsd(code)
    assert not schema.validate(etree.parse(str(path)))
    assert field in str(schema.error_log.last_error)


def test_category_codes_are_not_accepted_in_records(spec: Spec) -> None:
    doc = etree.fromstring(unit_xsd(spec, spec.unit("32002")))
    xs = "{http://www.w3.org/2001/XMLSchema}"
    st = next(s for s in doc.iter(f"{xs}simpleType") if s.get("name") == "PROD_ID_type")
    codes = {e.get("value") for e in st.iter(f"{xs}enumeration")}
    assert "1001" in codes and "10" not in codes
    # codes of later list versions are in the XSD: the cycle decides, in the engine
    assert "4004" in codes


def _record(spec: Spec, unit: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row as the JSON record the HTTP API exchanges."""
    rec: dict[str, Any] = {}
    for f in spec.unit(unit).fields:
        v = format_value(f, row.get(f.id))
        rec[f.id] = (int(v) if f.type == "integer" else v) if v != "" else None
    return rec


def test_json_schema_accepts_records_and_refuses_bad_ones(rows: DeliveryRows) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for unit, unit_rows in rows.rows.items():
        schema = unit_json_schema(rows.spec, rows.spec.unit(unit))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for row in unit_rows:
            rec = _record(rows.spec, unit, row)
            assert not list(validator.iter_errors(rec)), (unit, rec)
    rec = _record(rows.spec, "VIP_SUMMARY", rows.rows["VIP_SUMMARY"][0])
    validator = jsonschema.Draft202012Validator(unit_json_schema(rows.spec, rows.spec.unit("VIP_SUMMARY")))
    for bad in ({"INCOME_AMT": 12.5}, {"INCOME_AMT": "1.005"}, {"LATN_ID": "42"}, {"EXTRA": "x"}, {"CUST_CNT": "10"}):
        assert list(validator.iter_errors({**rec, **bad})), bad
    assert json.dumps(unit_json_schema(rows.spec, rows.spec.unit("VIP_SUMMARY")), ensure_ascii=False)


def test_marshmallow_schema_loads_typed_values_and_names_bad_fields(rows: DeliveryRows) -> None:
    schema = unit_marshmallow_schema(rows.spec, rows.spec.unit("VIP_SUMMARY"))()
    rec = _record(rows.spec, "VIP_SUMMARY", rows.rows["VIP_SUMMARY"][0])
    loaded = schema.load(rec)
    assert isinstance(loaded["INCOME_AMT"], Decimal) and isinstance(loaded["CUST_CNT"], int)
    assert loaded["INCOME_AMT"] == Decimal(rec["INCOME_AMT"])
    with pytest.raises(ValidationError) as info:
        schema.load({**rec, "INCOME_AMT": 12.5, "LATN_ID": "0000", "SURPRISE": 1})
    assert set(info.value.messages) == {"INCOME_AMT", "LATN_ID", "SURPRISE"}
