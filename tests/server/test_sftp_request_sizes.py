"""Request sizes on the embedded SFTP server: OpenSSH's ``sftp -B``/``-R``, ``limits@openssh.com``, caps.

OpenSSH's client and server take SFTP messages of at most 256 KiB. Before the server shortened
READs, ``sftp -B 262144`` downloads died with "Received message too long 262153" (our DATA
reply carried all 262,144 bytes asked for). Uploads with ``-B 262144`` cannot work against any
server: the client itself refuses to send a 262,144-byte WRITE plus its header ("Outbound
message too long"), against OpenSSH's own sshd just the same; the tests pin that down.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest
from paramiko.sftp import CMD_READ, CMD_WRITE
from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.runtime.serve import Server
from exchange_server.sftp.keys import host_key_line, new_ed25519
from exchange_server.sftp.protocol import (
    MAX_ACCEPTED_LENGTH, MAX_OPEN_HANDLES, MAX_PACKET_LENGTH, MAX_READ_LENGTH, MAX_WRITE_LENGTH,
)
from exchange_server.submissions.models import Delivery, DeliveryFile
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows
from tests.support.waiting import wait_for

SFTP = shutil.which("sftp")
pytestmark = pytest.mark.skipif(SFTP is None and not os.environ.get("CI"),
                                reason="OpenSSH client not installed (scripts/test installs it)")

BLOB = 8 * 1024 * 1024 + 12345  # many full requests of every size, and a short one at the end


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: request sizes are the SFTP layer's business, not the database's."""
    return f"sqlite:///{tmp_path / 'exchange.db'}"


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Client:
    """Province 42 with a registered key, talking to the embedded server with OpenSSH's sftp."""

    def __init__(self, server: Server, setup: Setup, home: Path) -> None:
        self.server = server
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        setup.province("42", "prov42")
        private, public = new_ed25519()
        self.public = public
        self.key = home / "id_ed25519"
        self.key.write_bytes(private)
        self.key.chmod(0o600)
        with server.runtime.db.session() as s:
            svc = AccountService(s, "test")
            svc.add_ssh_key(svc.get("prov42"), public)
        self.known_hosts = home / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{server.sftp_port} {host_key_line(server.runtime.settings)}\n")
        self.inbox = server.sftp.tree.ensure("42") / "inbox"

    def sftp(self, commands: str, *options: str) -> subprocess.CompletedProcess[str]:
        """OpenSSH sftp in batch mode with extra options (``-B``, ``-R``, ``-vvv``); host key checked strictly."""
        return subprocess.run(
            [SFTP or "sftp", *options, "-b", "-", "-P", str(self.server.sftp_port), "-i", str(self.key),
             "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "prov42@127.0.0.1"],
            input=commands, capture_output=True, text=True, timeout=120, cwd=self.home)

    def paramiko(self) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
        """A paramiko SFTP session (for requests OpenSSH's client will not make)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", self.server.sftp_port, "prov42", key_filename=str(self.key),
                       look_for_keys=False, allow_agent=False, timeout=30)
        return client, client.open_sftp()


def openssh_version() -> tuple[int, int]:
    """The OpenSSH client's (major, minor) version, from ``ssh -V``."""
    out = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def sizes(buflen: int, requests: int | None) -> tuple[str, ...]:
    """The sftp options for a request size and count."""
    return ("-B", str(buflen), *(("-R", str(requests)) if requests else ()))


@pytest.fixture
def hubei(setup: Setup, live_server: Server, tmp_path: Path) -> Iterator[Client]:
    setup.cycle("202610")
    yield Client(live_server, setup, tmp_path / "hubei")


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    """Random bytes (no compression or pattern can hide a lost or reordered block)."""
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(BLOB))
    return path


# -- the delivery, both ways, at each request size ------------------------------------------------
@pytest.mark.parametrize("buflen,requests", [(32768, None), (131072, None), (261120, None), (261120, 256),
                                             (32768, 1)])
def test_delivery_up_and_down_at_request_size(hubei: Client, tmp_path: Path, spec: Any, buflen: int,
                                              requests: int | None) -> None:
    folder = valid_rows(spec, customers=6000).write(tmp_path / "d")  # the largest file is about 1.2 MB
    data = sorted(p for p in folder.iterdir() if not p.name.endswith(".chk"))
    check = next(p for p in folder.iterdir() if p.name.endswith(".chk"))
    opts = sizes(buflen, requests)
    cmds = "cd inbox\n" + "".join(f"put {p} {p.name}.part\nrename {p.name}.part {p.name}\n" for p in data)
    r = hubei.sftp(cmds, *opts)
    assert r.returncode == 0, r.stderr
    # Data files wait for their check file: read them back through the server first.
    back = tmp_path / "back"
    back.mkdir()
    r = hubei.sftp("".join(f"get inbox/{p.name} {back / p.name}\n" for p in data), *opts)
    assert r.returncode == 0, r.stderr
    assert {p.name: sha256(back / p.name) for p in data} == {p.name: sha256(p) for p in data}
    r = hubei.sftp(f"cd inbox\nput {check} {check.name}.part\nrename {check.name}.part {check.name}\n", *opts)
    assert r.returncode == 0, r.stderr

    def taken() -> Delivery | None:
        with hubei.server.runtime.db.session() as s:
            d = s.scalars(select(Delivery)).first()
            return d if d is not None and d.is_final else None

    d = wait_for(taken, what="the delivery to be taken and judged")
    assert (d.channel, d.status) == ("sftp", "accepted")
    with hubei.server.runtime.db.session() as s:
        archived = {f.name: (f.size, f.sha256) for f in s.scalars(select(DeliveryFile).where(
            DeliveryFile.delivery_id == d.id))}
    assert archived == {p.name: (p.stat().st_size, sha256(p)) for p in [*data, check]}
    # emptied of files (the hidden .writers folder, where the server notes who wrote what, stays)
    wait_for(lambda: not any(p for p in hubei.inbox.iterdir() if not p.name.startswith(".")), 20,
             "the inbox to be emptied")


# -- 256 KiB requests -----------------------------------------------------------------------------
@pytest.mark.parametrize("requests", [None, 256])
def test_downloads_with_256_KiB_requests(hubei: Client, blob: Path, tmp_path: Path, requests: int | None) -> None:
    # Uploaded with the client's default, i.e. the size we advertise (the .part name keeps the
    # scanner away); read back asking for 262,144 bytes a time: each answer is shortened to
    # MAX_READ_LENGTH and the client asks again for the rest.
    r = hubei.sftp(f"put {blob} inbox/blob.bin.part\n")
    assert r.returncode == 0, r.stderr
    r = hubei.sftp(f"get inbox/blob.bin.part {tmp_path / 'back.bin'}\n", *sizes(262144, requests))
    assert r.returncode == 0, r.stderr  # before: "Received message too long 262153"
    assert sha256(tmp_path / "back.bin") == sha256(blob)


def _put_256_KiB(run: Any, blob: Path, remote: str) -> subprocess.CompletedProcess[str]:
    return run(f"put {blob} {remote}\n", "-B", "262144")


def test_uploads_with_256_KiB_requests_fail_in_the_client_as_against_openssh(hubei: Client, blob: Path) -> None:
    r = _put_256_KiB(hubei.sftp, blob, "inbox/big.bin.part")
    if r.returncode == 0:  # a client that splits or shrinks its requests: then the bytes must be intact
        assert sha256(hubei.inbox / "big.bin.part") == sha256(blob)
        return
    # OpenSSH's client checks its own 256 KiB limit before sending anything; not our refusal.
    assert re.search(r"Outbound message too long 2621\d\d", r.stderr), r.stderr
    assert "Received message too long" not in r.stderr
    # The server is unharmed: the next session works, and at most the empty file was created.
    r = hubei.sftp("ls -l inbox\n")
    assert r.returncode == 0, r.stderr
    assert (hubei.inbox / "big.bin.part").stat().st_size == 0
    # OpenSSH's own server gets the same from the same client (when one can be run here).
    from tests.support.sshd import OpenSshServer, find_sshd

    if find_sshd() is None or os.geteuid() != 0:
        return
    with OpenSshServer(hubei.home / "sshd", [hubei.public]) as sshd:
        sshd.mkdir("inbox")
        known = hubei.home / "known_hosts.sshd"
        known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
        ref = subprocess.run(
            [SFTP or "sftp", "-B", "262144", "-b", "-", "-P", str(sshd.port), "-i", str(hubei.key),
             "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "root@127.0.0.1"],
            input=f"put {blob} inbox/big.bin\n", capture_output=True, text=True, timeout=120)
    assert ref.returncode != 0 and re.search(r"Outbound message too long 2621\d\d", ref.stderr), ref.stderr


def test_the_client_uses_the_limits_we_advertise(hubei: Client, blob: Path, tmp_path: Path) -> None:
    r = hubei.sftp(f"put {blob} inbox/blob.bin.part\nget inbox/blob.bin.part {tmp_path / 'back.bin'}\n", "-vvv")
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / "back.bin") == sha256(blob)
    if openssh_version() < (8, 7):
        pytest.skip("this OpenSSH client does not know limits@openssh.com (8.7 and later do)")
    assert MAX_WRITE_LENGTH == MAX_READ_LENGTH == MAX_PACKET_LENGTH - 1024 == 261120
    m = re.search(r"server upload/download buffer sizes (\d+) / (\d+); using (\d+) / (\d+)", r.stderr)
    assert m is not None, r.stderr[-3000:]
    assert [int(x) for x in m.groups()] == [MAX_WRITE_LENGTH, MAX_READ_LENGTH, MAX_WRITE_LENGTH, MAX_READ_LENGTH]


# -- what we refuse, cleanly --------------------------------------------------------------------------
def test_a_request_over_the_limit_is_refused_and_the_session_goes_on(hubei: Client) -> None:
    client, sftp = hubei.paramiko()
    try:
        f = sftp.open("inbox/big.bin.part", "wb")
        # Over what we advertise but under what we accept (clients that never ask): written.
        one_mib = os.urandom(1024 * 1024)
        sftp._request(CMD_WRITE, f.handle, paramiko.sftp.int64(0), one_mib)
        # Over what we accept: discarded as it arrives, answered with a failure.
        too_big = b"x" * (MAX_ACCEPTED_LENGTH + 1)
        with pytest.raises(IOError, match="Request too long"):
            sftp._request(CMD_WRITE, f.handle, paramiko.sftp.int64(len(one_mib)), too_big)
        f.close()
        assert sftp.stat("inbox/big.bin.part").st_size == len(one_mib)  # the refused bytes never landed
        # READs asking for more than we advertise get a short answer, as from OpenSSH's server.
        g = sftp.open("inbox/big.bin.part", "rb")
        _, msg = sftp._request(CMD_READ, g.handle, paramiko.sftp.int64(0), 1024 * 1024)
        data = msg.get_string()
        assert len(data) == MAX_READ_LENGTH and data == one_mib[:MAX_READ_LENGTH]
        g.close()
        assert "big.bin.part" in sftp.listdir("inbox")  # the same session still works
    finally:
        client.close()
    assert client.get_transport() is None or not client.get_transport().is_active()
    r = hubei.sftp("ls inbox\n")  # and so does the server
    assert r.returncode == 0 and "big.bin.part" in r.stdout, r.stderr


def test_open_handles_are_capped_per_session(hubei: Client) -> None:
    (hubei.inbox / "small.txt.part").write_bytes(b"x")
    client, sftp = hubei.paramiko()
    try:
        files = [sftp.open("inbox/small.txt.part", "rb") for _ in range(MAX_OPEN_HANDLES)]
        with pytest.raises(IOError, match="Too many open handles"):
            sftp.open("inbox/small.txt.part", "rb")
        files.pop().close()
        sftp.open("inbox/small.txt.part", "rb").close()  # one closed, one more may open
        for f in files:
            f.close()
    finally:
        client.close()
