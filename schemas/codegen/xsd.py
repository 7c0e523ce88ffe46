"""One XSD per interface unit, generated from the spec (checked in under schemas/xsd/).

Every value type is a named ``xs:simpleType`` so that the validation engine can relax all
of them to text for its streaming structure check (a bad value is then reported by the
field checks with its own code and line instead of stopping the stream), while the
published XSD keeps the full value constraints for anyone validating a file with their
own tools (``xmllint --schema``).
"""
from __future__ import annotations

from lxml import etree

from ..spec.model import Field, Spec, Unit

XS_NS = "http://www.w3.org/2001/XMLSchema"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XS = f"{{{XS_NS}}}"
ROOT_ATTRIBUTES = (("unit", "unit code / 接口单元编码"), ("party", "sender / 发送方"),
                   ("period", "cycle / 周期"), ("specVersion", "spec version / 规范版本"))


def xsd_pattern(regex: str) -> str:
    """A spec regular expression as an XSD pattern (XSD patterns are anchored already)."""
    if regex.startswith("^"):
        regex = regex[1:]
    if regex.endswith("$") and not regex.endswith("\\$"):
        regex = regex[:-1]
    return regex


def field_codes(spec: Spec, f: Field) -> list[str]:
    """Every code the field may carry under any version of its list, in list order.

    The XSD cannot know the cycle, so it admits the union of all versions; which version
    applies to a cycle is checked by the validation engine (E307).
    """
    assert f.domain is not None
    seen: dict[str, None] = {}
    for ver in spec.domain(f.domain).versions:
        allowed = ver.field_codes(f.area_level)
        for code in ver.codes:
            if code in allowed:
                seen.setdefault(code, None)
    return list(seen)


def _doc(parent: etree._Element, zh: str, en: str) -> None:
    ann = etree.SubElement(parent, XS + "annotation")
    for lang, text in (("zh", zh), ("en", en)):
        if text:
            d = etree.SubElement(ann, XS + "documentation")
            d.set(f"{{{XML_NS}}}lang", lang)
            d.text = text


def _restriction(spec: Spec, st: etree._Element, f: Field) -> None:
    """The value constraints of ``f`` inside simpleType ``st``."""
    def facet(r: etree._Element, name: str, value: object) -> None:
        etree.SubElement(r, XS + name, value=str(value))

    if f.type == "integer":
        r = etree.SubElement(st, XS + "restriction", base="xs:integer")
        if f.length:
            facet(r, "totalDigits", f.length)
        if f.min is not None:
            facet(r, "minInclusive", f.min)
        if f.max is not None:
            facet(r, "maxInclusive", f.max)
        # Same lexical form as delimited text: optional minus and digits, no plus, no spaces.
        facet(r, "pattern", "-?[0-9]+")
    elif f.type == "decimal":
        r = etree.SubElement(st, XS + "restriction", base="xs:decimal")
        facet(r, "totalDigits", f.precision)
        facet(r, "fractionDigits", f.scale)
        facet(r, "pattern", r"-?[0-9]+(\.[0-9]+)?")
    elif f.type == "date":
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        facet(r, "pattern", "[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])")
    elif f.type == "datetime":
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        facet(r, "pattern", "[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]")
    elif f.type == "code":
        dom = spec.domain(f.domain or "")
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        if dom.kind == "pattern":
            facet(r, "pattern", xsd_pattern(dom.pattern or ""))
        else:
            for code in field_codes(spec, f):
                facet(r, "enumeration", code)
    else:
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        if f.length:
            facet(r, "maxLength", f.length)
        if f.pattern:
            facet(r, "pattern", xsd_pattern(f.pattern))
        if f.required:
            facet(r, "minLength", 1)


def unit_xsd(spec: Spec, unit: Unit) -> bytes:
    """The XSD of ``unit`` as UTF-8 bytes (deterministic: no dates, stable order)."""
    nsmap = {"xs": XS_NS, None: spec.namespace}
    schema = etree.Element(XS + "schema", nsmap=nsmap, targetNamespace=spec.namespace,
                           elementFormDefault="qualified", attributeFormDefault="unqualified",
                           version=spec.version)
    _doc(schema, f"{unit.code} {unit.name} {unit.name_zh}（{spec.title_zh} {spec.version}）",
         f"{unit.code} {unit.name} {unit.name_en} ({spec.title_en} {spec.version}). Generated from "
         f"interface_specs/ by `python -m schemas generate`; do not edit.")

    root = etree.SubElement(schema, XS + "element", name=unit.name)
    _doc(root, unit.name_zh, unit.name_en)
    ct = etree.SubElement(root, XS + "complexType")
    seq = etree.SubElement(ct, XS + "sequence")
    etree.SubElement(seq, XS + "element", name="ROW", type="ROW_type", minOccurs="0", maxOccurs="unbounded")
    for name, label in ROOT_ATTRIBUTES:
        a = etree.SubElement(ct, XS + "attribute", name=name, use="required")
        st = etree.SubElement(a, XS + "simpleType")
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        if name == "unit":
            etree.SubElement(r, XS + "enumeration", value=unit.code)
        elif name == "specVersion":
            major = spec.version.split(".")[0]
            etree.SubElement(r, XS + "pattern", value=rf"{major}\.[0-9]+\.[0-9]+")
        else:
            etree.SubElement(r, XS + "minLength", value="1")
        _ = label

    row = etree.SubElement(schema, XS + "complexType", name="ROW_type")
    rseq = etree.SubElement(row, XS + "sequence")
    for f in unit.fields:
        el = etree.SubElement(rseq, XS + "element", name=f.id, type=f"{f.id}_type")
        if not f.required:
            el.set("minOccurs", "0")
        _doc(el, f.name_zh, f.name_en)

    for f in unit.fields:
        if f.required:
            st = etree.SubElement(schema, XS + "simpleType", name=f"{f.id}_type")
            _restriction(spec, st, f)
        else:
            # "An empty element is an empty value" (CONVENTIONS.md §6): optional fields
            # take their value type or the empty string.
            st = etree.SubElement(schema, XS + "simpleType", name=f"{f.id}_type")
            etree.SubElement(st, XS + "union", memberTypes=f"{f.id}_value empty_type")
            vt = etree.SubElement(schema, XS + "simpleType", name=f"{f.id}_value")
            _restriction(spec, vt, f)
    if any(not f.required for f in unit.fields):
        st = etree.SubElement(schema, XS + "simpleType", name="empty_type")
        r = etree.SubElement(st, XS + "restriction", base="xs:string")
        etree.SubElement(r, XS + "length", value="0")
    return etree.tostring(schema, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def xsd_file_name(unit: Unit) -> str:
    """``32001_VIP_SUMMARY.xsd``."""
    return f"{unit.code}_{unit.name}.xsd"
