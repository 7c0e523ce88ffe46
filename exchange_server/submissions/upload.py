"""Streaming an HTTP multipart upload straight into the archive.

The body is read in chunks (``settings.upload_chunk``, 1 MiB) into one reused buffer and
cut into parts by a small multipart/form-data parser: in a part's data it only looks for
the next ``CRLF--boundary`` with ``bytearray.find`` (C speed) and hands everything before
it, as a view of the buffer (no copy), to the archive staging file, which hashes and
writes it. Only the last few bytes that could begin a delimiter are carried over to the
next chunk, so a 1 GB delivery costs the same memory as a 1 kB one. A client that
disconnects part-way leaves nothing behind: staging files are discarded and no delivery
is recorded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO, Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header

from ..config import Settings
from ..errors import BadRequest, PayloadTooLarge
from ..storage import Archive, StagedObject

CHECK_FILE_LIMIT = 16 * 1024 * 1024
# One part's header block (Content-Disposition, Content-Type, ...) is a few hundred bytes;
# anything near this is not a well-meaning client.
HEADER_LIMIT = 16 * 1024
# Whitespace a sender may put between a boundary and its line break (RFC 2046 "transport
# padding"); more than this is not padding.
_PADDING_LIMIT = 64
# A received name is only ever a label (bytes are stored by digest), but it is echoed in
# receipts and used for the validation's scratch files, so anything path-like is refused.
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
# RFC 2046: 1 to 70 characters from a restricted set (we accept any printable ASCII).
_BOUNDARY = re.compile(r"^[\x21-\x7e ]{0,69}[\x21-\x7e]$")

_DATA, _DELIMITER, _HEADERS, _DONE = range(4)


@dataclass(frozen=True)
class ReceivedFile:
    """A file that is in the archive: its name as sent, digest and size."""

    name: str
    sha256: str
    size: int


def check_file_name(name: str) -> str:
    """The name a client gave a file, if it is safe to use; BadRequest otherwise."""
    if not name or len(name) > 255 or _UNSAFE_NAME.search(name) or name.startswith(".") or name in (".", ".."):
        raise BadRequest(f"file name {name!r} is not allowed: no paths, no control characters, not hidden, "
                         "at most 255 characters", f"文件名 {name!r} 不允许：不能含路径或控制字符、不能以点开头、最长255个字符",
                         code="bad_file_name", errors={"file": name})
    return name


def file_limit(name: str, settings: Settings) -> int:
    """The size cap of one received file (check files are small by nature)."""
    return CHECK_FILE_LIMIT if name.endswith(".chk") else settings.max_file_size


def _malformed(why: str, why_zh: str) -> BadRequest:
    return BadRequest(f"the multipart body is malformed: {why}", f"multipart内容格式错误：{why_zh}",
                      code="bad_multipart")


def _incomplete() -> BadRequest:
    return BadRequest("the upload ended before the multipart body was complete", "上传在multipart内容结束前中断",
                      code="upload_incomplete")


def _too_large(settings: Settings, size: int | None = None) -> PayloadTooLarge:
    limit = settings.max_delivery_size
    if size is not None:
        return PayloadTooLarge(f"the request is {size} bytes; at most {limit} are accepted",
                               f"请求大小 {size} 字节，超过上限 {limit} 字节", code="delivery_too_large",
                               errors={"limit": limit})
    return PayloadTooLarge(f"the request is over {limit} bytes", f"请求超过上限 {limit} 字节",
                           code="delivery_too_large", errors={"limit": limit})


def part_file_name(header_block: bytes) -> str | None:
    """The ``filename`` of a part's Content-Disposition (``filename*`` preferred); None for a plain field."""
    try:
        text = header_block.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("a part's headers are not UTF-8", "部分的头不是UTF-8编码") from None
    disposition = ""
    # Folded (obsolete) header lines are joined; every header but one is irrelevant here.
    for line in re.sub(r"\r\n[ \t]+", " ", text).split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep and line.strip():
            raise _malformed(f"a part has a header line without a colon: {line[:80]!r}",
                             f"部分的头行缺少冒号：{line[:80]!r}")
        if name.strip().lower() == "content-disposition":
            disposition = value.strip()
    # Werkzeug's parser handles quoting, escapes and RFC 2231/5987 ``filename*=UTF-8''...``
    # (it folds ``filename*`` into ``filename``).
    _kind, options = parse_options_header(disposition)
    return options.get("filename")


class MultipartReader:
    """A streaming multipart/form-data parser feeding file parts to archive staging files."""

    def __init__(self, stream: IO[bytes], boundary: bytes, archive: Archive, settings: Settings) -> None:
        self.stream = stream
        self.archive = archive
        self.settings = settings
        # A delimiter is CRLF "--" boundary; the body is read as if it began with a CRLF so
        # the first boundary (usually at offset 0, after any preamble) looks like the others.
        self.delimiter = b"\r\n--" + boundary
        self.chunk = max(int(settings.upload_chunk), 4096)
        self.buf = bytearray(self.chunk + HEADER_LIMIT + len(self.delimiter) + _PADDING_LIMIT + 8)
        self.view = memoryview(self.buf)
        self.buf[:2] = b"\r\n"
        self.pos = 0  # the first byte not yet parsed
        self.end = 2  # the end of the valid bytes in buf
        self.eof = False
        self.total = 0  # bytes read from the stream
        self._readinto: Any = getattr(stream, "readinto", None)
        self.received: list[ReceivedFile] = []
        self.sealed: list[StagedObject] = []  # complete parts, archived only once the whole body is in
        self.current: StagedObject | None = None
        self.current_name = ""

    # -- input ---------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Move the unparsed tail to the front of the buffer and read up to one chunk after it."""
        pos, end = self.pos, self.end
        if pos:
            # At most a header block or a delimiter's worth is left over: a cheap move.
            self.buf[:end - pos] = self.view[pos:end]
            self.end = end = end - pos
            self.pos = 0
        room = min(self.chunk, len(self.buf) - end)
        try:
            if self._readinto is not None:
                # Straight from the socket into our buffer: no intermediate bytes object.
                n = self._readinto(self.view[end:end + room]) or 0
            else:
                data = self.stream.read(room)
                n = len(data)
                self.buf[end:end + n] = data
        except (OSError, ValueError) as exc:
            # A timed-out or reset socket, or a broken chunked transfer coding (the server's
            # decoder says ValueError): either way the body cannot be read to its end.
            raise BadRequest(f"the request body could not be read to its end: {exc}",
                             f"请求内容未能完整读取：{exc}", code="upload_incomplete") from None
        if not n:
            self.eof = True
            return
        self.total += n
        if self.total > self.settings.max_delivery_size:
            raise _too_large(self.settings)
        self.end = end + n

    # -- parts ---------------------------------------------------------------------------------
    def _open_part(self, header_block: bytes) -> None:
        filename = part_file_name(header_block)
        if filename is None:
            self.current = None  # plain form fields carry nothing we need; their data is skipped
            return
        self.current_name = check_file_name(filename)
        if len(self.received) >= self.settings.max_files_per_delivery:
            raise PayloadTooLarge(f"at most {self.settings.max_files_per_delivery} files per delivery",
                                  f"每次报送最多 {self.settings.max_files_per_delivery} 个文件", code="too_many_files")
        self.current = self.archive.stage(file_limit(self.current_name, self.settings), self.current_name)

    def _close_part(self) -> None:
        current = self.current
        if current is not None:
            self.received.append(ReceivedFile(self.current_name, current.seal(), current.size))
            self.sealed.append(current)
            self.current = None

    def _write(self, start: int, stop: int) -> None:
        current = self.current
        if stop > start and current is not None:
            current.write(self.view[start:stop])  # the archive starts write-back every 16 MiB

    # -- the state machine -----------------------------------------------------------------------
    def run(self) -> None:
        """Parse the whole body; on return every file part is sealed in staging."""
        state = _DATA  # the preamble is parsed like a part's data, with no file to write to
        in_part = False  # whether the data being parsed belongs to a part (not the preamble)
        delimiter = self.delimiter
        dlen = len(delimiter)
        buf = self.buf
        while state != _DONE:
            if state == _DATA:
                i = buf.find(delimiter, self.pos, self.end)
                if i >= 0:
                    self._write(self.pos, i)
                    self.pos = i
                    state = _DELIMITER
                    continue
                # No delimiter here, but one may begin in the last dlen-1 bytes: keep those.
                safe = max(self.pos, self.end - dlen + 1)
                self._write(self.pos, safe)
                self.pos = safe
            elif state == _DELIMITER:
                # After CRLF--boundary comes "--" (the last one) or padding and CRLF (another
                # part); anything else means the bytes merely looked like a delimiter.
                after = self.pos + dlen
                tail = bytes(self.view[after:min(self.end, after + _PADDING_LIMIT + 2)])
                stripped = tail.lstrip(b" \t")
                if tail[:2] == b"--" or stripped[:2] == b"\r\n":
                    if in_part:
                        self._close_part()
                    if tail[:2] == b"--":
                        self.pos = after + 2
                        state = _DONE
                    else:
                        self.pos = after + len(tail) - len(stripped) + 2
                        state = _HEADERS
                        in_part = True
                    continue
                if tail != b"-" and stripped not in (b"", b"\r") or len(tail) >= _PADDING_LIMIT + 2:
                    # Not a delimiter after all: its first byte is ordinary data.
                    self._write(self.pos, self.pos + 1)
                    self.pos += 1
                    state = _DATA
                    continue
            else:  # _HEADERS
                if buf.startswith(b"\r\n", self.pos, self.end):
                    self._open_part(b"")
                    self.pos += 2
                    state = _DATA
                    continue
                i = buf.find(b"\r\n\r\n", self.pos, self.end)
                if i - self.pos > HEADER_LIMIT or (i < 0 and self.end - self.pos > HEADER_LIMIT):
                    raise _malformed(f"a part's header block is over {HEADER_LIMIT} bytes",
                                     f"部分的头超过 {HEADER_LIMIT} 字节")
                if i >= 0:
                    self._open_part(bytes(self.view[self.pos:i]))
                    self.pos = i + 4
                    state = _DATA
                    continue
            # Everything decidable in the buffer is parsed: more input is needed.
            if self.eof:
                raise _incomplete()
            self._fill()
        # The epilogue (normally just CRLF) is read and dropped, so the request is consumed.
        while not self.eof:
            self.pos = self.end
            self._fill()

    def discard(self) -> None:
        """Drop every staging file of this body (it will not be archived)."""
        for staged in [*self.sealed, *([self.current] if self.current is not None else [])]:
            staged.discard()
        self.current = None


def receive_multipart(stream: IO[bytes], content_type: str | None, content_length: int | None,
                      archive: Archive, settings: Settings) -> list[ReceivedFile]:
    """Archive every file part of a multipart/form-data body; returns them in the order sent."""
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise BadRequest("send the delivery as multipart/form-data (the check file and its data files as file parts)",
                         "请以 multipart/form-data 上传（校验文件及其数据文件作为文件部分）", code="not_multipart")
    if not _BOUNDARY.match(boundary):
        raise _malformed("the boundary must be 1 to 70 printable ASCII characters",
                         "boundary 须为1至70个可打印ASCII字符")
    if content_length is not None and content_length > settings.max_delivery_size:
        raise _too_large(settings, content_length)
    reader = MultipartReader(stream, boundary.encode("ascii"), archive, settings)
    done = False
    try:
        reader.run()
        done = True
    except ClientDisconnected:
        raise BadRequest("the client disconnected before the upload was complete", "客户端在上传完成前断开",
                         code="upload_incomplete") from None
    finally:
        if not done:
            reader.discard()
    if not reader.received:
        raise BadRequest("the request carries no files", "请求中没有文件", code="no_files")
    try:
        for staged in reader.sealed:
            staged.commit()
    except BaseException:
        reader.discard()  # what was not archived yet goes (a full disk: nothing of it stays)
        raise
    return reader.received
