"""Reading an accepted delivery's rows back from the archive, in either format, streamed."""
from __future__ import annotations

from typing import Iterator

from lxml import etree

from schemas import CheckFileError, Spec
from schemas.conventions import CheckFile
from schemas.validation.readers import text_lines

from ..storage import Archive
from .models import Delivery


def unit_rows(archive: Archive, spec: Spec, delivery: Delivery, unit_code: str) -> Iterator[dict[str, str]]:
    """The rows of one unit of a delivery as field id -> text (empty values as "")."""
    for _file, _line, row in located_rows(archive, spec, delivery, unit_code):
        yield row


def located_rows(archive: Archive, spec: Spec, delivery: Delivery,
                 unit_code: str) -> Iterator[tuple[str, int, dict[str, str]]]:
    """(file name, line, row) of one unit of a delivery: the line a finding about the row names.

    A line of delimited text is its line number; an XML row's is the line its ``ROW`` starts
    on (as the validator reports it).
    """
    unit = spec.unit(unit_code)
    check_file = next((f for f in delivery.files if f.name.endswith(".chk")), None)
    if check_file is None:
        return
    try:
        check = CheckFile.parse(archive.read_bytes(check_file.sha256))
    except CheckFileError:
        return
    files = sorted((f for f in delivery.files if f.unit == unit_code), key=lambda f: f.name)
    for f in files:
        path = archive.path(f.sha256)
        if f.name.endswith(".txt"):
            for n, text in enumerate(text_lines(path, check.encoding), start=1):
                yield f.name, n, dict(zip(unit.field_ids, text.rstrip("\r").split(check.delimiter)))
        else:
            for at, row in _xml_rows(str(path), spec.namespace, unit.field_ids):
                yield f.name, at, row


def _xml_rows(path: str, namespace: str, field_ids: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """The ``ROW`` elements of an XML data file as field id -> text, read as the validator reads them.

    Accepted files were validated, but a stored file is parsed as carefully as a new one:
    nothing resolved or fetched, comments and processing instructions (which a valid file
    may hold, even inside a ``ROW``) dropped, and each ``ROW`` freed once read, so memory
    does not grow with the file.
    """
    ns = "{" + namespace + "}"
    fields = {ns + fid: fid for fid in field_ids}
    parser = etree.iterparse(path, events=("end",), tag=ns + "ROW", resolve_entities=False, no_network=True,
                             load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    for _, el in parser:
        row = dict.fromkeys(field_ids, "")
        for child in el:
            fid = fields.get(child.tag) if isinstance(child.tag, str) else None
            if fid is not None:
                row[fid] = child.text or ""
        yield el.sourceline or 0, row
        el.clear()
        parent = el.getparent()
        if parent is not None:
            while el.getprevious() is not None:
                del parent[0]
