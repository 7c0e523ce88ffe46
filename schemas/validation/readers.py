"""Streaming readers for the two data formats, and the byte-level scan of tier 1.

Both readers yield ``(values, line, row number)`` with values as text in the unit's column
order, so the compiled row checks are the same for delimited text and XML.
"""
from __future__ import annotations

import codecs
import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lxml import etree

CHUNK = 1 << 20
MAX_XML_DEPTH = 8


@dataclass
class ByteScan:
    """What one pass over a file's bytes tells: digest, lines, endings, encoding."""

    size: int = 0
    sha256: str = ""
    lines: int = 0
    crlf: int = 0
    bare_cr_line: int | None = None
    mixed_line: int | None = None
    newline: str | None = None
    truncated: bool = False
    encoding_error_line: int | None = None
    encoding_error: str | None = None
    # (byte offset of a chunk, lines before it): lets a big file be split at line starts
    checkpoints: list[tuple[int, int]] = field(default_factory=list)
    # XML: (line, construct) of the first DOCTYPE or other markup declaration, wherever it is
    declaration: tuple[int, str] | None = None


def scan_bytes(path: Path, encoding: str | None, decode: bool = True) -> ByteScan:
    """Hash the file and, for text, count lines, check endings and (unless ``decode`` is False) decode it once.

    ``encoding`` None means XML (the parser decodes it): the digest is taken then, and the
    bytes are searched for a DOCTYPE or other markup declaration (refused, E205). The
    digest is taken on a second thread (hashlib releases the GIL on big buffers), chunk
    after chunk in order, while this one counts and decodes.
    """
    scan = ByteScan()
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(text_codec(encoding))("strict") if encoding and decode else None
    declarations = DeclarationScanner() if encoding is None else None
    last = b""
    hashing: Future[None] | None = None
    with path.open("rb") as fh, ThreadPoolExecutor(max_workers=1) as hasher:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            if hashing is not None:
                hashing.result()  # one chunk in flight: memory stays at two chunks
            hashing = hasher.submit(h.update, chunk)
            if encoding is not None:
                scan.checkpoints.append((scan.size, scan.lines))
            scan.size += len(chunk)
            if declarations is not None:
                declarations.feed(chunk)
                continue
            # A CRLF split across two chunks still counts as one CRLF.
            joined_crlf = 1 if last == b"\r" and chunk[:1] == b"\n" else 0
            lf = chunk.count(b"\n")
            cr = chunk.count(b"\r") if b"\r" in chunk else 0  # memchr first: most files have no CR
            crlf = (chunk.count(b"\r\n") if cr else 0) + joined_crlf
            before = scan.lines
            scan.lines += lf
            scan.crlf += crlf
            bare = cr - crlf + joined_crlf - (1 if chunk.endswith(b"\r") else 0)
            if bare > 0 and scan.bare_cr_line is None:
                scan.bare_cr_line = before + _first_bare_cr_line(chunk)
            if decoder is not None and scan.encoding_error_line is None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    scan.encoding_error_line = before + chunk.count(b"\n", 0, exc.start) + 1
                    bad = chunk[exc.start:exc.start + 4]
                    scan.encoding_error = f"bytes {bad.hex(' ')} at byte {scan.size - len(chunk) + exc.start}"
                    decoder = None
            last = chunk[-1:]
        if hashing is not None:
            hashing.result()
    scan.sha256 = h.hexdigest()
    if declarations is not None:
        declarations.feed(b"", final=True)
        scan.declaration = declarations.found
    if encoding is not None:
        if last == b"\r":
            scan.bare_cr_line = scan.bare_cr_line or scan.lines + 1
        if scan.size and last != b"\n":
            scan.truncated = True
        if decoder is not None and scan.encoding_error_line is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                scan.encoding_error_line = scan.lines + 1
                scan.encoding_error = "incomplete multi-byte character at the end of the file"
        if scan.crlf and scan.crlf != scan.lines:
            scan.mixed_line = _first_mixed_line(path, crlf_first=_first_ending_is_crlf(path))
        scan.newline = "CRLF" if scan.crlf and scan.crlf == scan.lines else "LF"
    return scan


def text_codec(encoding: str) -> str:
    """The Python codec for a declared encoding (a UTF-8 BOM is tolerated)."""
    return "utf-8-sig" if encoding.upper() == "UTF-8" else "gb18030"


def _first_bare_cr_line(chunk: bytes) -> int:
    i = 0
    while True:
        i = chunk.find(b"\r", i)
        if i < 0 or i + 1 >= len(chunk):
            return chunk.count(b"\n") + 1
        if chunk[i + 1:i + 2] != b"\n":
            return chunk.count(b"\n", 0, i) + 1
        i += 1


def _first_ending_is_crlf(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(CHUNK)
    i = head.find(b"\n")
    return i > 0 and head[i - 1:i] == b"\r"


def _first_mixed_line(path: Path, crlf_first: bool) -> int:
    """The first line whose ending differs from the first line's (slow path, errors only).

    Read in chunks, never a line at a time: one line may be as long as the file.
    """
    lines = 0
    prev = b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return 1
            i = chunk.find(b"\n")
            while i >= 0:
                lines += 1
                is_crlf = (chunk[i - 1:i] if i else prev) == b"\r"
                if is_crlf != crlf_first:
                    return lines
                i = chunk.find(b"\n", i + 1)
            prev = chunk[-1:]


# The longest line text_lines yields, in characters: no unit's record comes near it (the
# widest is a few thousand), and a longer one is wrong whatever follows (E305 or E201).
MAX_LINE = 1 << 20


def text_lines(path: Path, encoding: str, start: int = 0, end: int | None = None,
               block: int = 8 << 20) -> Iterator[str]:
    """Lines (without LF) of the byte range [start, end) of a text file, decoded in big blocks.

    ``start`` and ``end`` must be line starts. Splitting on LF only (never ``splitlines``)
    keeps control characters such as the US delimiter inside their line. A line longer than
    MAX_LINE characters is cut there, so that memory stays flat even for a file that is one
    huge line (its columns past the cut are not seen).
    """
    codec = text_codec(encoding) if start == 0 else ("gb18030" if encoding.upper() == "GB18030" else "utf-8")
    decoder = codecs.getincrementaldecoder(codec)("strict")
    with path.open("rb") as fh:
        fh.seek(start)
        remaining = (end if end is not None else path.stat().st_size) - start
        carry = ""
        skipping = False  # inside the rest of a line already cut at MAX_LINE
        while remaining > 0:
            data = fh.read(min(block, remaining))
            if not data:
                break
            remaining -= len(data)
            text = decoder.decode(data, final=remaining <= 0)
            if skipping:
                i = text.find("\n")
                if i < 0:
                    continue
                text, skipping = text[i + 1:], False
            parts = (carry + text).split("\n")
            carry = parts.pop()
            if parts and max(map(len, parts)) > MAX_LINE:
                parts = [p[:MAX_LINE] for p in parts]
            yield from parts
            if len(carry) > MAX_LINE:
                yield carry[:MAX_LINE]
                carry, skipping = "", True
        if carry:
            yield carry


def line_start_at_or_after(path: Path, offset: int, checkpoints: list[tuple[int, int]]) -> tuple[int, int]:
    """(byte offset, line number before it) of the first line starting at or after ``offset``."""
    base_off, base_lines = 0, 0
    for off, lines in checkpoints:
        if off > offset:
            break
        base_off, base_lines = off, lines
    with path.open("rb") as fh:
        fh.seek(base_off)
        head = fh.read(offset - base_off)
        # The rest of the line ``offset`` falls in, read in chunks (a line may be very long).
        rest = 0
        while True:
            chunk = fh.read(CHUNK)
            i = chunk.find(b"\n")
            if i >= 0:
                rest += i + 1
                break
            rest += len(chunk)
            if len(chunk) < CHUNK:
                break
    return offset + rest, base_lines + head.count(b"\n") + 1 if rest else base_lines + head.count(b"\n")


class XmlProblem(Exception):
    """The XML stream cannot be read further; ``code`` says which tier-2 error it is."""

    def __init__(self, code: str, line: int, message: str) -> None:
        message = " ".join(message.split())  # libxml2 puts line breaks in some messages ("...!\nBytes: 0xFF")
        super().__init__(message)
        self.code = code
        self.line = line
        self.message = message


class DeclarationScanner:
    """Finds a DOCTYPE (or any other markup declaration: ENTITY, ELEMENT, ...) in XML bytes fed in chunks.

    The standard refuses them wherever they stand (CONVENTIONS.md §6, E205): in the prolog,
    however much comment or white space comes first, and after the root has started (where
    they are not well-formed either). Comments, processing instructions and CDATA sections
    are skipped, so a declaration only mentioned in them is not one. Only ASCII bytes are
    looked at, which stand for themselves in UTF-8 and GB18030 alike (GB18030's trail bytes
    are never ``<``, ``!``, ``?``, ``-``, ``]`` or ``>``). Memory: one chunk and a few bytes.
    """

    _OUTSIDE, _COMMENT, _PI, _CDATA = range(4)
    _ENDS = {_COMMENT: b"-->", _PI: b"?>", _CDATA: b"]]>"}

    def __init__(self) -> None:
        self.state = self._OUTSIDE
        self.carry = b""
        self.line = 1  # the line the carried bytes start on
        self.found: tuple[int, str] | None = None

    def feed(self, chunk: bytes, final: bool = False) -> None:
        """Scan the next bytes of the file; ``final`` with the last of them (or b"" at the end)."""
        if self.found is not None:
            return
        buf = self.carry + chunk if self.carry else chunk
        keep = self._scan(buf, final)
        if self.found is None:
            self.line += buf.count(b"\n", 0, keep)
            self.carry = buf[keep:]

    def _scan(self, buf: bytes, final: bool) -> int:
        """Scan ``buf``; return where the bytes to carry into the next chunk start."""
        n = len(buf)
        pos = 0
        bang = pi = -2  # the next "<!" and "<?" at or after pos; -1: none in buf
        while True:
            if self.state != self._OUTSIDE:
                end = self._ENDS[self.state]
                i = buf.find(end, pos)
                if i < 0:
                    return max(pos, n - len(end) + 1)
                pos = i + len(end)
                self.state = self._OUTSIDE
                continue
            if bang != -1 and bang < pos:
                bang = _find_markup(buf, b"!", pos)
            if pi != -1 and pi < pos:
                pi = _find_markup(buf, b"?", pos)
            if bang < 0 and pi < 0:
                return n - 1 if buf.endswith(b"<") and not final else n
            if pi >= 0 and (bang < 0 or pi < bang):
                self.state, pos = self._PI, pi + 2
                continue
            k = bang
            if n - k < 16 and not final:
                return k  # what "<!" begins is decided with the next chunk (names up to 12 letters)
            if buf[k + 2:k + 3].isalpha():  # <!DOCTYPE, <!ENTITY, <!ELEMENT, ...
                name = re.match(rb"<!([A-Za-z]{0,12})", buf[k:k + 16])
                construct = "<!" + (name.group(1).decode("ascii") if name else "")
                self.found = (self.line + buf.count(b"\n", 0, k), construct)
                return n
            if buf.startswith(b"<!--", k):
                self.state, pos = self._COMMENT, k + 4
            elif buf.startswith(b"<![CDATA[", k):
                self.state, pos = self._CDATA, k + 9
            else:
                pos = k + 2  # not well-formed, and no declaration: libxml2 reports it (E202)


def _find_markup(buf: bytes, mark: bytes, pos: int) -> int:
    """Where the next ``<`` followed by ``mark`` starts at or after ``pos``; -1 if none.

    Searches for ``mark`` (``!`` or ``?``, rare in XML) and looks behind it: searching for
    the two bytes stops at every ``<`` of every tag, about eight times slower.
    """
    j = buf.find(mark, pos + 1)
    while j >= 0 and buf[j - 1] != 0x3C:
        j = buf.find(mark, j + 1)
    return j - 1 if j >= 0 else -1


def find_declaration(path: Path) -> tuple[int, str] | None:
    """(line, construct) of the first DOCTYPE or markup declaration anywhere in an XML file (never resolved)."""
    scanner = DeclarationScanner()
    with path.open("rb") as fh:
        while scanner.found is None:
            chunk = fh.read(CHUNK)
            scanner.feed(chunk, final=not chunk)
            if not chunk:
                break
    return scanner.found


XML_ENCODINGS = ("UTF-8", "GB18030")
_DECLARED = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def xml_root_attributes(path: Path) -> dict[str, Any] | None:
    """The root element's attributes (and its line as ``@line``), reading no further; None when unreadable.

    Nothing is resolved or fetched; a file that is not well-formed up to its root is left
    to the streaming read, which reports it with its line.
    """
    try:
        for _event, elem in etree.iterparse(str(path), events=("start",), resolve_entities=False, load_dtd=False,
                                            no_network=True, huge_tree=False):
            found: dict[str, Any] = {str(k): str(v) for k, v in elem.attrib.items()}
            found["@line"] = elem.sourceline or 1
            return found
    except etree.XMLSyntaxError:
        return None
    return None


def xml_encoding_problem(path: Path) -> str | None:
    """What is wrong with an XML file's encoding (UTF-16 and the like), or None for UTF-8 / GB18030.

    A byte-order mark of UTF-16 or UTF-32, or a declaration of another encoding, is refused
    before parsing: libxml2 would read such a file happily, but the standard has two encodings.
    """
    with path.open("rb") as fh:
        head = fh.read(256)
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32LE BOM"), (b"\x00\x00\xfe\xff", "UTF-32BE BOM"),
                      (b"\xff\xfe", "UTF-16LE BOM"), (b"\xfe\xff", "UTF-16BE BOM")):
        if head.startswith(bom):
            return name
    if head[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        return "UTF-16 (no BOM)"
    m = _DECLARED.match(head.removeprefix(b"\xef\xbb\xbf"))
    if m is not None and m.group(1).decode("ascii").upper() not in XML_ENCODINGS:
        return f'encoding="{m.group(1).decode("ascii")}"'
    return None


def locate_xml_error(path: Path, schema: etree.XMLSchema | None, row_tag: str, msg: str) -> tuple[int, str]:
    """The line where ``path`` stops being well-formed or valid, and the message there.

    Streams the file again without the schema (syntax errors then carry their line) and
    checks each ``ROW`` on its own against the schema, whose global ``ROW`` declaration
    the engine adds for this. Used only after a failure; memory stays flat.
    """
    context = etree.iterparse(str(path), events=("end",), resolve_entities=False, load_dtd=False,
                              no_network=True, huge_tree=False)
    try:
        for _, el in context:
            if el.tag == row_tag and schema is not None and not schema.validate(el):
                err = schema.error_log.last_error
                return (err.line if err is not None and err.line else el.sourceline or 0), \
                    (err.message if err is not None else msg)
            if el.tag == row_tag:
                el.clear()
                parent = el.getparent()
                while parent is not None and el.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        return exc.lineno or 0, str(getattr(exc, "msg", exc)) or msg
    return 0, msg


class CountedRows:
    """Wraps a row iterator and counts what went through it."""

    def __init__(self, rows: Iterator[tuple[list[str], int, int]]) -> None:
        self.rows = rows
        self.n = 0

    def __iter__(self) -> Iterator[tuple[list[str], int, int]]:
        for item in self.rows:
            self.n += 1
            yield item


def xml_rows(path: Path | XmlPart, unit_name: str, field_ids: tuple[str, ...], namespace: str,
             schema: etree.XMLSchema | None) -> Iterator[tuple[list[str], int, int]]:
    """Rows of an XML file (or of one part of it), checked against ``schema`` while streaming.

    Raises XmlProblem (E202 not well-formed, E203 XSD, E204 root/namespace, E205 forbidden
    construct) at the point where the stream stops being trustworthy. For a part, any
    problem is E202 as libxml2 put it: the caller reads the whole file again to report it.
    """
    ns = "{" + namespace + "}"
    row_tag = ns + "ROW"
    index = {ns + f: i for i, f in enumerate(field_ids)}
    n = len(field_ids)
    # Only ROW end events reach Python: field elements, nesting and the root are left to
    # libxml2 and the schema (a field element has a simple type, so anything nested in it,
    # or any stray element, fails the schema). On a failure, a diagnostic pass tells a wrong
    # root (E204) or too-deep nesting (E205) from other errors and finds the line.
    context = etree.iterparse(
        path.stream() if isinstance(path, XmlPart) else str(path), events=("end",), tag=row_tag, schema=schema,
        resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False, remove_comments=True, remove_pis=True,
        dtd_validation=False)
    rowno = 0
    root_checked = False
    try:
        for _, elem in context:
            if not root_checked:
                root_checked = True
                root = elem.getparent()
                if root is None or root.tag != ns + unit_name or root.getparent() is not None:
                    raise XmlProblem("E204", (root if root is not None else elem).sourceline or 1,
                                     str(root.tag if root is not None else elem.tag))
            rowno += 1
            vals = [""] * n
            for child in elem:
                i = index.get(child.tag)
                if i is not None:
                    vals[i] = child.text or ""
            yield vals, elem.sourceline or 0, rowno
            elem.clear()
            parent = elem.getparent()
            if parent is not None:
                while elem.getprevious() is not None:
                    del parent[0]
        if not root_checked:
            # No rows: the root still has to be the unit's.
            root = context.root
            if root is not None and root.tag != ns + unit_name:
                raise XmlProblem("E204", root.sourceline or 1, str(root.tag))
    except etree.XMLSyntaxError as exc:
        msg = str(exc.msg if hasattr(exc, "msg") else exc)
        line = exc.lineno or 0
        lowered = msg.lower()
        if "encoding" in lowered or "utf-8" in lowered or "bytes" in lowered and "input" in lowered:
            raise XmlProblem("E110", line, msg) from None
        if "entity" in lowered or "doctype" in lowered:
            raise XmlProblem("E205", line, msg) from None
        if isinstance(path, XmlPart):
            raise XmlProblem("E202", line, msg) from None
        shape = _xml_shape_problem(path, ns + unit_name)
        if shape is not None:
            raise shape from None
        if not line:
            # With a schema attached, libxml2 reports neither syntax nor schema errors with
            # a line; find it by streaming the file again.
            line, msg = locate_xml_error(path, schema, row_tag, msg)
            lowered = msg.lower()
        if "depth" in lowered:
            raise XmlProblem("E205", line, msg) from None
        if schema is not None and ("element" in lowered or "attribute" in lowered) and \
                ("not expected" in lowered or "missing" in lowered or "is not" in lowered or "facet" in lowered):
            raise XmlProblem("E203", line, msg) from None
        raise XmlProblem("E202", line, msg) from None


XINCLUDE = "{http://www.w3.org/2001/XInclude}"


def _xml_shape_problem(path: Path, root_tag: str) -> XmlProblem | None:
    """E204 for a wrong root or namespace, E205 for XInclude or nesting deeper than the format needs, else None."""
    depth = 0
    try:
        for event, elem in etree.iterparse(str(path), events=("start", "end"), resolve_entities=False,
                                           load_dtd=False, no_network=True, huge_tree=False):
            if event == "end":
                depth -= 1
                elem.clear()
                continue
            depth += 1
            if str(elem.tag).startswith(XINCLUDE):  # refused, never resolved (CONVENTIONS.md §6)
                return XmlProblem("E205", elem.sourceline or 0, f"XInclude element {elem.tag}")
            if depth == 1 and elem.tag != root_tag:
                return XmlProblem("E204", elem.sourceline or 1, str(elem.tag))
            if depth > MAX_XML_DEPTH:
                return XmlProblem("E205", elem.sourceline or 0, f"element nesting deeper than {MAX_XML_DEPTH}")
    except etree.XMLSyntaxError:
        return None
    return None


# -- one XML file as parts read on several cores ---------------------------------------------
_ROOT_START = re.compile(
    rb"""\A(?:\xef\xbb\xbf)?(?:<\?xml[^<>]*\?>)?[ \t\r\n]*<([A-Za-z_][A-Za-z0-9_.-]*)"""
    rb"""((?:[ \t\r\n]+[A-Za-z_][A-Za-z0-9_.:-]*[ \t\r\n]*=[ \t\r\n]*(?:"[^"<]*"|'[^'<]*'))*)[ \t\r\n]*>""")
_ROW_START = re.compile(rb"<ROW[ \t\r\n>]")


@dataclass
class XmlPart:
    """Bytes ``start``..``end`` of an XML file, read as a document of its own.

    ``head`` (all but the first part) is the file's prolog and root start tag followed by
    line ends up to the line ``start`` is on, so libxml2 numbers every line as in the whole
    file; ``tail`` (all but the last) closes the root.
    """

    path: Path
    start: int
    end: int
    head: bytes = b""
    tail: bytes = b""

    def stream(self) -> "_PartStream":
        """The part's document as a file-like object (nothing is copied to disk)."""
        return _PartStream(self)


class _PartStream:
    def __init__(self, part: XmlPart) -> None:
        self.head, self.head_at = part.head, 0
        self.fh = part.path.open("rb")
        self.fh.seek(part.start)
        self.left = part.end - part.start
        self.tail = part.tail

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes: the head, then the range, then the tail."""
        n = CHUNK if n is None or n < 0 else n
        if self.head_at < len(self.head):
            self.head_at += n
            return self.head[self.head_at - n:self.head_at]
        if self.left > 0:
            out = self.fh.read(min(n, self.left))
            self.left = self.left - len(out) if out else 0
            if out:
                return out
        self.fh.close()
        out, self.tail = self.tail[:n], self.tail[n:]
        return out


def xml_parts(path: Path, parts: int, search: int = 4 * CHUNK) -> list[XmlPart] | None:
    """Cut an XML file into about ``parts`` documents at ``<ROW`` starts, or None when it cannot be cut safely.

    A cut is taken only where a ``<ROW`` tag starts, the root being an element without a
    namespace prefix whose start tag ends before the first cut. A cut anywhere else (inside
    a comment, a CDATA section, a value, a deeper element) leaves the part before it unclosed,
    so that part fails to parse; the caller then reads the file whole. Lines are counted on
    the way so every part keeps the file's line numbers.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        m = _ROOT_START.match(fh.read(64 * 1024))
        if m is None or parts < 2:
            return None
        root_end = m.end()
        head = m.group(0)
        close = b"</" + m.group(1) + b">"
        cuts: list[tuple[int, int]] = []  # (offset, line)
        pos, line = 0, 1
        fh.seek(0)
        for k in range(1, parts):
            target = max(size * k // parts, root_end, cuts[-1][0] + 1 if cuts else 0)
            while pos < target:  # count lines up to the target
                chunk = fh.read(min(CHUNK, target - pos))
                if not chunk:
                    return None
                line += chunk.count(b"\n")
                pos += len(chunk)
            window = fh.read(search)
            found = _ROW_START.search(window)
            if found is None:
                break
            offset = pos + found.start()
            line += window.count(b"\n", 0, found.start())
            cuts.append((offset, line))
            pos = offset
            fh.seek(pos)
    if not cuts:
        return None
    head_lines = head.count(b"\n")
    bounds = [(0, 1)] + cuts + [(size, 0)]
    out = []
    for i in range(len(bounds) - 1):
        (start, first_line), (end, _) = bounds[i], bounds[i + 1]
        out.append(XmlPart(path, start, end,
                           head=b"" if i == 0 else head + b"\n" * (first_line - 1 - head_lines),
                           tail=b"" if i == len(bounds) - 2 else close))
    return out
