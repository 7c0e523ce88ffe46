"""Drop-box mode: provinces upload to a real OpenSSH sshd (chroot, internal-sftp); the exchange
server watches the inbox folders and answers in the outbox folders."""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from exchange_server.sftp.keys import new_ed25519
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows
from tests.support.sshd import OpenSshServer, require_sshd


@pytest.fixture
def dropbox(setup: Setup, runtime: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """sshd serving province 42's chroot, which is <dropbox_root>/42 for the exchange server."""
    require_sshd()
    private, public = new_ed25519()
    key = tmp_path / "id_ed25519"
    key.write_bytes(private)
    key.chmod(0o600)
    sshd = OpenSshServer(tmp_path / "sshd", [public]).start()
    sshd.mkdir("inbox")
    sshd.mkdir("outbox")
    root = tmp_path / "dropbox"
    root.mkdir()
    (root / "42").symlink_to(sshd.chroot)  # the operator's layout: <root>/<party> is the chroot
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
    runtime.settings = replace(runtime.settings, dropbox_root=str(root), sftp_scan_seconds=0.2)
    setup.cycle("202610")
    setup.province("42")
    server = Server(runtime, "127.0.0.1", 0).start(workers=1, sftp=False)
    try:
        yield {"sshd": sshd, "key": key, "known": known, "server": server}
    finally:
        server.shutdown()
        sshd.stop()


def sftp(env: dict[str, Any], commands: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """OpenSSH's sftp to the real sshd, host key checked."""
    return subprocess.run(
        [shutil.which("sftp") or "sftp", "-b", "-", "-P", str(env["sshd"].port), "-i", str(env["key"]),
         "-o", f"UserKnownHostsFile={env['known']}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "root@127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_delivery_through_openssh_is_taken_and_answered_in_the_outbox(dropbox: dict[str, Any], tmp_path: Path,
                                                                      spec: Any, runtime: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    check = next(p.name for p in folder.iterdir() if p.name.endswith(".chk"))
    data = sorted(p.name for p in folder.iterdir() if p.name != check)
    cmds = "cd /inbox\n" + "".join(f"put {n} {n}.part\nrename {n}.part {n}\n" for n in data)
    cmds += f"put {check} {check}.part\nrename {check}.part {check}\n"
    r = sftp(dropbox, cmds, folder)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    while True:
        with runtime.db.session() as s:
            found = s.scalars(select(Delivery)).all()
            if found and found[0].is_final:
                break
        assert time.monotonic() < deadline, "no verdict"
        time.sleep(0.2)
    [d] = found
    assert (d.channel, d.status, d.party) == ("dropbox", "accepted", "42")
    got = tmp_path / "got"
    got.mkdir()
    deadline = time.monotonic() + 30
    while sftp(dropbox, "get /outbox/P_42_202610_00.fbf.xml\n", got).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert b"<Status>accepted</Status>" in (got / "P_42_202610_00.fbf.xml").read_bytes()
    assert sftp(dropbox, "get /outbox/P_42_202610_00.rct.xml\n", got).returncode == 0
    assert dropbox["sshd"].path("inbox").exists() and list(dropbox["sshd"].path("inbox").iterdir()) == []


def test_a_partial_file_in_the_dropbox_waits(dropbox: dict[str, Any], tmp_path: Path, spec: Any,
                                             runtime: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    check = next(p for p in folder.iterdir() if p.name.endswith(".chk"))
    victim = next(p for p in folder.iterdir() if "_31201_" in p.name)
    victim.write_bytes(victim.read_bytes()[:-10])  # arrives short, as after a dropped session
    cmds = "cd /inbox\n" + "".join(f"put {p.name}\n" for p in sorted(folder.iterdir()) if p != check)
    cmds += f"put {check.name}\n"
    assert sftp(dropbox, cmds, folder).returncode == 0
    time.sleep(1.5)
    with runtime.db.session() as s:
        assert s.scalars(select(Delivery)).all() == []
