"""The reference receiver for the upload benchmark: reads a request body and throws it away.

    python -m bench.receiver --port 0                 # discard the body
    python -m bench.receiver --port 0 --to /tmp/x     # write it to a file and fsync it

Standard library only (``http.server``, HTTP/1.1, so ``Expect: 100-continue`` is answered):
no multipart parsing, no hashing, no database. It reads ``Content-Length`` bytes in 1 MiB
blocks into one reused buffer, optionally writes them to a file (then fsyncs it), and
answers ``202`` with the byte count. It prints ``port <n>`` on stdout once it listens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def make_handler(sink: Path | None) -> type[BaseHTTPRequestHandler]:
    """A request handler class that drains each body (into ``sink`` when given)."""

    class Drain(BaseHTTPRequestHandler):
        """Reads the body of any POST and answers 202."""

        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            """Read Content-Length bytes, keep none of them, answer with the count."""
            remaining = int(self.headers.get("Content-Length") or 0)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            total = 0
            out: IO[bytes] | None = sink.open("wb") if sink else None
            try:
                while remaining > 0:
                    n = self.rfile.readinto(view[:min(CHUNK, remaining)])
                    if not n:
                        break
                    if out is not None:
                        out.write(view[:n])
                    remaining -= n
                    total += n
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if out is not None:
                    out.close()
            body = json.dumps({"received": total}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            """Health check: 200 ``ok``."""
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Silent: no per-request log lines."""

    return Drain


def main() -> None:
    """Command line: listen until killed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free one (printed)")
    ap.add_argument("--to", type=Path, default=None, help="write each body to this file (and fsync) instead of "
                                                          "discarding it")
    a = ap.parse_args()
    server = ThreadingHTTPServer((a.host, a.port), make_handler(a.to))
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdout.close()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
