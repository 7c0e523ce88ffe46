"""The embedded SFTP server (paramiko): each province in its own tree, public keys only.

A session's ``/`` is its party's folder: ``/inbox`` (upload here; temporary ``.part`` names
and renames allowed) and ``/outbox`` (read what HQ returned). Everything else is refused:
paths outside the tree, symlinks, new folders, writes to the outbox, hidden names. Writes
are capped per file (``max_file_size``) and per account (``sftp_quota_bytes`` waiting in
the inbox). Files open for writing are never offered to the scanner, and closing one wakes
it, so a finished delivery is taken within moments.
"""
from __future__ import annotations

import errno
import logging
import os
import posixpath
import socket
import stat as stat_mod
import threading
from pathlib import Path
from typing import Any

import paramiko
from sqlalchemy.exc import SQLAlchemyError
from paramiko import SFTPAttributes, SFTPHandle, SFTPServer, SFTPServerInterface, ServerInterface
from paramiko.sftp import (
    SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED,
)

from ..accounts.models import Account
from ..accounts.services import AccountService
from ..errors import ExchangeError, Unauthorized
from ..runtime import Runtime
from .keys import load_or_create_host_key
from .protocol import LimitedSftpServer
from .tree import INBOX, OUTBOX, PartyTree

log = logging.getLogger(__name__)

# The SSH channel: paramiko's defaults (2 MiB window, 32 KiB packets) throttle bulk uploads. The
# window is also what a client may send before we have read it, so it bounds a session's memory
# (a few times this at worst: the channel's buffer, and what the SFTP loop took from it). On
# loopback 8 MiB is as fast as 64 MiB once TCP_NODELAY is set; it covers 1 Gbit/s at 60 ms RTT.
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024


class _Busy:
    """Paths open for writing right now (shared by every session of one server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, int] = {}

    def add(self, p: Path) -> None:
        with self._lock:
            self._open[p] = self._open.get(p, 0) + 1

    def remove(self, p: Path) -> None:
        with self._lock:
            n = self._open.get(p, 0) - 1
            if n <= 0:
                self._open.pop(p, None)
            else:
                self._open[p] = n

    def __call__(self, p: Path) -> bool:
        with self._lock:
            return p in self._open


class _Auth(ServerInterface):
    """Authenticates one connection: the key must belong to the account named as the user."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.account: Account | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.rt.settings.sftp_password_auth else "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        with self.rt.db.session() as s:
            account = AccountService(s).account_for_key(key.asbytes())
        if account is None or account.name != username or not account.party:
            log.info("sftp: key %s refused for %r", key.fingerprint, username)
            return paramiko.AUTH_FAILED
        self.account = account
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_password(self, username: str, password: str) -> int:
        if not self.rt.settings.sftp_password_auth:
            return paramiko.AUTH_FAILED
        try:
            with self.rt.db.session() as s:
                account = AccountService(s).verify_password(username, password)
        except Unauthorized:
            return paramiko.AUTH_FAILED
        if not account.party:
            return paramiko.AUTH_FAILED
        self.account = account
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return name == "sftp" and super().check_channel_subsystem_request(channel, name)


class _Handle(SFTPHandle):
    """A file handle that counts what is written against the caps; reads and writes by offset.

    ``on_fetched`` is called at close when every byte of a file opened for reading was read
    (a list slice fetched: HQ records the acknowledgement).
    """

    def __init__(self, flags: int, path: Path, limit: int | None, busy: _Busy | None, on_close: Any,
                 on_fetched: Any = None) -> None:
        super().__init__(flags)
        self.path = path
        self.limit = limit
        self.busy = busy
        self.on_close = on_close
        self.on_fetched = on_fetched
        self.read_to = 0  # the furthest byte read
        self.disk_full = False

    def write(self, offset: int, data: bytes) -> int:
        """Write all of ``data`` at ``offset`` unless that crosses the file's cap."""
        if self.limit is not None and offset + len(data) > self.limit:
            log.warning("sftp: %s over its cap of %d bytes", self.path.name, self.limit)
            return SFTP_FAILURE
        fobj = getattr(self, "writefile", None)
        if fobj is None:
            return SFTP_OP_UNSUPPORTED
        # One pwrite per request: paramiko's default seeks, writes and flushes a buffered file.
        # (With O_APPEND, Linux appends whatever the offset, as paramiko's default does.)
        try:
            fd, view = fobj.fileno(), memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.disk_full = True  # the partial file is removed at close: nothing of it stays
                log.error("sftp: disk full writing %s", self.path.name)
            return SFTPServer.convert_errno(exc.errno)
        except OverflowError:  # an offset beyond 2**63 (only for handles without a cap)
            return SFTP_FAILURE
        return SFTP_OK

    def read(self, offset: int, length: int) -> Any:
        """Up to ``length`` bytes at ``offset`` (empty at the end of the file)."""
        fobj = getattr(self, "readfile", None)
        if fobj is None:
            return SFTP_OP_UNSUPPORTED
        try:
            data = os.pread(fobj.fileno(), length, offset)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        except OverflowError:  # an offset beyond 2**63
            return SFTP_FAILURE
        self.read_to = max(self.read_to, offset + len(data))
        return data

    def close(self) -> None:
        """Close the file; a file written in the inbox wakes the scanner; a file read whole may be a fetch."""
        fobj = getattr(self, "readfile", None)
        whole = False
        if self.on_fetched is not None and fobj is not None:
            try:
                whole = self.read_to >= os.fstat(fobj.fileno()).st_size > 0
            except OSError:
                whole = False
        super().close()
        if self.disk_full:
            self.path.unlink(missing_ok=True)
        if self.busy is not None:
            self.busy.remove(self.path)
            self.on_close(self.path)
        if whole:
            self.on_fetched(self.path)


class _Jail(SFTPServerInterface):
    """The SFTP operations of one session, confined to its party's tree."""

    def __init__(self, server: _Auth, *args: Any, embedded: "EmbeddedSftpServer", **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        assert server.account is not None and server.account.party is not None
        self.embedded = embedded
        self.account = server.account
        self.party = server.account.party
        self.top = embedded.tree.ensure(self.party).resolve()

    # -- paths -------------------------------------------------------------------------------
    def canonicalize(self, path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path or "/")) if path else "/"

    def _real(self, path: str) -> tuple[Path, list[str]] | None:
        """The real path of a virtual one, and its parts; None when it would leave the tree."""
        vpath = self.canonicalize(path)
        parts = [p for p in vpath.split("/") if p]
        real = self.top.joinpath(*parts)
        try:
            if os.path.commonpath([os.path.realpath(real), str(self.top)]) != str(self.top):
                return None
        except ValueError:
            return None
        return real, parts

    def _inbox_file(self, path: str) -> Path | None:
        """A writable file name: directly in /inbox, not hidden."""
        found = self._real(path)
        if found is None:
            return None
        real, parts = found
        if len(parts) != 2 or parts[0] != INBOX or parts[1].startswith("."):
            return None
        return real

    # -- reading -----------------------------------------------------------------------------
    def list_folder(self, path: str) -> Any:
        found = self._real(path)
        if found is None:
            return SFTP_PERMISSION_DENIED
        real, parts = found
        if len(parts) > 1 or (parts and parts[0] not in (INBOX, OUTBOX)):
            return SFTP_NO_SUCH_FILE
        out = []
        try:
            for entry in sorted(os.scandir(real), key=lambda e: e.name):
                if entry.name.startswith(".") or entry.is_symlink():
                    continue
                attr = SFTPAttributes.from_stat(entry.stat(follow_symlinks=False), entry.name)
                out.append(attr)
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        return out

    def stat(self, path: str) -> Any:
        found = self._real(path)
        if found is None:
            return SFTP_PERMISSION_DENIED
        real, parts = found
        if any(p.startswith(".") for p in parts) or (parts and parts[0] not in (INBOX, OUTBOX)):
            return SFTP_NO_SUCH_FILE
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        if stat_mod.S_ISLNK(st.st_mode):
            return SFTP_PERMISSION_DENIED
        return SFTPAttributes.from_stat(st, parts[-1] if parts else "/")

    lstat = stat

    def open(self, path: str, flags: int, attr: SFTPAttributes) -> Any:
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC))
        found = None
        if writing:
            real = self._inbox_file(path)
            if real is None:
                return SFTP_PERMISSION_DENIED
            if self.embedded.inbox_bytes(self.party) > self.embedded.rt.settings.sftp_quota_bytes:
                log.warning("sftp: %s over its inbox quota", self.account.name)
                return SFTP_FAILURE
        else:
            found = self._real(path)
            if found is None or len(found[1]) != 2 or found[1][0] not in (INBOX, OUTBOX) \
                    or found[1][1].startswith("."):
                return SFTP_PERMISSION_DENIED
            real = found[0]
        try:
            fd = os.open(real, flags | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0), 0o640)
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        if flags & os.O_WRONLY:
            mode = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            mode = "a+b" if flags & os.O_APPEND else "r+b"
        else:
            mode = "rb"
        fobj = os.fdopen(fd, mode, buffering=0)  # the handle reads and writes the descriptor by offset
        if writing:
            busy = self.embedded.busy
            busy.add(real)
            # Who writes it is noted now: the delivery is credited to the account that authenticated.
            self.embedded.tree.mark_writer(self.party, real.name, self.account.name)
            handle = _Handle(flags, real, self.embedded.file_limit(real.name), busy, self._written)
            handle.writefile = fobj
            if flags & os.O_RDWR:
                handle.readfile = fobj
        else:
            in_outbox = found is not None and found[1][0] == OUTBOX
            handle = _Handle(flags, real, None, None, None, self._fetched if in_outbox else None)
            handle.readfile = fobj
        return handle

    def _written(self, path: Path) -> None:
        """A file written in the inbox was closed: its writer stays noted; wake the scanner."""
        if not path.exists():  # removed at close (the disk was full)
            self.embedded.tree.forget_writer(self.party, path.name)
        self.embedded.scanner_wake()

    def _fetched(self, path: Path) -> None:
        """A file of the outbox was read whole: a list slice's file is an acknowledgement."""
        self.embedded.record_fetch(self.account.id, self.party, path.name)

    # -- changing ------------------------------------------------------------------------------
    def remove(self, path: str) -> int:
        real = self._inbox_file(path)
        if real is None:
            return SFTP_PERMISSION_DENIED
        try:
            os.remove(real)
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        self.embedded.tree.forget_writer(self.party, real.name)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, replace=False)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, replace=True)

    def _rename(self, oldpath: str, newpath: str, replace: bool) -> int:
        old, new = self._inbox_file(oldpath), self._inbox_file(newpath)
        if old is None or new is None or self.embedded.busy(old):
            return SFTP_PERMISSION_DENIED
        if not old.exists():
            return SFTP_NO_SUCH_FILE
        if new.exists() and not replace:
            return SFTP_FAILURE
        try:
            os.replace(old, new)
        except FileNotFoundError:  # another session of the party took or renamed it a moment ago
            return SFTP_NO_SUCH_FILE
        self.embedded.tree.move_writer(self.party, old.name, new.name)
        self.embedded.scanner_wake()
        return SFTP_OK

    def chattr(self, path: str, attr: SFTPAttributes) -> int:
        # Clients that preserve times (sftp -p) send this after an upload; harmless to accept.
        return SFTP_OK if self._inbox_file(path) is not None else SFTP_PERMISSION_DENIED

    def mkdir(self, path: str, attr: SFTPAttributes) -> int:
        return SFTP_PERMISSION_DENIED

    def rmdir(self, path: str) -> int:
        return SFTP_PERMISSION_DENIED

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_PERMISSION_DENIED

    def readlink(self, path: str) -> Any:
        return SFTP_OP_UNSUPPORTED


class EmbeddedSftpServer:
    """Listens on a port; one thread per connection; wakes the inbox scanner on uploads."""

    def __init__(self, rt: Runtime, host: str, port: int) -> None:
        self.rt = rt
        self.host = host
        self.tree = PartyTree(rt.settings.sftp_root)
        self.host_key = load_or_create_host_key(rt.settings)
        self.busy = _Busy()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self._wake: list[threading.Event] = []

    def attach_scanner(self, wake: threading.Event) -> None:
        """The scanner to wake when an upload completes."""
        self._wake.append(wake)

    def scanner_wake(self) -> None:
        """Wake the scanner (a file was closed or renamed in an inbox)."""
        for event in self._wake:
            event.set()

    def file_limit(self, name: str) -> int:
        """The cap on one uploaded file."""
        return 16 * 1024 * 1024 if name.endswith(".chk") else self.rt.settings.max_file_size

    def inbox_bytes(self, party: str) -> int:
        """What is waiting in a party's inbox.

        Other sessions of the party (and the scanner) rename and remove files meanwhile: a file
        gone between listing and stat simply does not count.
        """
        total = 0
        for entry in os.scandir(self.tree.inbox(party)):
            try:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
        return total

    def record_fetch(self, account_id: int, party: str, name: str) -> None:
        """An account read a file of its outbox whole: when it is a list slice's file, record the acknowledgement."""
        from sqlalchemy import or_, select

        from ..lists.models import ListSlice
        from ..lists.services import ListService
        from ..org.services import OrgService

        try:
            with self.rt.db.session() as s:
                province = OrgService(s).province_of(party)
                piece = s.scalar(select(ListSlice).where(ListSlice.province == province,
                                                         or_(ListSlice.check_name == name, ListSlice.data_name == name)))
                if piece is not None:
                    ListService(s, self.rt.archive, self.rt.spec).record_download(piece, account_id, name, "sftp")
        except (SQLAlchemyError, ExchangeError, OSError):  # the session that fetched must go on regardless
            log.exception("sftp: could not record the fetch of %s by account %s", name, account_id)

    def serve_forever(self) -> None:
        """Accept connections until stopped."""
        self.sock.listen(64)
        self.sock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                raise
            threading.Thread(target=self._session, args=(conn, addr), daemon=True, name="sftp-session").start()

    def _session(self, conn: socket.socket, addr: Any) -> None:
        # Replies are small and batched: without TCP_NODELAY, Nagle holds each batch back until
        # the client's (delayed) ACK of the previous one, which halved 32 KiB-request uploads.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(conn, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE)
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", LimitedSftpServer, _Jail, embedded=self)
        auth = _Auth(self.rt)
        try:
            transport.start_server(server=auth)
            channel = transport.accept(30)
            if channel is None:
                return
            while transport.is_active() and not self.stop.is_set():
                transport.join(0.5)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("sftp: session from %s ended: %s", addr[0], exc)
        finally:
            transport.close()

    def start(self) -> threading.Thread:
        """Serve in a background thread."""
        t = threading.Thread(target=self.serve_forever, name="sftp", daemon=True)
        t.start()
        return t

    def shutdown(self) -> None:
        """Stop accepting and close the socket."""
        self.stop.set()
        self.sock.close()
