"""Uploading a delivery on the province page (``/province/upload``): for provinces and networks without an agent.

The body is the API's: one multipart request with the check file and its data files, archived
as it streams in and recorded by the same :class:`~exchange_server.submissions.http_delivery.HttpReceiver`
(same caps, same receipt, same queue, same verdict), credited to the signed-in account. Before a
delivery is recorded the page's :class:`~.province_services.UploadChecks` refuses, with a
message, what the validator could only reject (no check file, another province's party, a closed
cycle). The browser then lands on the delivery's page, which says "validating" until it is judged.

The page works without JavaScript; ``upload.js`` (served as a static file, allowed by this
page's own CSP) only adds a progress bar. The CSRF token is the body's first part: the
blueprint's check would read ``request.form`` and so spool the whole upload before the view.
"""
from __future__ import annotations

import io
from typing import IO, Any, cast

from flask import make_response, redirect, render_template, request, url_for
from werkzeug.http import parse_options_header
from werkzeug.wrappers import Response

from ..accounts.models import PROVINCE
from ..accounts.services import authorised_parties
from ..db import get_session
from ..errors import BadRequest, ExchangeError
from ..runtime.flask import runtime
from ..submissions.http_delivery import HttpReceiver
from .auth import login_required
from .blueprints import CONTENT_SECURITY_POLICY
from .csrf import FIELD, STREAMED, verify_csrf
from .province import _account, _common, _service, bp
from .province_services import UploadChecks

#: The channel a delivery uploaded on the page is recorded with (the API's is ``http``).
CHANNEL = "web"
#: The upload page runs one script of its own (the progress bar) and sends the form with it.
UPLOAD_CSP = CONTENT_SECURITY_POLICY.replace("default-src 'none';",
                                             "default-src 'none'; script-src 'self'; connect-src 'self';")
#: How far into the body the CSRF field (the form's first part) must have ended.
_HEAD_LIMIT = 16 * 1024


class _Replay(io.RawIOBase):
    """A stream's bytes already read (``head``), then the rest of the stream: the body as it was sent."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self.head = memoryview(head)
        self.pos = 0
        self.rest = rest

    def readable(self) -> bool:
        """Always: it is read once, front to back."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the head first, then from the stream."""
        if self.pos < len(self.head):
            n = min(len(buffer), len(self.head) - self.pos)
            buffer[:n] = self.head[self.pos:self.pos + n]
            self.pos += n
            return n
        readinto = getattr(self.rest, "readinto", None)
        if readinto is not None:
            return int(readinto(buffer) or 0)
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def first_field(stream: IO[bytes], boundary: bytes) -> tuple[str | None, str, bytes]:
    """The name and value of a multipart body's first part, if it is a small plain field, and the bytes read."""
    head = b""
    opener = b"--" + boundary + b"\r\n"
    while len(head) < _HEAD_LIMIT:
        chunk = stream.read(min(4096, _HEAD_LIMIT - len(head)))
        if not chunk:
            break
        head += chunk
        start = head.find(opener)
        if start < 0:
            continue
        headers_end = head.find(b"\r\n\r\n", start)
        if headers_end < 0:
            continue
        value_end = head.find(b"\r\n--" + boundary, headers_end + 4)
        if value_end < 0:
            continue
        disposition = ""
        for line in head[start + len(opener):headers_end].decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        _kind, options = parse_options_header(disposition)
        if "filename" in options:
            return None, "", head
        return options.get("name"), head[headers_end + 4:value_end].decode("utf-8", "replace"), head
    return None, "", head


def _render(error: ExchangeError | None = None, status: int = 200) -> Response:
    account = _account()
    service = _service()
    rt = runtime()
    # Its own party first, then its networks'.
    parties = sorted(authorised_parties(get_session(), account), key=lambda p: (p != account.party, p))
    names = service.area_names(set(parties))
    open_cycles = [r for r in service.calendar(account) if r.open_to_us]
    response = make_response(render_template(
        "province/upload.html", error=error, settings=rt.settings, parties=[(p, names.get(p, ("", ""))) for p in parties],
        open_cycles=open_cycles, field=FIELD, **_common("upload")), status)
    response.headers["Content-Security-Policy"] = UPLOAD_CSP  # security_headers keeps it (setdefault)
    return response


@bp.get("/upload")
@login_required(PROVINCE)
def upload() -> Response:
    """The upload form: choose the check file and its data files (several at once)."""
    return _render()


def _no_files(error: ExchangeError) -> ExchangeError:
    """The form sent with nothing chosen: an empty name, said plainly."""
    if error.code == "bad_file_name" and isinstance(error.errors, dict) and error.errors.get("file") == "":
        return BadRequest("choose the check file and its data files first", "请先选择校验文件及其数据文件",
                          code="no_files")
    return error


@bp.post("/upload")
@login_required(PROVINCE)
def upload_post() -> Response:
    """Receive the chosen files as a delivery of the signed-in account; on to its page, or back with a message."""
    mimetype, options = parse_options_header(request.content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        verify_csrf(request.form.get(FIELD, ""))  # a small urlencoded form at most (a client without files)
        return _render(BadRequest("send the form with its files (multipart/form-data)",
                                  "请通过本页表单选择文件后上传（multipart/form-data）", code="not_multipart"), 400)
    stream = request.stream
    name, token, head = first_field(stream, boundary.encode("latin-1"))
    verify_csrf(token if name == FIELD else "")
    rt = runtime()
    session = get_session()
    try:
        delivery, duplicate = HttpReceiver(session, rt.archive, rt.spec, rt.settings).receive(
            _account(), CHANNEL, cast(IO[bytes], _Replay(head, stream)), request.content_type, request.content_length,
            screen=UploadChecks(session, rt.spec))
    except ExchangeError as error:
        session.rollback()
        if error.status == 500:
            raise  # a bug: the error page logs it and says only that the server failed
        # Everything else (a bad choice, a cap, a full disk: 507) is said on the page, in its language.
        return _render(_no_files(error), error.status)
    delivery_id = delivery.id
    session.commit()
    if duplicate:  # the same bytes again: the first delivery, said so
        return redirect(url_for("province.delivery", delivery_id=delivery_id, duplicate=1), 303)
    return redirect(url_for("province.delivery", delivery_id=delivery_id, received=1), 303)


STREAMED.add("province.upload_post")
