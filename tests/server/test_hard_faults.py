"""Hard faults: a kill -9 mid-upload or mid-validation, a full disk, many SFTP sessions of one party at once.

Each leaves nothing behind that no live process owns, answers cleanly (507 in the JSON
shape, a plain SFTP failure), and never lets one session's work break another's.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest
from sqlalchemy import select

from exchange_server.runtime import janitor, open_runtime
from exchange_server.runtime.serve import Server
from exchange_server.setup_service import initialise
from exchange_server.sftp.keys import new_ed25519
from exchange_server.storage.scratch import owner_prefix
from exchange_server.submissions.models import Delivery
from province_agent.transport import HttpTransport
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.server.test_sftp import Province, judged
from tests.support.deliveries import valid_rows
from tests.support.ports import free_port as _free_port
from tests.support.waiting import wait_for

SERVE = """
import sys
from exchange_server.runtime import open_runtime
from exchange_server.runtime.serve import Server
rt = open_runtime({"data_dir": sys.argv[1], "database_url": sys.argv[2], "sftp_port": 0})
server = Server(rt, "127.0.0.1", int(sys.argv[3]), sftp_port=0).start(workers=0, sftp=False)
print("ready", flush=True)
server.wait()
"""


def test_a_kill_9_mid_upload_leaves_nothing_once_the_server_is_back(runtime: Any, setup: Setup, tmp_path: Path,
                                                                   database_url: str) -> None:
    token = setup.province("42")
    setup.cycle("202610")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(runtime.settings.data_dir), database_url, str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        filler = tmp_path / "filler.txt"
        filler.write_bytes(b"x" * (8 << 20))
        # Send headers and half the body, then kill the server hard mid-upload.
        body_head = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"P_42_202610_31201_00_002.txt\""
                     b"\r\nContent-Type: application/octet-stream\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"POST /api/v1/deliveries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                      + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 99999999\r\n\r\n"
                      + body_head)
            c.sendall(filler.read_bytes()[: 4 << 20])
            staging = runtime.archive.staging
            wait_for(lambda: any(staging.iterdir()) or None, timeout=30)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        left = sorted(p.name for p in staging.iterdir())
        assert left and all(n.startswith("in-") for n in left), left  # the debris a kill -9 leaves
    finally:
        if proc.poll() is None:
            proc.kill()
    # A validation scratch folder of a process that no longer exists, in the temp folder.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = Path(tempfile.gettempdir()) / f"{janitor.VALIDATION_KIND}-{owner_prefix('x').split('-')[1]}-" \
        f"{dead.stdout.strip()}-test"
    orphan.mkdir()
    (orphan / "kam-keys-1.sqlite").write_bytes(b"x")
    mine = Path(tempfile.mkdtemp(prefix=owner_prefix(janitor.VALIDATION_KIND)))  # a live process's: kept
    # The server comes back: its start-up sweep removes what the dead processes left, not what lives.
    server = Server(open_runtime(settings=runtime.settings), "127.0.0.1", 0, sftp_port=0).start(workers=1, sftp=False)
    try:
        wait_for(lambda: (not list(runtime.archive.staging.iterdir()) and not orphan.exists()) or None, timeout=30)
        assert mine.exists()
    finally:
        server.shutdown()
        mine.rmdir()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB file system (tmpfs) for a server's data: a full disk on demand."""
    mount = tmp_path / "small"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_a_clean_507_and_leaves_nothing(small_disk: Path, database_url: str, tmp_path: Path,
                                                      spec: Any) -> None:
    # The database off the small disk (SQLite in tmp_path, or the PostgreSQL server): the archive fills up.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if database_url.startswith("sqlite") else database_url
    rt = open_runtime({"data_dir": str(small_disk / "data"), "database_url": url, "sftp_port": 0,
                       "worker_poll_seconds": 0.05, "sftp_scan_seconds": 0.2})
    initialise(rt)
    setup = Setup(rt)
    setup.cycle("202610")
    token = setup.province("42")
    server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=1)
    try:
        http = HttpTransport(server.url, token)
        folder = valid_rows(spec).write(tmp_path / "d")
        (folder / "P_42_202610_31201_00_002.txt").write_bytes(b"x" * (8 << 20))  # more than the disk has
        status, body = _raw_upload(server.url, token, files_of(folder))
        assert status == 507, body
        assert body["code"] == "insufficient_storage" and body["status"] == 507 and body["message_zh"]
        assert list(rt.archive.staging.iterdir()) == []
        # Nothing was recorded; the server goes on answering, and a delivery that fits is accepted.
        (folder / "P_42_202610_31201_00_002.txt").unlink()
        status, receipt = http.upload(files_of(valid_rows(spec).write(tmp_path / "ok")))
        assert status == 202 and wait_final(http, receipt["delivery_id"])["status"] == "accepted"
        # Over SFTP: a plain failure for the file that does not fit, and nothing of it stays in the inbox.
        province = Province(server, setup, "42", tmp_path / "sftp", user="hubei-sftp")
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(8 << 20))
        r = province.sftp(f"cd inbox\nput {big} P_42_202610_31201_01_001.txt.part\n")
        assert r.returncode != 0 and "Connection closed" not in r.stderr, r.stderr
        inbox = rt.settings.sftp_root / "42" / "inbox"
        wait_for(lambda: not any(p for p in inbox.iterdir() if not p.name.startswith(".")) or None, timeout=20)
        assert list(rt.archive.staging.iterdir()) == []
        with rt.db.session() as s:
            assert len(s.scalars(select(Delivery)).all()) == 1
    finally:
        server.shutdown()


def _raw_upload(url: str, token: str, paths: list[Path]) -> tuple[int, Any]:
    """A multipart upload that returns the status and JSON of any answer (the transport raises on 5xx)."""
    import json
    import urllib.error
    import urllib.request
    import uuid

    boundary = "kam-" + uuid.uuid4().hex
    parts = []
    for p in paths:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{p.name}\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + p.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}/api/v1/deliveries", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_many_sftp_sessions_of_one_party_never_interfere(setup: Setup, live_server: Server, tmp_path: Path,
                                                         spec: Any, runtime: Any) -> None:
    setup.cycle("202610")
    setup.province("42", "prov42")
    private, public = new_ed25519()
    from exchange_server.accounts.services import AccountService

    with runtime.db.session() as s:
        svc = AccountService(s, "test")
        svc.add_ssh_key(svc.get("prov42"), public)
    key = paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(private.decode()))
    deliveries = [valid_rows(spec).write(tmp_path / f"d{i}", resend=i) for i in range(12)]
    errors: list[str] = []

    def session(folder: Path) -> None:
        t = paramiko.Transport(("127.0.0.1", live_server.sftp_port))
        try:
            t.connect(username="prov42", pkey=key)
            sftp = paramiko.SFTPClient.from_transport(t)
            assert sftp is not None
            names = sorted(p.name for p in folder.iterdir())
            names.sort(key=lambda n: n.endswith(".chk"))  # the check file last
            for n in names:
                for _ in range(3):  # the same names again and again: opens and renames interleave
                    sftp.put(str(folder / n), f"inbox/{n}.part", confirm=True)
                sftp.posix_rename(f"inbox/{n}.part", f"inbox/{n}")
            sftp.close()
        except (OSError, paramiko.SSHException) as exc:
            errors.append(f"{folder.name}: {exc!r}")
        finally:
            t.close()

    threads = [threading.Thread(target=session, args=(d,)) for d in deliveries]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=180)
    assert errors == []
    got = judged(live_server, len(deliveries))
    assert sorted(d.resend for d in got) == list(range(len(deliveries)))
    inbox = runtime.settings.sftp_root / "42" / "inbox"
    time.sleep(0.5)
    assert [p.name for p in inbox.iterdir() if not p.name.startswith(".")] == []


def test_serve_without_workers_requeues_what_a_killed_worker_held(runtime: Any, setup: Setup, tmp_path: Path,
                                                                  spec: Any) -> None:
    """A worker process killed mid-validation; the node restarts with ``serve --workers 0`` (workers elsewhere)."""
    from exchange_server.ingestion import queue
    from exchange_server.ingestion.models import IngestJob
    from tests.support.receiving import receive_folder

    setup.cycle("202610")
    setup.province("42")
    delivery_id = receive_folder(runtime, "prov42", valid_rows(spec).write(tmp_path / "d"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with runtime.db.session() as s:
        job = queue.claim(s, f"{socket.gethostname()}:{dead.stdout.strip()}:w0", 3600)  # held by a dead process
        assert job is not None and job.delivery_id == delivery_id
    server = Server(open_runtime(settings=runtime.settings), "127.0.0.1", 0, sftp_port=0).start(workers=0, sftp=False)
    try:
        with runtime.db.session() as s:
            job = s.scalar(select(IngestJob).where(IngestJob.delivery_id == delivery_id))
            assert job is not None and (job.state, job.locked_by) == ("queued", None)
    finally:
        server.shutdown()
