"""``serve``: the HTTP server (cheroot) and the ingestion workers in one process.

Cheroot is a pure-Python, thread-pooled WSGI server that hands the request body to the
application as it arrives (no spooling), so an upload is parsed, hashed and archived
while it is still being received, and each byte reaches the disk once. With our own
streaming parser and caps, memory stays flat however big the delivery. Workers run as
threads here; more can run as separate processes (``exchange-server worker``) against the
same database.

The HTTP front keeps slow or idle clients from starving the others (docs/deploying.md):

- a connection waits in cheroot's selector, costing no thread, until it has something to
  say; a request thread is taken only once bytes (or a TLS handshake) arrive, and the TLS
  handshake runs in that thread, never in the accept loop;
- the request line and headers must arrive within ``http_header_timeout`` of the accept
  (or of the first byte of a kept-alive connection's next request), else 408 and close;
  they may be ``http_max_header_size`` bytes at most, else 431 in our JSON error shape;
- a kept-alive connection idle for ``http_idle_timeout`` is closed; once the application
  runs, the socket may be silent for ``http_timeout`` (a body arriving, an answer leaving);
- the thread pool starts at ``http_threads`` and grows while no thread is idle, up to
  ``http_max_threads`` (cheroot's own pool never grows); spare threads end after a minute
  idle. The listen backlog is ``http_backlog``.

With ``tls_cert`` and ``tls_key`` it speaks HTTPS itself. Behind a reverse proxy,
``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed from ``trusted_proxies`` only
(``TrustedProxies``); the application makes cookies Secure and sends HSTS on HTTPS.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import resource
import selectors
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from pathlib import Path
from typing import Any, Callable, Iterable

from cheroot import connections as cheroot_connections
from cheroot import errors as cheroot_errors
from cheroot import makefile as cheroot_makefile
from cheroot import server as cheroot_server
from cheroot import wsgi as cheroot_wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cheroot.workers import threadpool as cheroot_threadpool
from werkzeug.middleware.proxy_fix import ProxyFix

from ..app import create_app
from ..config import Settings
from ..errors import ConfigError
from ..ingestion.worker import IngestionWorker, VerdictHook, recover, sweep_forever
from .services import Runtime

log = logging.getLogger(__name__)


@dataclass
class Server:
    """The running parts of one ``serve`` process."""

    runtime: Runtime
    host: str
    port: int
    sftp_port: int | None = None  # default: the settings' sftp_port (0 picks a free one)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    wsgi: Any = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    sftp: Any = None
    scanners: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The base URL clients use."""
        scheme = "https" if self.runtime.settings.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self, workers: int | None = None, hooks: list[VerdictHook] | None = None,
              sftp: bool | None = None) -> "Server":
        """Bind the ports and start HTTP, SFTP, the inbox scanners and the workers (non-blocking)."""
        app = create_app(runtime=self.runtime)
        s = self.runtime.settings
        front = TrustedProxies(app, s.trusted_proxy_networks, s.proxy_hops)
        self.wsgi = _HttpServer(front, self.host, self.port, s)  # loads the TLS certificate: fails early
        if s.sftp_enabled if sftp is None else sftp:
            self._start_sftp()
        if s.dropbox_root:
            self._start_scanner(s.dropbox_root, "dropbox")
        self._start_pusher()
        if s.is_hub:
            self._start_forwarder()
        self.wsgi.prepare()  # binds now, so the effective port is known when start() returns
        self.port = int(self.wsgi.bind_addr[1])
        # Jobs a killed process held, and its debris: also with --workers 0 (separate workers
        # may run the queue, but this process is the one that restarted).
        recover(self.runtime)
        sweeper = threading.Thread(target=sweep_forever, args=(self.runtime, self.stop), name="sweep", daemon=True)
        sweeper.start()
        self.threads.append(sweeper)
        self._start_reminders()
        for i in range(s.worker_threads if workers is None else workers):
            worker = IngestionWorker(self.runtime, f"w{i}", hooks)
            t = threading.Thread(target=worker.run_forever, args=(self.stop,), name=f"ingest-{i}", daemon=True)
            t.start()
            self.threads.append(t)
        web = threading.Thread(target=self._run_http, name="http", daemon=True)
        web.start()
        self.threads.append(web)
        return self

    def _start_reminders(self) -> None:
        """Reminders before deadlines, every ``reminder_check_seconds`` (docs/admin.md)."""
        from ..admin.reminders import reminders_forever

        t = threading.Thread(target=reminders_forever, args=(self.runtime, self.stop), name="reminders", daemon=True)
        t.start()
        self.threads.append(t)

    def _start_sftp(self) -> None:
        from ..sftp.server import EmbeddedSftpServer

        s = self.runtime.settings
        self.sftp = EmbeddedSftpServer(self.runtime, self.host, s.sftp_port if self.sftp_port is None else self.sftp_port)
        self.sftp_port = self.sftp.port
        scanner = self._start_scanner(str(s.sftp_root), "sftp", busy=self.sftp.busy)
        self.sftp.attach_scanner(scanner.wake)
        self.threads.append(self.sftp.start())
        self.on_stop.append(self.sftp.shutdown)

    def _start_pusher(self) -> None:
        """HQ push: copies outbox files to provinces' own SFTP servers where configured."""
        from ..push.worker import Pusher

        t = threading.Thread(target=Pusher(self.runtime).run_forever, args=(self.stop,), name="push", daemon=True)
        t.start()
        self.threads.append(t)

    def _start_forwarder(self) -> None:
        """A province hub: sync with HQ, send approved forwards, bring HQ's answers down (docs/tiers.md)."""
        from ..hub.forwarder import Forwarder

        forwarder = Forwarder(self.runtime)
        t = threading.Thread(target=forwarder.run_forever, args=(self.stop,), name="hub-forwarder", daemon=True)
        t.start()
        self.threads.append(t)
        self.on_stop.append(forwarder.wake.set)

    def _start_scanner(self, root: str, channel: str, busy: Any = None) -> Any:
        from ..sftp.inbox import InboxScanner

        scanner = InboxScanner(self.runtime, Path(root), channel, busy)
        self.scanners.append(scanner)
        t = threading.Thread(target=scanner.run_forever, args=(self.stop,), name=f"scan-{channel}", daemon=True)
        t.start()
        self.threads.append(t)
        self.on_stop.append(scanner.wake.set)
        return scanner

    def _run_http(self) -> None:
        self.wsgi.serve()  # returns once shutdown() has stopped it

    def shutdown(self) -> None:
        """Stop accepting, let workers finish their current delivery, close."""
        self.stop.set()
        for fn in self.on_stop:
            fn()
        if self.wsgi is not None:
            # Stops accepting, closes idle connections, waits up to shutdown_timeout for requests.
            self.wsgi.stop()
            for t in self.threads:
                if t.name == "http":
                    t.join(timeout=10)
        for t in self.threads:
            if t.name.startswith(("ingest", "scan")):
                t.join(timeout=30)
        self.runtime.db.dispose()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM, then shut down."""
        def _stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: shutting down", signum)
            self.stop.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        self.stop.wait()
        self.shutdown()


# -- the HTTP server ---------------------------------------------------------------------------
# Requests in flight get this long to finish when the server stops.
_SHUTDOWN_TIMEOUT = 5
# A request thread above http_threads ends after this long without a connection to serve.
_SPARE_THREAD_IDLE = 60.0
# After refusing a request whose bytes are still arriving (431), read and drop them for at
# most this long before closing, so the client reads our answer instead of a reset.
_LINGER_SECONDS = 5.0


class _BodyReader:
    """``wsgi.input`` for a body of known length, adding ``readinto`` to cheroot's reader.

    Werkzeug's ``LimitedStream`` uses ``readinto`` when the stream has it, so the upload
    parser's reads go straight from the socket into its own buffer (cheroot's
    ``KnownLengthRFile`` has only ``read``, which costs two extra copies of every byte).
    """

    def __init__(self, rfile: cheroot_server.KnownLengthRFile) -> None:
        self.rfile = rfile  # cheroot's own reader: its ``remaining`` stays the truth cheroot reads

    @property
    def remaining(self) -> int:
        """Body bytes not read yet."""
        return int(self.rfile.remaining)

    def readinto(self, b: Any) -> int:
        """Fill ``b`` with the body's next bytes (fewer only at its end); 0 at its end."""
        n = min(len(b), self.rfile.remaining)
        if n <= 0:
            return 0
        view = memoryview(b).cast("B")[:n]
        sock = self.rfile.rfile  # cheroot's buffered socket reader (a _pyio.BufferedReader)
        got = 0
        if sock.has_data():
            # What it already buffered (read along with the headers) comes first; read1
            # returns only that, without touching the socket.
            head = sock.read1(n)
            view[:len(head)] = head
            got = len(head)
        # Then straight from the socket. Not through the reader's own readinto: _pyio's
        # version (CPython 3.11) can overrun a partly filled target and fails with
        # "memoryview assignment: lvalue and rvalue have different structures".
        while got < n:
            k = sock.raw.readinto(view[got:])
            if not k:
                break  # the client closed: the caller sees a short read
            got += k
        sock.bytes_read += got
        self.rfile.remaining -= got
        return got

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative or None)."""
        return bytes(self.rfile.read(None if size is None or size < 0 else size))

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line of the body."""
        return bytes(self.rfile.readline(None if size is None or size < 0 else size))

    def __iter__(self) -> "_BodyReader":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _Gateway(cheroot_wsgi.Gateway_10):
    """The WSGI gateway with a faster ``wsgi.input``, and no unbounded reads after an early answer."""

    drain_limit = 0  # set per server: the most body bytes read and dropped after an early answer

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]  # cheroot's stub says None; it is the environ
        env = super().get_environ()
        if isinstance(self.req.rfile, cheroot_server.KnownLengthRFile):
            env["wsgi.input"] = _BodyReader(self.req.rfile)
        return env

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self._settle_body()
        return super().start_response(status, headers, exc_info)

    def _settle_body(self) -> None:
        # An application that answers before reading the whole body (an error found in the
        # first part of a big upload) leaves the rest on the socket. Cheroot would read it
        # with one read() of that size, holding all of it in memory, so the rest is read and
        # dropped here in 1 MiB blocks before the answer goes out (the client then sees our
        # answer, as it would from a server that receives everything first); beyond
        # drain_limit, or when that fails, the connection is closed instead.
        req = self.req
        rfile = req.rfile
        if isinstance(rfile, cheroot_server.KnownLengthRFile):
            if 0 < rfile.remaining <= self.drain_limit:
                reader = _BodyReader(rfile)
                block = bytearray(1 << 20)
                try:
                    while reader.remaining and reader.readinto(block):
                        pass
                except OSError:
                    req.close_connection = True
            if rfile.remaining:
                rfile.remaining = 0  # cheroot must not try to read it
                req.close_connection = True
        elif isinstance(rfile, cheroot_server.ChunkedRFile) and not rfile.closed:
            try:
                dropped = 0
                while dropped <= self.drain_limit and (data := rfile.read(1 << 20)):
                    dropped += len(data)
            except (OSError, ValueError):
                pass
            if not rfile.closed:
                req.close_connection = True


# Answers the HTTP layer gives before the application runs, in the application's JSON error
# shape (errors_http.py): status -> (code, reason phrase, Chinese message).
_LAYER_ANSWERS: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "Bad Request", "请求格式错误"),
    408: ("request_timeout", "Request Timeout", "请求超时"),
    414: ("uri_too_long", "URI Too Long", "请求行过长"),
    431: ("header_too_large", "Request Header Fields Too Large", "请求头超过大小上限"),
    500: ("internal_error", "Internal Server Error", "服务器内部错误"),
    501: ("not_implemented", "Not Implemented", "不支持该传输编码"),
    503: ("unavailable", "Service Unavailable", "服务暂不可用"),
    505: ("http_version_not_supported", "HTTP Version Not Supported", "不支持该 HTTP 版本"),
}


def layer_error(status: int, message: str, errors: dict[str, Any] | None = None) -> bytes:
    """A whole HTTP answer (head and JSON body) for an error found before the application runs."""
    code, reason, zh = _LAYER_ANSWERS.get(status, ("http_error", "Error", "请求错误"))
    doc: dict[str, Any] = {"code": code, "status": status, "message": message, "message_zh": zh}
    if errors:
        doc["errors"] = errors
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _DeadlineReader:
    """The connection's reader while a request line and headers arrive: no read outlasts the deadline.

    Cheroot reads headers with ``readline``; under a plain socket timeout a client sending a
    byte a second keeps one ``readline`` going for ever, so each socket read here may wait
    only for the time left, and waiting past the deadline is a timeout (cheroot answers 408
    and closes). Bytes the kernel already holds are still read after the deadline: a request
    that arrived whole but waited for a free thread is served, not timed out.
    """

    def __init__(self, rfile: Any, sock: Any, deadline: float) -> None:
        self.rfile, self.sock, self.deadline = rfile, sock, deadline

    def _arm(self) -> None:
        self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))

    def readline(self, size: int | None = -1) -> bytes:
        """One line, as ``BufferedReader.readline`` but with every socket read under the deadline."""
        limit = size if size is not None and size >= 0 else 1 << 62
        out = bytearray()
        while len(out) < limit:
            if not self.rfile.has_data():
                self._arm()
            head = self.rfile.peek(1)[:limit - len(out)]  # what is buffered, or one socket read
            if not head:
                break
            end = head.find(b"\n")
            out += self.rfile.read(end + 1 if end >= 0 else len(head))
            if end >= 0:
                break
        return bytes(out)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (cheroot reads headers by lines; this is for completeness)."""
        self._arm()
        return bytes(self.rfile.read(size))


class _Request(cheroot_server.HTTPRequest):
    """Cheroot's request with the header deadline, and the layer's own errors in our JSON shape."""

    server: "_HttpServer"
    conn: "_Connection"

    def parse_request(self) -> None:
        """Read the request line and headers within ``http_header_timeout``."""
        conn = self.conn
        start = conn.accepted if conn.requests_started == 0 else time.monotonic()
        conn.requests_started += 1
        plain = conn.rfile
        conn.rfile = _DeadlineReader(plain, conn.socket, start + self.server.header_timeout)
        try:
            super().parse_request()
        finally:
            conn.rfile = plain
            try:
                conn.socket.settimeout(self.server.timeout)  # the body and answer timeout from here on
            except OSError:
                pass

    def simple_response(self, status: Any, msg: Any = "") -> None:
        """Cheroot's plain-text error answers, as JSON; oversized headers get 431 instead of 413."""
        code = int(str(status)[:3])
        limit = self.server.max_request_header_size
        errors: dict[str, Any] | None = None
        text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg)
        if code == 413:  # from cheroot only for headers: the application enforces the body caps itself
            code, errors = 431, {"limit": limit}
            text = f"the request line and headers are larger than the limit of {limit} bytes"
        elif code == 414:
            errors = {"limit": limit}
            text = f"the request line is longer than the limit of {limit} bytes"
        elif code == 408:
            text = (f"the request line and headers did not arrive within {self.server.header_timeout:g} s"
                    if not self.ready else f"the client sent nothing for {self.server.timeout:g} s")
        self.close_connection = True
        if code in (414, 431):
            self.conn.drain_before_close = True  # the client may still be sending what we refused
        try:
            self.conn.wfile.write(layer_error(code, text or _LAYER_ANSWERS.get(code, ("", str(status), ""))[1],
                                              errors))
        except OSError:
            pass  # the client is gone; the connection closes either way


class _Connection(cheroot_server.HTTPConnection):
    """A client connection: accepted when, its TLS handshake (in a request thread), a lingering close."""

    RequestHandlerClass = _Request
    server: "_HttpServer"

    def __init__(self, server: Any, sock: Any, makefile: Any = cheroot_makefile.MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self.accepted = time.monotonic()
        self.idle_since = self.accepted
        self.requests_started = 0
        self.new = True  # not yet handed to the selector
        self.handshake_done = not isinstance(sock, ssl.SSLSocket)
        self.drain_before_close = False

    def communicate(self) -> bool:
        """Finish the TLS handshake first if it is still to do, then serve a request."""
        if not self.handshake_done and not self._handshake():
            return False
        return bool(super().communicate())

    def _handshake(self) -> bool:
        sock = self.socket
        try:
            sock.settimeout(max(self.accepted + self.server.header_timeout - time.monotonic(), 0.001))
            sock.do_handshake()
            sock.settimeout(self.server.timeout)
        except ssl.SSLError as exc:
            if exc.reason == "HTTP_REQUEST":  # plain HTTP to the HTTPS port: say so, unencrypted
                try:
                    os.write(sock.fileno(), layer_error(400, "this port speaks HTTPS only: use https://"))
                except OSError:
                    pass
            log.info("http: TLS handshake with %s failed: %s", self.remote_addr, exc)
            return False
        except OSError as exc:  # timed out (the header deadline) or reset
            log.info("http: TLS handshake with %s failed: %s", self.remote_addr, exc)
            return False
        self.handshake_done = True
        self.ssl_env = dict(self.server.ssl_adapter.get_environ(sock))
        return True

    def close(self) -> None:
        """Close; after refusing a request still arriving, first let the client finish sending (bounded)."""
        if self.drain_before_close:
            self.drain_before_close = False
            self._drain()
        super().close()

    def _drain(self) -> None:
        # Closing with unread bytes makes the kernel answer with a reset, which can reach the
        # client before it has read our answer. Half-close instead, and drop what still comes.
        end = time.monotonic() + _LINGER_SECONDS
        try:
            self.socket.shutdown(socket.SHUT_WR)
            while (left := end - time.monotonic()) > 0:
                self.socket.settimeout(min(left, 1.0))
                if not self.socket.recv(1 << 16):
                    break
        except OSError:
            pass


class _Connections(cheroot_connections.ConnectionManager):
    """Cheroot's selector loop, where connections with nothing to say wait without a thread.

    A new connection waits here under the header deadline, a kept-alive one under the idle
    timeout; either is closed when its time is up.
    """

    _selector: Any  # set by cheroot's __init__ (its stub leaves it out)
    server: "_HttpServer"

    def put(self, conn: _Connection) -> None:
        """Wait for the connection's next bytes (or hand it on at once if some are buffered)."""
        conn.idle_since = time.monotonic()
        buffered = conn.rfile.has_data()
        if not buffered and conn.handshake_done and isinstance(conn.socket, ssl.SSLSocket):
            buffered = conn.socket.pending() > 0  # decrypted by OpenSSL, not yet read
        if buffered:
            self.server.process_conn(conn)
        else:
            self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)

    def _expire(self, threshold: float) -> None:
        """Close the waiting connections whose time is up (cheroot calls this twice a second)."""
        now = time.monotonic()
        server = self.server
        waiting = [(fd, conn) for fd, conn in self._selector.connections if conn is not server]
        for fd, conn in waiting:
            if conn.requests_started == 0:
                up = now > conn.accepted + server.header_timeout
            else:
                up = now > conn.idle_since + server.idle_timeout
            if up:
                self._selector.unregister(fd)
                conn.close()


class _Pool(cheroot_threadpool.ThreadPool):
    """Cheroot's thread pool, growing while no thread is idle (up to ``max``), shrinking back when idle.

    Cheroot starts ``min`` threads and never grows the pool on its own: once they are all
    busy (with slow clients, say) every other connection waits. Here each connection handed
    to the pool starts one more thread when there are no idle ones to take it, and a thread
    above ``min`` that has had nothing to do for ``spare_idle`` seconds ends.
    """

    _threads: list[Any]  # set by cheroot's __init__ (its stub leaves them out)
    _queue: queue.Queue[Any]

    def __init__(self, server: Any, min_threads: int, max_threads: int, spare_idle: float) -> None:
        super().__init__(server, min=min_threads, max=max_threads)
        self.spare_idle = spare_idle
        self._grow_lock = threading.Lock()
        self.get = self._get  # what cheroot's worker threads call for their next connection

    def put(self, obj: Any) -> None:
        """Queue a connection; start a thread for it if none is idle."""
        super().put(obj)
        with self._grow_lock:
            if self._queue.qsize() >= self.idle and len(self._threads) < self.max:
                worker = cheroot_threadpool.WorkerThread(self.server)
                worker.name = f"CP Server {worker.name}"
                worker.start()
                self._threads.append(worker)

    def _get(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=self.spare_idle)
            except queue.Empty:
                with self._grow_lock:
                    me = threading.current_thread()
                    if len(self._threads) > self.min and me in self._threads:
                        self._threads.remove(me)
                        self.server.stats["Worker Threads"].pop(me.name, None)
                        return _SHUTDOWN_REQUEST  # the thread ends


_SHUTDOWN_REQUEST = getattr(cheroot_threadpool, "_SHUTDOWNREQUEST")  # what makes a cheroot worker thread end


class _TlsAdapter(BuiltinSSLAdapter):
    """Cheroot's builtin TLS, with the handshake left to the request thread (``_Connection``).

    Cheroot's own adapter does the handshake in ``wrap``, which runs in the accept loop: one
    client that connects and stays silent would stop the server accepting anyone for
    ``http_timeout``.
    """

    def wrap(self, sock: Any) -> tuple[Any, dict[str, str]]:
        """The TLS socket, handshake not yet done, and the environ entries known so far."""
        try:
            tls = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        except OSError as exc:  # the client is already gone
            raise cheroot_errors.FatalSSLAlert(*exc.args) from exc
        return tls, {"wsgi.url_scheme": "https", "HTTPS": "on"}


def tls_adapter(settings: Settings) -> _TlsAdapter:
    """The TLS adapter for ``tls_cert`` and ``tls_key``; ConfigError when they cannot be loaded."""
    try:
        adapter = _TlsAdapter(str(Path(settings.tls_cert).expanduser()), str(Path(settings.tls_key).expanduser()))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use tls_cert {settings.tls_cert} with tls_key {settings.tls_key}: {exc}") from None
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    return adapter


def _raise_open_files_limit(wanted: int) -> None:
    """Every waiting connection holds a file descriptor: lift the soft limit towards ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < wanted:
        log.warning("http: open files limit is %d, fewer than the %d the configured backlog and threads may "
                    "need; raise it (LimitNOFILE= in the systemd unit)", target, wanted)


class TrustedProxies:
    """WSGI middleware: ``X-Forwarded-*`` from a trusted proxy are applied, from anyone else dropped.

    A request whose peer (``REMOTE_ADDR``) is one of ``networks`` goes through werkzeug's
    ``ProxyFix`` with ``hops`` proxies (the client address from X-Forwarded-For, the scheme
    from X-Forwarded-Proto); from any other peer those headers are removed, so a client
    talking to the server directly cannot claim HTTPS or another address.
    """

    HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
               "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")

    def __init__(self, app: Any, networks: Iterable[IPv4Network | IPv6Network], hops: int = 1) -> None:
        self.app = app
        self.networks = tuple(networks)
        self.proxied = ProxyFix(app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)

    def trusted(self, peer: str) -> bool:
        """Whether ``peer`` is one of the configured proxies."""
        try:
            addr = ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.networks and self.trusted(environ.get("REMOTE_ADDR", "")):
            return self.proxied(environ, start_response)
        for name in self.HEADERS:
            environ.pop(name, None)
        return self.app(environ, start_response)


class _HttpServer(cheroot_wsgi.Server):
    """Cheroot's WSGI server with our gateway, connections, pool and limits, and its log lines in ours."""

    ConnectionClass = _Connection
    _connections: Any  # set by cheroot's prepare() (its stub leaves it out)

    def __init__(self, app: Any, host: str, port: int, settings: Settings) -> None:
        super().__init__((host, port), app, numthreads=settings.http_threads, max=settings.http_max_threads,
                         server_name="kam-exchange", request_queue_size=settings.http_backlog,
                         shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self.timeout = settings.http_timeout
        self.header_timeout = settings.http_header_timeout
        self.idle_timeout = settings.http_idle_timeout
        self.requests = _Pool(self, settings.http_threads, settings.http_max_threads, _SPARE_THREAD_IDLE)
        self.gateway = type("Gateway", (_Gateway,), {"drain_limit": settings.max_delivery_size})
        # 0 = no cap in cheroot: our parser enforces max_delivery_size (and the per-file caps)
        # with a JSON answer that names the limit, which a bare cheroot 413 would pre-empt.
        self.max_request_body_size = 0
        self.max_request_header_size = settings.http_max_header_size
        # Idle kept-alive connections cost a descriptor, not a thread; the idle timeout ends them.
        self.keep_alive_conn_limit = settings.http_backlog
        self.ssl_adapter = tls_adapter(settings) if settings.tls else None
        self._wanted_files = settings.http_backlog + 2 * settings.http_max_threads + 1024

    def prepare(self) -> None:
        """Bind and listen, with our selector loop in place of cheroot's."""
        _raise_open_files_limit(self._wanted_files)
        super().prepare()
        self._connections._selector.close()  # cheroot's manager, replaced before it ever ran
        self._connections = _Connections(self)

    def process_conn(self, conn: _Connection) -> None:
        """A new connection waits in the selector for its first bytes; one with bytes goes to a thread."""
        if conn.new:
            conn.new = False
            self._connections.put(conn)
        else:
            super().process_conn(conn)

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """Cheroot's own messages (e.g. a connection reset) go to our log, not stderr."""
        log.log(level, "http: %s", msg, exc_info=traceback)
