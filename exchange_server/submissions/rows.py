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
            for line in text_lines(path, check.encoding):
                yield dict(zip(unit.field_ids, line.rstrip("\r").split(check.delimiter)))
        else:
            ns = "{" + spec.namespace + "}"
            # Accepted files were validated, but a stored file is parsed as carefully as a new one.
            parser = etree.iterparse(str(path), events=("end",), tag=ns + "ROW", resolve_entities=False,
                                     no_network=True, load_dtd=False)
            for _, el in parser:
                row = {fid: "" for fid in unit.field_ids}
                row.update({child.tag[len(ns):]: (child.text or "") for child in el})
                yield row
                el.clear()
