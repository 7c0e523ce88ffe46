"""Streaming an HTTP multipart upload straight into the archive.

The body is read in chunks and fed to Werkzeug's sans-IO multipart decoder; each file part
goes into an archive staging file while its SHA-256 and size are computed. Nothing is held
in memory beyond one chunk, so a 1 GB delivery costs the same memory as a 1 kB one. A
client that disconnects part-way leaves nothing behind: staging files are discarded and
no delivery is recorded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ..config import Settings
from ..errors import BadRequest, PayloadTooLarge
from ..storage import Archive, StagedObject

CHECK_FILE_LIMIT = 16 * 1024 * 1024
# A received name is only ever a label (bytes are stored by digest), but it is echoed in
# receipts and used for the validation's scratch files, so anything path-like is refused.
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


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


def receive_multipart(stream: IO[bytes], content_type: str | None, content_length: int | None,
                      archive: Archive, settings: Settings) -> list[ReceivedFile]:
    """Archive every file part of a multipart/form-data body; returns them in the order sent."""
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise BadRequest("send the delivery as multipart/form-data (the check file and its data files as file parts)",
                         "请以 multipart/form-data 上传（校验文件及其数据文件作为文件部分）", code="not_multipart")
    if content_length is not None and content_length > settings.max_delivery_size:
        raise PayloadTooLarge(f"the request is {content_length} bytes; at most {settings.max_delivery_size} are accepted",
                              f"请求大小 {content_length} 字节，超过上限 {settings.max_delivery_size} 字节",
                              code="delivery_too_large", errors={"limit": settings.max_delivery_size})
    # No max_form_memory_size: Werkzeug applies it to the whole buffer, file data included.
    # The buffer never holds more than one chunk here, since events are drained after each
    # chunk, and the data of plain form fields is dropped.
    decoder = MultipartDecoder(boundary.encode("latin-1"))
    received: list[ReceivedFile] = []
    sealed: list[StagedObject] = []  # complete parts, archived only once the whole body is in
    current: StagedObject | None = None
    current_name = ""
    total = 0
    done = False
    try:
        while not done:
            chunk = stream.read(settings.upload_chunk)
            total += len(chunk)
            if total > settings.max_delivery_size:
                raise PayloadTooLarge(f"the request is over {settings.max_delivery_size} bytes",
                                      f"请求超过上限 {settings.max_delivery_size} 字节", code="delivery_too_large",
                                      errors={"limit": settings.max_delivery_size})
            decoder.receive_data(chunk or None)
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    if not chunk:
                        raise BadRequest("the upload ended before the multipart body was complete",
                                         "上传在multipart内容结束前中断", code="upload_incomplete")
                    break
                if isinstance(event, File):
                    current_name = check_file_name(event.filename or "")
                    if len(received) >= settings.max_files_per_delivery:
                        raise PayloadTooLarge(f"at most {settings.max_files_per_delivery} files per delivery",
                                              f"每次报送最多 {settings.max_files_per_delivery} 个文件",
                                              code="too_many_files")
                    current = archive.stage(file_limit(current_name, settings), current_name)
                elif isinstance(event, Field):
                    current = None  # plain form fields carry nothing we need; their data is skipped
                elif isinstance(event, Data):
                    if current is not None:
                        current.write(event.data)
                        if not event.more_data:
                            received.append(ReceivedFile(current_name, current.seal(), current.size))
                            sealed.append(current)
                            current = None
                elif isinstance(event, Epilogue):
                    done = True
                    break
    except ClientDisconnected:
        raise BadRequest("the client disconnected before the upload was complete", "客户端在上传完成前断开",
                         code="upload_incomplete") from None
    except ValueError as exc:  # the decoder's word for a malformed or truncated body
        if decoder.complete:  # the body ended early: the decoder cannot go beyond where it stopped
            raise BadRequest("the upload ended before the multipart body was complete",
                             "上传在multipart内容结束前中断", code="upload_incomplete") from None
        raise BadRequest(f"the multipart body is malformed: {exc}", f"multipart内容格式错误：{exc}",
                         code="bad_multipart") from None
    finally:
        if not done:
            for staged in [*sealed, *([current] if current is not None else [])]:
                staged.discard()
    if not received:
        raise BadRequest("the request carries no files", "请求中没有文件", code="no_files")
    for staged in sealed:
        staged.commit()
    return received
