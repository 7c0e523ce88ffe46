"""How every page sends a file to save: one function, so each download's headers are the same."""
from __future__ import annotations

import io

from flask import send_file
from werkzeug.wrappers import Response


def attachment(data: bytes, mimetype: str, filename: str) -> Response:
    """A file to save under ``filename`` with exactly ``mimetype`` as its Content-Type, never cached.

    ``send_file`` writes the name for every browser (``filename*`` for Chinese names) but adds its
    own ``charset`` to text types, so a CSV would say ``charset=utf-8`` twice: the type is set again.
    """
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=filename, max_age=0)
    response.headers["Content-Type"] = mimetype
    return response
