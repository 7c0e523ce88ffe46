"""``serve``: the HTTP server (cheroot) and the ingestion workers in one process.

Cheroot is a pure-Python, thread-pooled WSGI server that hands the request body to the
application as it arrives (no spooling), so an upload is parsed, hashed and archived
while it is still being received, and each byte reaches the disk once. With our own
streaming parser and caps, memory stays flat however big the delivery. Workers run as
threads here; more can run as separate processes (``exchange-server worker``) against the
same database.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cheroot import server as cheroot_server
from cheroot import wsgi as cheroot_wsgi

from ..app import create_app
from ..ingestion.worker import IngestionWorker, VerdictHook
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
        return f"http://{self.host}:{self.port}"

    def start(self, workers: int | None = None, hooks: list[VerdictHook] | None = None,
              sftp: bool | None = None) -> "Server":
        """Bind the ports and start HTTP, SFTP, the inbox scanners and the workers (non-blocking)."""
        app = create_app(runtime=self.runtime)
        s = self.runtime.settings
        if s.sftp_enabled if sftp is None else sftp:
            self._start_sftp()
        if s.dropbox_root:
            self._start_scanner(s.dropbox_root, "dropbox")
        self._start_pusher()
        self.wsgi = _HttpServer(app, self.host, self.port, s.http_threads, s.max_delivery_size)
        self.wsgi.prepare()  # binds now, so the effective port is known when start() returns
        self.port = int(self.wsgi.bind_addr[1])
        for i in range(s.worker_threads if workers is None else workers):
            worker = IngestionWorker(self.runtime, f"w{i}", hooks)
            t = threading.Thread(target=worker.run_forever, args=(self.stop,), name=f"ingest-{i}", daemon=True)
            t.start()
            self.threads.append(t)
        web = threading.Thread(target=self._run_http, name="http", daemon=True)
        web.start()
        self.threads.append(web)
        return self

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
# How long a connection may stay silent (mid-upload, or idle between keep-alive requests).
_SOCKET_TIMEOUT = 120
# Requests in flight get this long to finish when the server stops.
_SHUTDOWN_TIMEOUT = 5


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


class _HttpServer(cheroot_wsgi.Server):
    """Cheroot's WSGI server with our gateway and cheroot's log lines in our log."""

    def __init__(self, app: Any, host: str, port: int, threads: int, max_delivery_size: int) -> None:
        super().__init__((host, port), app, numthreads=threads, server_name="kam-exchange",
                         timeout=_SOCKET_TIMEOUT, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self.gateway = type("Gateway", (_Gateway,), {"drain_limit": max_delivery_size})
        # 0 = no cap in cheroot: our parser enforces max_delivery_size (and the per-file caps)
        # with a JSON answer that names the limit, which a bare cheroot 413 would pre-empt.
        self.max_request_body_size = 0

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """Cheroot's own messages (e.g. a connection reset) go to our log, not stderr."""
        log.log(level, "http: %s", msg, exc_info=traceback)
