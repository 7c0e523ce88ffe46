"""The embedded SFTP server driven by the real OpenSSH ``sftp`` client, in batch mode.

Same pipeline as HTTP: archive, receipt, queue, verdict; receipts and feedback files come
back through the province's outbox.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import func, select

from exchange_server.accounts.services import AccountService
from exchange_server.sftp.keys import new_ed25519
from exchange_server.runtime.serve import Server
from exchange_server.sftp.keys import host_key_line
from exchange_server.submissions.models import Delivery
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows
from tests.support.waiting import wait_for

SFTP = shutil.which("sftp")
pytestmark = pytest.mark.skipif(SFTP is None and not os.environ.get("CI"),
                                reason="OpenSSH client not installed (scripts/test installs it)")


class Province:
    """A province with an SSH key, talking to the embedded server with OpenSSH's sftp."""

    def __init__(self, server: Server, setup: Setup, party: str, home: Path, user: str | None = None) -> None:
        self.server = server
        self.user = user or f"prov{party}"
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        setup.province(party, self.user)
        private, public = new_ed25519()
        self.key = home / "id_ed25519"
        self.key.write_bytes(private)
        self.key.chmod(0o600)
        with server.runtime.db.session() as s:
            svc = AccountService(s, "test")
            svc.add_ssh_key(svc.get(self.user), public)
        (home / "known_hosts").write_text(f"[127.0.0.1]:{server.sftp_port} {host_key_line(server.runtime.settings)}\n")

    def sftp(self, commands: str, user: str | None = None, key: Path | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run OpenSSH sftp in batch mode; host key checked strictly against our known_hosts."""
        return subprocess.run(
            [SFTP or "sftp", "-b", "-", "-P", str(self.server.sftp_port), "-i", str(key or self.key),
             "-o", f"UserKnownHostsFile={self.home / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
             f"{user or self.user}@127.0.0.1"],
            input=commands, capture_output=True, text=True, timeout=120, cwd=cwd or self.home)


def deliveries(server: Server) -> list[Delivery]:
    with server.runtime.db.session() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def judged(server: Server, n: int = 1) -> list[Delivery]:
    return wait_for(lambda: (lambda ds: ds if len(ds) >= n and all(d.is_final for d in ds) else None)(
        deliveries(server)))


@pytest.fixture
def hubei(setup: Setup, live_server: Server, tmp_path: Path) -> Iterator[Province]:
    setup.cycle("202610")
    yield Province(live_server, setup, "42", tmp_path / "hubei")


def test_upload_with_temporary_names_then_receipt_and_feedback(hubei: Province, tmp_path: Path, spec: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    data = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".chk"))
    check = next(p.name for p in folder.iterdir() if p.name.endswith(".chk"))
    cmds = ["cd inbox"] + [f"put {folder / n} {n}.part\nrename {n}.part {n}" for n in data]
    cmds += [f"put {folder / check} {check}.part", f"rename {check}.part {check}", "ls -1"]
    r = hubei.sftp("\n".join(cmds) + "\n")
    assert r.returncode == 0, r.stderr
    [d] = judged(hubei.server)
    assert (d.channel, d.status, d.check_name) == ("sftp", "accepted", "P_42_202610_00")
    outbox = tmp_path / "got"
    outbox.mkdir()
    r = hubei.sftp("cd outbox\nls -1\nget P_42_202610_00.rct.xml\nget P_42_202610_00.fbf.xml\n", cwd=outbox)
    assert r.returncode == 0, r.stderr
    assert b"<DeliveryId>%d</DeliveryId>" % d.id in (outbox / "P_42_202610_00.rct.xml").read_bytes()
    assert b"<Status>accepted</Status>" in (outbox / "P_42_202610_00.fbf.xml").read_bytes()
    listing = hubei.sftp("ls -1 inbox\n").stdout
    assert check not in listing and not any(n in listing for n in data)  # taken out of the inbox


def test_direct_uploads_wait_for_a_matching_check_file(hubei: Province, tmp_path: Path, spec: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    data = sorted(p for p in folder.iterdir() if not p.name.endswith(".chk"))
    check = next(p for p in folder.iterdir() if p.name.endswith(".chk"))
    r = hubei.sftp("cd inbox\n" + "".join(f"put {p} {p.name}\n" for p in data))
    assert r.returncode == 0, r.stderr
    time.sleep(1.0)
    assert deliveries(hubei.server) == []  # data files alone are not a delivery
    r = hubei.sftp(f"cd inbox\nput {check} {check.name}\n")
    assert r.returncode == 0, r.stderr
    [d] = judged(hubei.server)
    from exchange_server.submissions.models import DeliveryFile

    with hubei.server.runtime.db.session() as s:
        n_files = s.scalar(select(func.count()).select_from(DeliveryFile).where(DeliveryFile.delivery_id == d.id))
    assert d.status == "accepted" and n_files == 7
    time.sleep(0.5)
    assert len(deliveries(hubei.server)) == 1  # taken once


def test_incomplete_and_interrupted_uploads_never_become_deliveries(setup: Setup, runtime: Any, tmp_path: Path,
                                                                     spec: Any) -> None:
    from dataclasses import replace

    runtime.settings = replace(runtime.settings, sftp_complete_wait_seconds=2)
    setup.cycle("202610")
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=1)
    try:
        p = Province(server, setup, "42", tmp_path / "hubei")
        rows = valid_rows(spec, customers=400)
        folder = rows.write(tmp_path / "d")
        check = next(x for x in folder.iterdir() if x.name.endswith(".chk"))
        big = max((x for x in folder.iterdir() if x != check), key=lambda x: x.stat().st_size)
        cut = tmp_path / "cut" / big.name
        cut.parent.mkdir()
        cut.write_bytes(big.read_bytes()[: big.stat().st_size // 2])  # what a dropped session leaves
        others = [x for x in folder.iterdir() if x not in (check, big)]
        cmds = "cd inbox\n" + "".join(f"put {x} {x.name}\n" for x in others)
        cmds += f"put {cut} {big.name}\nput {big} {big.name}.part\nput {folder / check.name} {check.name}\n"
        r = p.sftp(cmds)
        assert r.returncode == 0, r.stderr
        note = p.home / "note"
        note.mkdir()
        wait_for(lambda: p.sftp("get outbox/P_42_202610_00.incomplete.txt\n", cwd=note).returncode == 0, 20)
        text = (note / "P_42_202610_00.incomplete.txt").read_text()
        assert "E106" in text and big.name in text and "not ingested" in text
        assert deliveries(server) == []
        assert check.name not in p.sftp("ls -1 inbox\n").stdout  # set aside, not offered again
    finally:
        server.shutdown()


def test_a_killed_sftp_session_leaves_nothing_ingested(hubei: Province, tmp_path: Path, spec: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    check = next(x for x in folder.iterdir() if x.name.endswith(".chk"))
    big = tmp_path / "P_42_202610_31203_00_002.txt"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    proc = subprocess.Popen(
        [SFTP or "sftp", "-b", "-", "-l", "4000", "-P", str(hubei.server.sftp_port), "-i", str(hubei.key),
         "-o", f"UserKnownHostsFile={hubei.home / 'known_hosts'}", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", f"{hubei.user}@127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write(f"cd inbox\nput {check} {check.name}\nput {big} {big.name}\n")
    proc.stdin.close()
    time.sleep(2.0)
    proc.kill()
    proc.wait()
    time.sleep(1.0)
    assert deliveries(hubei.server) == []  # the check file alone does not match what arrived


def test_provinces_cannot_see_or_touch_each_others_trees(hubei: Province, setup: Setup, tmp_path: Path,
                                                         spec: Any) -> None:
    gd = Province(hubei.server, setup, "44", tmp_path / "gd")
    secret = tmp_path / "secret.txt"
    secret.write_text("湖北的数据")
    assert hubei.sftp(f"put {secret} inbox/secret.txt\n").returncode == 0
    for cmd in ("ls /../42/inbox", "ls ../42/inbox", "get ../42/inbox/secret.txt", "get /42/inbox/secret.txt",
                f"put {secret} ../42/inbox/x.txt", f"put {secret} /../../42/inbox/x.txt", "rm ../42/inbox/secret.txt",
                "rename inbox/a ../42/inbox/a"):
        r = gd.sftp(cmd + "\n")
        assert r.returncode != 0, cmd
    assert "secret.txt" not in gd.sftp("ls -1 inbox\n").stdout
    assert "secret.txt" in hubei.sftp("ls -1 inbox\n").stdout
    # Hubei's key cannot log in as Guangdong.
    r = hubei.sftp("ls\n", user="prov44")
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_unknown_key_refused_and_no_writes_outside_the_inbox(hubei: Province, tmp_path: Path) -> None:
    private, _ = new_ed25519()
    stranger = tmp_path / "stranger"
    stranger.write_bytes(private)
    stranger.chmod(0o600)
    r = hubei.sftp("ls\n", key=stranger)
    assert r.returncode != 0 and "Permission denied (publickey)" in r.stderr
    f = tmp_path / "x.txt"
    f.write_text("x")
    for cmd in (f"put {f} outbox/x.txt", f"put {f} x.txt", "mkdir inbox/sub", "symlink /etc/passwd inbox/pw",
                f"put {f} inbox/.hidden"):
        assert hubei.sftp(cmd + "\n").returncode != 0, cmd


def test_file_over_the_cap_is_refused(setup: Setup, runtime: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    runtime.settings = replace(runtime.settings, max_file_size=100_000)
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=0)
    try:
        p = Province(server, setup, "42", tmp_path / "hubei")
        big = tmp_path / "P_42_202610_31201_00_001.txt"
        big.write_bytes(b"x" * 300_000)
        r = p.sftp(f"put {big} inbox/{big.name}\n")
        assert r.returncode != 0
    finally:
        server.shutdown()


def test_account_quota_and_password_login_off_by_default(setup: Setup, runtime: Any, tmp_path: Path) -> None:
    import paramiko

    from dataclasses import replace

    runtime.settings = replace(runtime.settings, sftp_quota_bytes=50_000)
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=0)
    try:
        p = Province(server, setup, "42", tmp_path / "hubei")
        with runtime.db.session() as s:
            svc = AccountService(s, "test")
            svc.set_password(svc.get("prov42"), "correct-horse-battery")
        chunk = tmp_path / "a.txt"
        chunk.write_bytes(b"x" * 40_000)
        assert p.sftp(f"put {chunk} inbox/a.txt\nput {chunk} inbox/b.txt\n").returncode == 0  # under the quota
        assert p.sftp(f"put {chunk} inbox/c.txt\n").returncode != 0  # 80 kB waiting: over 50 kB
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        with pytest.raises(paramiko.AuthenticationException):
            client.connect("127.0.0.1", server.sftp_port, "prov42", password="correct-horse-battery",
                           look_for_keys=False, allow_agent=False)
        client.close()
    finally:
        server.shutdown()
    runtime.settings = replace(runtime.settings, sftp_password_auth=True)
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=0)
    try:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", server.sftp_port, "prov42", password="correct-horse-battery",
                       look_for_keys=False, allow_agent=False)
        assert "a.txt" in client.open_sftp().listdir("inbox")
        client.close()
        with pytest.raises(paramiko.AuthenticationException):
            client.connect("127.0.0.1", server.sftp_port, "prov42", password="wrong", look_for_keys=False,
                           allow_agent=False)
    finally:
        server.shutdown()
