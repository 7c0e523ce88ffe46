"""The HTTP transport: streamed multipart uploads and JSON calls to ``/api/v1``.

Uploads are streamed from disk with a precomputed Content-Length, so a 1 GB delivery
needs one buffer of memory. Standard library only (http.client). Over HTTPS the server's
certificate and name are always checked, against ``ca_file`` when one is configured (HQ's
own CA), else against the system's trust store; a certificate that does not verify is a
``CertificateError`` at once, not a transient failure to retry. Turning the check off
(``verify_tls = false``) is logged as a warning on every run, never silent.
"""
from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import logging
import re
import ssl
import uuid
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence
from urllib.parse import urlencode, urlsplit

from .._exceptions import CredentialsError, TransportError
from .base import CycleInfo, Progress, Receipt, Transport, Verdict

log = logging.getLogger(__name__)

CHUNK = 1 << 20
VERSION_RE = re.compile(r"^[0-9]{4}V[0-9]{2}$")  # a list version, e.g. 2026V02 (a folder name here)


class HttpError(Exception):
    """The server answered with an error (its JSON error shape is in ``body``)."""

    @property
    def transient(self) -> bool:
        """5xx and 429 answers are worth retrying; 4xx are not (the request itself is wrong)."""
        return self.status >= 500 or self.status == 429

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"HTTP {status} {code or ''}: {message}")
        self.code = code


def multipart_body(paths: Sequence[Path], boundary: str) -> tuple[list[bytes | Path], int]:
    """The parts of a multipart body (bytes, or files to stream) and its total length."""
    parts: list[bytes | Path] = []
    length = 0
    for p in paths:
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{p.name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode("utf-8")
        parts += [head, p, b"\r\n"]
        length += len(head) + p.stat().st_size + 2
    tail = f"--{boundary}--\r\n".encode("ascii")
    parts.append(tail)
    return parts, length + len(tail)


class CertificateError(TransportError):
    """HQ's TLS certificate did not verify (wrong CA, wrong name, expired): not retried, it will not heal."""


class ServerUnavailable(HttpError):
    """A 5xx or 429 answer: HQ is (briefly) unable to take the request."""


def _stream(parts: list[bytes | Path]) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, bytes):
            yield part
            continue
        with part.open("rb") as fh:
            while block := fh.read(CHUNK):
                yield block


class HttpAuthError(HttpError, CredentialsError):
    """A 401 or 403 answer: HQ does not accept our API token (revoked, expired, mistyped, or not a
    province's). Not retried; one bilingual line and exit status 4."""

    def __str__(self) -> str:
        what = f"HTTP {self.status} {self.code or ''}".strip()
        return (f"总部拒绝了 API 令牌（{what}）：请向总部管理员申请新令牌并写入 server.token_file / "
                f"HQ refused the API token ({what}): ask HQ's admin for a new token and put it in server.token_file")


def _error(status: int, data: Any) -> HttpError:
    if status in (401, 403):
        return HttpAuthError(status, data)
    return ServerUnavailable(status, data) if status >= 500 or status == 429 else HttpError(status, data)


class HttpTransport(Transport):
    """Talks to one exchange server with one API token."""

    transient = (OSError, http.client.HTTPException, ServerUnavailable)

    def __init__(self, base_url: str, token: str, timeout: float = 300, verify_tls: bool = True,
                 ca_file: str | None = None) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        self.scheme, self.host, self.port = parts.scheme, parts.hostname or "", parts.port
        self.prefix = parts.path
        self.token = token
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        self.trust = f"the CA in {ca_file}" if ca_file else "the system's trusted CAs"
        if self.scheme == "https":
            try:
                self.context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(f"cannot use server.ca_file {ca_file}: {exc}") from None
            if not verify_tls:
                log.warning("server.verify_tls is false: HQ's certificate is NOT checked, so anyone on the way "
                            "can pose as HQ and read the token; set server.ca_file instead")
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        elif not _loopback(self.host):
            log.warning("server.url %s is plain http: the API token crosses the network unencrypted; "
                        "use https://", base_url)

    def _conn(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        h.update(extra or {})
        return h

    @staticmethod
    def _answer(resp: http.client.HTTPResponse) -> tuple[int, bytes]:
        return resp.status, resp.read()

    def request(self, method: str, path: str, query: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A plain request; returns (status, body bytes)."""
        url = self.prefix + path + ("?" + urlencode(query) if query else "")
        conn = self._conn()
        try:
            conn.request(method, url, headers=self._headers())
            return self._answer(conn.getresponse())
        except ssl.SSLCertVerificationError as exc:
            raise self._certificate_error(exc) from None
        finally:
            conn.close()

    def _certificate_error(self, exc: ssl.SSLCertVerificationError) -> CertificateError:
        return CertificateError(f"HQ's certificate for {self.host} could not be verified against {self.trust}: "
                                f"{exc.verify_message or exc.reason}. Set server.ca_file to the CA that issued "
                                "HQ's certificate (ask HQ), or check server.url's host name")

    def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        """GET a JSON resource; HttpError on a 4xx/5xx answer."""
        status, body = self.request("GET", path, query)
        data = _json(body)
        if status >= 400:
            raise _error(status, data)
        return data

    def get_bytes(self, path: str) -> bytes:
        """GET a file; HttpError on an error answer."""
        status, body = self.request("GET", path)
        if status >= 400:
            raise _error(status, _json(body))
        return body

    def upload(self, paths: Sequence[Path], path: str = "/api/v1/deliveries",
               progress: Progress | None = None) -> tuple[int, Any]:
        """Upload a delivery's files in one streamed multipart request; returns (status, receipt)."""
        boundary = "kam-" + uuid.uuid4().hex
        parts, length = multipart_body([Path(p) for p in paths], boundary)
        conn = self._conn()
        try:
            conn.putrequest("POST", self.prefix + path)
            for k, v in self._headers({"Content-Type": f"multipart/form-data; boundary={boundary}",
                                        "Content-Length": str(length)}).items():
                conn.putheader(k, v)
            conn.endheaders()
            sent = 0
            for block in _stream(parts):
                conn.send(block)
                sent += len(block)
                if progress is not None:
                    progress(sent, length)
            status, body = self._answer(conn.getresponse())
        except ssl.SSLCertVerificationError as exc:
            raise self._certificate_error(exc) from None
        finally:
            conn.close()
        data = _json(body)
        if status >= 400:
            raise _error(status, data)
        return status, data

    # -- the Transport interface ----------------------------------------------------------------
    def send(self, files: Sequence[Path], progress: Progress | None = None) -> Receipt:
        """Upload in one request; the same bytes again get the first receipt back (safe to retry)."""
        _status, data = self.upload(files, progress=progress)
        check = data.get("check_file") or ""
        return Receipt(data["delivery_id"], check[:-4] if check.endswith(".chk") else check, bool(data["duplicate"]))

    def verdict(self, receipt: Receipt) -> Verdict | None:
        """Ask for the delivery's status."""
        d = self.get_json(f"/api/v1/deliveries/{receipt.delivery_id}")
        if d["status"] in ("queued", "validating"):
            return None
        return Verdict(d["status"], d.get("errors", 0), d.get("warnings", 0), d.get("counts", []),
                       _comments(d))

    def comments(self, receipt: Receipt) -> list[str]:
        """HQ's review comments, from the delivery JSON."""
        return _comments(self.get_json(f"/api/v1/deliveries/{receipt.delivery_id}"))

    def report(self, receipt: Receipt) -> Any:
        """The full JSON report."""
        return self.get_json(f"/api/v1/deliveries/{receipt.delivery_id}/report")

    def findings(self, receipt: Receipt) -> list[dict[str, Any]]:
        """The listed findings of the JSON report."""
        return list((self.report(receipt) or {}).get("findings") or [])

    def review_state(self, receipt: Receipt) -> str | None:
        """``review_state`` of the delivery JSON."""
        state = self.get_json(f"/api/v1/deliveries/{receipt.delivery_id}").get("review_state")
        return str(state) if state else None

    def fetch_list(self, dest: Path) -> tuple[str, list[Path]] | None:
        """The province's current slice: its check file and data file."""
        try:
            meta = self.get_json("/api/v1/list")
        except HttpError as exc:
            if exc.status == 404:
                return None
            raise
        return meta["version"], self._save(meta["files"], dest)

    def _save(self, files: list[dict[str, Any]], folder: Path) -> list[Path]:
        """Download a slice's files (as the list routes describe them) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for f in files:
            target = folder / f["name"]
            target.write_bytes(self.get_bytes(f["url"]))
            out.append(target)
        return out

    def fetch_lists(self, dest: Path, known: Collection[str] = ()) -> list[tuple[str, list[Path]]]:
        """Every published version's slice (``GET /api/v1/list/versions``), oldest first, into ``dest/<version>/``.

        An HQ from before that route answers 404: the current slice then, as ``fetch_list``.
        """
        try:
            versions = self.get_json("/api/v1/list/versions")
        except HttpError as exc:
            if exc.status == 404:
                return super().fetch_lists(dest, known)
            raise
        out: list[tuple[str, list[Path]]] = []
        for meta in versions:
            if meta["version"] in known:
                continue
            names = [f["name"] for f in meta["files"]]
            if not VERSION_RE.match(meta["version"]) or any(Path(n).name != n or n.startswith(".") for n in names):
                raise TransportError(f"HQ listed a list version with unusable names: {meta['version']!r} {names!r}")
            out.append((meta["version"], self._save(meta["files"], dest / meta["version"])))
        return out

    def code_lists(self) -> dict[str, Any] | None:
        """The code-list versions HQ has published beyond the standard (``GET /api/v1/code-lists``)."""
        try:
            doc: dict[str, Any] = self.get_json("/api/v1/code-lists")
        except HttpError as exc:
            if exc.status == 404:  # an HQ server from before code lists were published at run time
                return None
            raise
        return doc

    def calendar(self) -> list[CycleInfo]:
        """Every cycle with its state."""
        return [CycleInfo(c["id"], c["state"], dt.date.fromisoformat(c["end_date"]), c["deadline_beijing"],
                          tuple(c["units_due"]), c.get("exception_until_beijing"))
                for c in self.get_json("/api/v1/cycles")]

    def reminders(self) -> list[dict[str, Any]]:
        """``GET /api/v1/reminders``: the party's reminders in force (an HQ without the route: none)."""
        try:
            doc = self.get_json("/api/v1/reminders")
        except HttpError as exc:
            if exc.status == 404:
                return []
            raise
        return list(doc.get("reminders") or []) if isinstance(doc, dict) else []

    def max_resend(self, cycle: str, mode: str = "P") -> int | None:
        """The highest resend number HQ holds from this account for a cycle, production (P) or test (T):
        the two are numbered on their own (CONVENTIONS.md §8)."""
        items = self.get_json("/api/v1/deliveries", {"cycle": cycle, "mode": mode, "per_page": 500})["items"]
        numbers = [d["resend"] for d in items if d.get("resend") is not None]
        return max(numbers) if numbers else None


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine (plain HTTP there crosses no network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(body: bytes) -> Any:
    """A JSON body, or the text of a non-JSON one (a proxy's error page, say)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]


def _comments(delivery: dict[str, Any]) -> list[str]:
    """The delivery JSON's ``comments`` as text lines: "<time> <author>: <body>"."""
    return [f"{c.get('created_at') or ''} {c.get('author') or 'HQ'}: {c.get('body') or ''}".strip()
            for c in delivery.get("comments") or []]
