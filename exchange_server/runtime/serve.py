"""``serve``: the HTTP server (waitress) and the ingestion workers in one process.

Waitress is a pure-Python, multi-threaded WSGI server that spools large request bodies to
disk; with our own streaming parser and a per-request cap, memory stays flat however big
the delivery. Workers run as threads here; more can run as separate processes
(``exchange-server worker``) against the same database.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from waitress.server import create_server

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
        # Bodies over a few MiB are spooled by waitress to a temp file before our parser reads them.
        self.wsgi = create_server(app, host=self.host, port=self.port, threads=s.http_threads,
                                  max_request_body_size=s.max_delivery_size + 1024 * 1024, ident="kam-exchange",
                                  inbuf_overflow=4 * 1024 * 1024, clear_untrusted_proxy_headers=True)
        self.port = self.wsgi.effective_port
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
        try:
            self.wsgi.run()
        except OSError:
            # Closing the listening socket under waitress's select loop ends it this way.
            if not self.stop.is_set():
                raise

    def shutdown(self) -> None:
        """Stop accepting, let workers finish their current delivery, close."""
        self.stop.set()
        for fn in self.on_stop:
            fn()
        if self.wsgi is not None:
            self.wsgi.task_dispatcher.shutdown(timeout=5)
            self.wsgi.close()
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
