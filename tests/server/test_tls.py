"""HTTPS: served by ``serve`` itself, and by a real nginx in front (docs/deploying.md's configuration).

Certificates are made per test session by tests/support/tls.py (a throwaway CA and a server
certificate for 127.0.0.1 and localhost). SQLite only: what is tested is the HTTP front.
nginx is installed by scripts/test; without it the nginx tests skip, or fail under CI.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from exchange_server.runtime import open_runtime
from exchange_server.runtime.serve import Server
from exchange_server.setup_service import initialise
from province_agent._exceptions import ConfigError
from province_agent.config import load_config
from province_agent.transport import HttpTransport, multipart_body
from province_agent.transport.http import CertificateError
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import valid_rows
from tests.support.nginx import Nginx, find_nginx, start_nginx
from tests.support.tls import Pki, make_pki
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """HQ's throwaway CA and the server certificate it issued."""
    return make_pki(tmp_path_factory.mktemp("pki"), "hq")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA, which did not issue the server's certificate."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), "other")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a live server (one ingestion worker, no SFTP) with these settings."""
    started: list[Server] = []

    def start(**settings: Any) -> Server:
        n = len(started)
        rt = open_runtime({"data_dir": str(tmp_path / f"data{n}"), "database_url": f"sqlite:///{tmp_path}/x{n}.db",
                           "sftp_port": 0, "worker_poll_seconds": 0.05, **settings})
        initialise(rt)
        server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=1, sftp=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()


def https_get(url: str, path: str, ca: Path, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET over HTTPS trusting ``ca``; the response, body read."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=str(ca)))
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def http_get(server: Server, path: str, headers: dict[str, str] | None = None,
             source: str | None = None) -> http.client.HTTPResponse:
    """GET over plain HTTP, from ``source`` (a loopback address) when given."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10,
                                      source_address=(source, 0) if source else None)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def session_cookie(resp: http.client.HTTPResponse) -> str:
    """The Set-Cookie header of the page session (the sign-in form starts one for its CSRF token)."""
    cookies = [c for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith("kam_session=")]
    assert len(cookies) == 1, resp.headers
    return cookies[0]


def is_secure(cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in cookie.split(";")]


# -- HTTPS served by `serve` ----------------------------------------------------------------------
@pytest.fixture
def tls_server(serve: Callable[..., Server], pki: Pki) -> Server:
    return serve(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), http_header_timeout=2)


def test_the_agent_uploads_over_https_verifying_against_the_configured_ca(tls_server: Server, pki: Pki,
                                                                          tmp_path: Path, spec: Any) -> None:
    assert tls_server.url.startswith("https://")
    setup = Setup(tls_server.runtime)
    setup.cycle("202610")
    hubei = HttpTransport(tls_server.url, setup.province("42"), ca_file=str(pki.ca_cert))
    status, receipt = hubei.upload(files_of(valid_rows(spec).write(tmp_path / "d")))
    assert status == 202
    assert wait_final(hubei, receipt["delivery_id"])["status"] == "accepted"


@pytest.mark.parametrize("trust", ["another CA", "the system's trust store"])
def test_the_agent_refuses_a_certificate_its_ca_did_not_issue(tls_server: Server, other_pki: Pki,
                                                              trust: str) -> None:
    ca = str(other_pki.ca_cert) if trust == "another CA" else None
    http = HttpTransport(tls_server.url, "kam_x", ca_file=ca)
    with pytest.raises(CertificateError) as err:
        http.calendar()
    message = str(err.value)
    assert "certificate" in message and "could not be verified" in message and "server.ca_file" in message
    assert (str(other_pki.ca_cert) if ca else "the system's trusted CAs") in message
    assert not isinstance(err.value, HttpTransport.transient)  # not retried: it will not heal


def test_the_agent_checks_the_host_name_too(serve: Callable[..., Server], tmp_path: Path) -> None:
    # A certificate from the trusted CA, but for another name than the one the agent dialled.
    named = make_pki(tmp_path / "named", "named", hosts=("hq.example",))
    server = serve(tls_cert=str(named.server_cert), tls_key=str(named.server_key))
    with pytest.raises(CertificateError, match="could not be verified.*(mismatch|match)"):
        HttpTransport(server.url, "kam_x", ca_file=str(named.ca_cert)).calendar()


def test_agent_ca_file_is_relative_to_its_configuration_and_must_exist(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "hq-ca.pem").write_bytes(pki.ca_cert.read_bytes())
    conf = tmp_path / "kam-agent.toml"
    conf.write_text('[agent]\nparty = "42"\nstate_dir = "s"\nexport_dir = "e"\n'
                    '[server]\nurl = "https://127.0.0.1:1"\ntoken_file = "token"\nca_file = "hq-ca.pem"\n')
    assert load_config(conf).ca_file == str(tmp_path / "hq-ca.pem")
    conf.write_text(conf.read_text().replace("hq-ca.pem", "missing.pem"))
    with pytest.raises(ConfigError, match="server.ca_file .*missing.pem does not exist"):
        load_config(conf)


def test_over_https_the_session_cookie_is_secure_and_hsts_is_sent(tls_server: Server, pki: Pki) -> None:
    resp = https_get(tls_server.url, "/login", pki.ca_cert)
    assert resp.status == 200
    assert is_secure(session_cookie(resp))
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    api = https_get(tls_server.url, "/api/v1/cycles", pki.ca_cert)  # the API's answers too, errors included
    assert api.status == 401 and api.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_over_plain_http_no_secure_cookie_and_no_hsts(serve: Callable[..., Server]) -> None:
    resp = http_get(serve(), "/login")
    assert resp.status == 200
    assert not is_secure(session_cookie(resp))
    assert "Strict-Transport-Security" not in resp.headers


def test_plain_http_to_the_https_port_is_told_to_use_https(tls_server: Server) -> None:
    s = socket.create_connection((tls_server.host, tls_server.port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert "https://" in json.loads(body)["message"]


def test_silent_tls_clients_do_not_block_the_accept_loop_and_are_dropped(tls_server: Server, pki: Pki) -> None:
    # cheroot's own TLS adapter shakes hands in the accept loop: one silent client stalls everyone.
    silent = [socket.create_connection((tls_server.host, tls_server.port), timeout=10) for _ in range(20)]
    try:
        t0 = time.monotonic()
        assert https_get(tls_server.url, "/healthz", pki.ca_cert).status == 200
        assert time.monotonic() - t0 < 1.0
        silent[0].settimeout(5)
        assert silent[0].recv(1) == b""  # closed at the header deadline (2 s here), handshake never begun
    finally:
        for s in silent:
            s.close()


# -- behind nginx ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nginx_binary() -> Path:
    """nginx, or a skip (a failure under CI: scripts/test installs it)."""
    found = find_nginx()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; scripts/test installs it (apt-get install nginx)")
        pytest.skip("nginx not found (install nginx; scripts/test does)")
    return found


@pytest.fixture
def proxied(serve: Callable[..., Server], nginx_binary: Path, pki: Pki,
            tmp_path: Path) -> Iterator[tuple[Server, Nginx]]:
    """A plain-HTTP server trusting 127.0.0.1, behind nginx terminating TLS on 127.0.0.1."""
    server = serve(trusted_proxies="127.0.0.1")
    nginx = start_nginx(nginx_binary, tmp_path / "nginx", pki.server_cert, pki.server_key, server.port)
    yield server, nginx
    nginx.stop()


def test_an_upload_streams_through_nginx_and_is_accepted(proxied: tuple[Server, Nginx], pki: Pki, tmp_path: Path,
                                                        spec: Any) -> None:
    server, nginx = proxied
    setup = Setup(server.runtime)
    setup.cycle("202610")
    token = setup.province("42")
    # By hand first: headers and three quarters of the body only (more than the server's 1 MiB
    # read size). The server must already be writing the data file into its staging area,
    # which it cannot if nginx spools the body before passing it on.
    files = files_of(valid_rows(spec, customers=6000).write(tmp_path / "big"))
    parts, length = multipart_body(files, "kam-stream-test")
    body = b"".join(p if isinstance(p, bytes) else p.read_bytes() for p in parts)
    assert length == len(body) > 1 << 20
    raw = ssl.create_default_context(cafile=str(pki.ca_cert)).wrap_socket(
        socket.create_connection(("127.0.0.1", nginx.https_port), timeout=30), server_hostname="127.0.0.1")
    raw.sendall(f"POST /api/v1/deliveries HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary=kam-stream-test\r\nContent-Length: {length}\r\n"
                "\r\n".encode() + body[:length * 3 // 4])
    staging = server.runtime.archive.staging
    wait_for(lambda: any(p.stat().st_size > 0 for p in staging.iterdir()), timeout=10,
             what="the first part of the body to reach the server through nginx")
    raw.sendall(body[length * 3 // 4:])
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = raw.recv(65536)
        if not chunk:
            break
        answer += chunk
    raw.close()
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
    # Then the agent, as provinces run it, through nginx with HQ's CA.
    hubei = HttpTransport(nginx.url, token, ca_file=str(pki.ca_cert))
    status, receipt = hubei.upload(files_of(valid_rows(spec).write(tmp_path / "d", resend=1)))
    assert status == 202
    assert wait_final(hubei, receipt["delivery_id"])["status"] == "accepted"


def test_forwarded_proto_from_the_trusted_proxy_makes_cookies_secure(proxied: tuple[Server, Nginx],
                                                                     pki: Pki) -> None:
    _server, nginx = proxied
    resp = https_get(nginx.url, "/login", pki.ca_cert)
    assert resp.status == 200
    assert is_secure(session_cookie(resp))
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    # nginx's own plain-HTTP port sends everyone to HTTPS.
    conn = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
    conn.request("GET", "/login")
    redirect = conn.getresponse()
    assert redirect.status == 301 and redirect.headers["Location"].startswith("https://")
    conn.close()


def test_forwarded_proto_from_an_untrusted_client_is_ignored(proxied: tuple[Server, Nginx]) -> None:
    server, _nginx = proxied
    claim = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    # Straight to serve from 127.0.0.2, which is not in trusted_proxies: the claim is dropped.
    resp = http_get(server, "/login", claim, source="127.0.0.2")
    assert not is_secure(session_cookie(resp)) and "Strict-Transport-Security" not in resp.headers
    # The same claim from 127.0.0.1, the configured proxy, is believed.
    resp = http_get(server, "/login", claim, source="127.0.0.1")
    assert is_secure(session_cookie(resp)) and "Strict-Transport-Security" in resp.headers


def test_settings_refuse_half_a_tls_configuration(tmp_path: Path, pki: Pki) -> None:
    from exchange_server.config import load_settings
    from exchange_server.errors import ConfigError as ServerConfigError

    with pytest.raises(ServerConfigError, match="tls_cert and tls_key go together"):
        load_settings({"data_dir": str(tmp_path), "tls_cert": str(pki.server_cert)}, environ={})
    with pytest.raises(ServerConfigError, match="trusted_proxies"):
        load_settings({"data_dir": str(tmp_path)}, environ={"KAM_TRUSTED_PROXIES": "10.0.0.0/33"})
    s = load_settings({"data_dir": str(tmp_path)}, environ={"KAM_TLS_CERT": str(pki.server_cert),
                                                             "KAM_TLS_KEY": str(pki.server_key)})
    assert s.tls and s.tls_key == str(pki.server_key)
