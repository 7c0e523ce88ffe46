"""A real OpenSSH server on loopback for tests: SFTP only, chrooted, key auth only.

Runs as root (as CI does) and logs in as ``root`` with the keys given, so no system users
are created. sshd insists that a chroot directory and every one of its parents be owned by
root and not group/world-writable, which rules out anything under /tmp (mode 1777): the
chroot lives in its own root-owned 0755 directory under /run (or /var/lib), while the
config, host key, authorized_keys and log stay in ``root``::

    server = OpenSshServer(tmp_path / "sshd", [hq_public_key_line]).start()
    server.mkdir("inbox")                       # writable folder, "/inbox" over SFTP
    ... connect to 127.0.0.1:server.port, pin server.host_key_line ...
    server.stop()
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.ports import free_port as _free_port

SSHD = "/usr/sbin/sshd"
SKIP_REASON = "openssh-server not installed (scripts/test installs it)"


def find_sshd() -> str | None:
    """The sshd binary (which must be called by absolute path), or None."""
    for cand in (SSHD, shutil.which("sshd")):
        if cand and os.path.isabs(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def require_sshd() -> str:
    """sshd's path; skips the test when it is missing (fails instead when ``CI`` is set, or not root)."""
    sshd = find_sshd()
    if sshd is None:
        if os.environ.get("CI"):
            pytest.fail(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    if os.geteuid() != 0:
        # Chroot and logging in as root need root; CI runs as root.
        if os.environ.get("CI"):
            pytest.fail("the sshd tests must run as root")
        pytest.skip("the sshd tests must run as root")
    return sshd


def sshd_version(sshd: str) -> tuple[int, int]:
    """OpenSSH's (major, minor) version, from ``sshd -V`` (older ones print it in the usage text)."""
    out = subprocess.run([sshd, "-V"], capture_output=True, text=True)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _safe_for_chroot(path: Path) -> bool:
    """Whether ``path`` and all its parents are root-owned and not group/world-writable."""
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & 0o022:
            return False
    return True


def _chroot_parent() -> Path:
    for cand in (Path("/run"), Path("/var/lib"), Path("/var/cache"), Path("/opt")):
        if cand.is_dir() and _safe_for_chroot(cand) and os.access(cand, os.W_OK):
            return cand
    raise RuntimeError("no root-owned, non-world-writable directory to put an sshd chroot in")


class OpenSshServer:
    """``sshd -D -e`` on 127.0.0.1, SFTP only, chrooted to ``self.chroot``; restartable on the same port."""

    def __init__(self, root: Path, authorized_keys: list[str], *, port: int | None = None) -> None:
        self.sshd = find_sshd() or SSHD
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.config = self.root / "sshd_config"
        self.host_key_path = self.root / "ssh_host_ed25519_key"
        self.authorized_keys_path = self.root / "authorized_keys"
        self.log_path = self.root / "sshd.log"
        self.pid_path = self.root / "sshd.pid"
        # The chroot's own parent: root-owned 0755, so sshd accepts the chroot below it.
        self._jail = Path(tempfile.mkdtemp(prefix="kam-sshd-", dir=_chroot_parent()))
        os.chmod(self._jail, 0o755)
        self.chroot = self._jail / "root"
        self.chroot.mkdir(mode=0o755)
        os.chmod(self.chroot, 0o755)
        # stop() keeps the chroot (restart, inspecting uploads); it goes with the object or at exit.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._jail), True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.set_authorized_keys(authorized_keys)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kam-test-sshd",
                        "-f", str(self.host_key_path)], check=True, capture_output=True)
        self.host_key_line = " ".join(self.host_key_path.with_suffix(".pub").read_text().split()[:2])
        self._write_config()

    # -- configuration ----------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "PermitRootLogin prohibit-password",
            "AllowUsers root",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PermitTTY no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "MaxStartups 100:30:200",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            f"ChrootDirectory {self.chroot}",
        ]
        if sshd_version(self.sshd) >= (9, 8):
            # Newer sshd penalises addresses whose connections fail (e.g. a client refusing the
            # host key); tests do that on purpose from 127.0.0.1 and must not be locked out.
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    def set_authorized_keys(self, keys: list[str]) -> None:
        """Replace the keys allowed to log in (sshd reads the file on each login: no restart)."""
        self.authorized_keys_path.write_text("".join(k.strip() + "\n" for k in keys))
        os.chmod(self.authorized_keys_path, 0o600)

    def mkdir(self, relpath: str) -> Path:
        """A folder inside the chroot the SFTP user can write to (``/relpath`` over SFTP)."""
        path = self.chroot / relpath.strip("/")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, remote: str) -> Path:
        """The local path of a remote (chroot-relative) path, to check what was uploaded."""
        return self.chroot / remote.lstrip("/")

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "OpenSshServer":
        """Start sshd and wait until its port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation dir
        check = subprocess.run([self.sshd, "-t", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd rejects its config: {check.stderr.strip()}")
        log_fh = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=log_fh, stderr=subprocess.STDOUT, cwd="/")
        log_fh.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop sshd (the listener; with -D its session children end with their connections)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        """Stop sshd and remove the chroot (``root`` is the caller's, e.g. pytest's tmp_path)."""
        self.stop()
        self._cleanup()

    @property
    def running(self) -> bool:
        """Whether sshd is running."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """What sshd logged so far (useful in assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "OpenSshServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
