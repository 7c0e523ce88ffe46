"""The HTTP front against slow, idle and greedy clients, over real sockets to a live ``serve``.

SQLite only: what is tested here is the HTTP layer (cheroot, our connections and pool),
not the database.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from exchange_server.runtime import open_runtime
from exchange_server.runtime import serve as serve_module
from exchange_server.runtime.serve import Server
from exchange_server.setup_service import initialise
from tests.support.waiting import wait_for

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # a request line and one header, never finished


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a live server (HTTP only, no ingestion worker, no SFTP) with these settings."""
    started: list[Server] = []

    def start(**settings: Any) -> Server:
        rt = open_runtime({"data_dir": str(tmp_path / f"data{len(started)}"),
                           "database_url": f"sqlite:///{tmp_path / f'exchange{len(started)}.db'}",
                           "sftp_port": 0, **settings})
        initialise(rt)
        server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=0, sftp=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()


def healthz(server: Server, timeout: float = 1.0) -> float:
    """GET /healthz on a new connection; the seconds it took (fails unless 200 within ``timeout``)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
    finally:
        conn.close()
    return time.monotonic() - t0


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
    return int(lines[0].split()[1]), headers, body


def test_fifty_stalled_requests_do_not_stop_healthz_for_others(serve: Callable[..., Server]) -> None:
    server = serve()  # the defaults: 8 threads to start with, 15 s to send the headers
    stalled = [connect(server) for _ in range(50)]
    try:
        for s in stalled:
            s.sendall(PARTIAL)  # `(printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n'; sleep 30) | nc`
        time.sleep(0.5)  # each holds a request thread now
        took = [healthz(server, timeout=1.0) for _ in range(5)]
        assert max(took) < 1.0, took
        # ... and the stalled ones are still being waited for, not dropped.
        stalled[0].settimeout(0.1)
        with pytest.raises(socket.timeout):
            stalled[0].recv(1)
    finally:
        for s in stalled:
            s.close()


def test_silent_connections_cost_no_thread_and_do_not_stop_healthz(serve: Callable[..., Server]) -> None:
    server = serve()
    silent = [connect(server) for _ in range(50)]  # connected, nothing sent
    try:
        time.sleep(0.3)
        assert max(healthz(server) for _ in range(5)) < 1.0
        assert len(server.wsgi.requests._threads) == server.runtime.settings.http_threads  # the pool did not grow
    finally:
        for s in silent:
            s.close()


def test_the_pool_grows_while_no_thread_is_idle_and_shrinks_back(serve: Callable[..., Server],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "_SPARE_THREAD_IDLE", 0.5)  # spare threads end after 0.5 s idle
    server = serve(http_header_timeout=1)
    pool = server.wsgi.requests
    stalled = [connect(server) for _ in range(30)]
    for s in stalled:
        s.sendall(PARTIAL)
    wait_for(lambda: len(pool._threads) >= 30, timeout=5, what="a thread for each stalled request")
    for s in stalled:
        assert read_all(s).startswith(b"HTTP/1.1 408 ")  # the header deadline frees them
        s.close()
    wait_for(lambda: len(pool._threads) == 8, timeout=10, what="the pool back at http_threads")


def test_slowloris_is_cut_off_at_the_header_deadline_with_408(serve: Callable[..., Server]) -> None:
    server = serve(http_header_timeout=2)
    s = connect(server)
    s.sendall(PARTIAL)
    t0 = time.monotonic()
    s.settimeout(0.25)
    got = b""
    while time.monotonic() - t0 < 10:
        try:
            got = s.recv(65536)
            break
        except socket.timeout:
            try:
                s.sendall(b"X")  # one more header byte, never a line end
            except OSError:
                break
    cut_after = time.monotonic() - t0
    got += read_all(s)
    s.close()
    assert 1.5 < cut_after < 4, cut_after
    status, headers, body = answer(got)
    assert status == 408 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["code"] == "request_timeout" and doc["status"] == 408 and "2 s" in doc["message"]


def test_a_connection_that_never_speaks_is_closed_at_the_header_deadline(serve: Callable[..., Server]) -> None:
    server = serve(http_header_timeout=1)
    s = connect(server)
    t0 = time.monotonic()
    assert read_all(s) == b""
    assert 0.8 < time.monotonic() - t0 < 3


def test_sixteen_mib_of_header_gets_431_in_the_json_error_shape(serve: Callable[..., Server]) -> None:
    server = serve()
    s = connect(server)
    request = PARTIAL + b"X-Big: " + b"a" * (16 << 20) + b"\r\n\r\n"
    sender = threading.Thread(target=lambda: _send_quietly(s, request))
    sender.start()
    got = read_all(s)
    sender.join()
    s.close()
    status, headers, body = answer(got)
    assert status == 431, got[:200]
    assert headers["content-type"].startswith("application/json") and headers["connection"] == "close"
    doc = json.loads(body)
    assert doc["code"] == "header_too_large" and doc["status"] == 431
    assert doc["errors"] == {"limit": 65536} and "65536" in doc["message"] and doc["message_zh"]
    assert healthz(server) < 1.0  # and the server is none the worse


def test_headers_under_the_cap_are_fine(serve: Callable[..., Server]) -> None:
    server = serve()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/healthz", headers={"X-Big": "a" * 32000})
    assert conn.getresponse().status == 200
    conn.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server stopped reading once it had seen enough


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve: Callable[..., Server]) -> None:
    server = serve(http_idle_timeout=1)
    s = connect(server)
    for _ in range(2):  # kept alive: a second request on the same connection is served
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        status, headers, _ = answer(head)
        assert status == 200 and headers.get("connection") != "close"
        body = b""
        while len(body) < int(headers["content-length"]):
            body += s.recv(65536)
    t0 = time.monotonic()
    assert read_all(s) == b""  # closed by the server
    assert 0.8 < time.monotonic() - t0 < 3
    s.close()


def test_a_burst_of_64_concurrent_connections_gets_no_reset(serve: Callable[..., Server]) -> None:
    server = serve()
    body = b"x" * (256 << 10)  # each request holds its thread a little while the body arrives
    barrier = threading.Barrier(64)
    results: list[Any] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            conn.request("POST", "/api/v1/deliveries", body=body,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
            result: Any = conn.getresponse().status
        except OSError as exc:
            result = exc
        finally:
            conn.close()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [401] * 64, [r for r in results if r != 401]  # every one answered (no token: 401)
