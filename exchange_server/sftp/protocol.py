"""The SFTP protocol loop of the embedded server: paramiko's ``SFTPServer`` with OpenSSH's limits.

paramiko's server answers a READ with as many bytes as were asked for, so OpenSSH's ``sftp
-B 262144`` got a 262,157-byte DATA message, over the 256 KiB every OpenSSH client and
server accepts, and gave up ("Received message too long"). It also advertises no
``limits@openssh.com``, so OpenSSH's client stays at 32 KiB requests: eight times the
per-request work of 256 KiB ones. This subclass:

- answers ``limits@openssh.com`` with OpenSSH's own ``sftp-server`` values (messages up to
  256 KiB, reads and writes up to 255 KiB), so clients that ask (OpenSSH 8.7+ without
  ``-B``) use 255 KiB requests;
- shortens READs to 255 KiB (a short read is allowed; every client asks again for the rest);
- accepts messages up to 1 MiB from clients that ignore the limits, and refuses larger ones
  with a FAILURE status for that request after discarding them (never buffered whole); the
  session goes on;
- caps open handles per session (each is a file descriptor of the whole server process);
- reads the channel in large blocks and sends replies in batches while more requests are
  already waiting (fewer lock hand-offs and SSH packets per request).
"""
from __future__ import annotations

import logging
import struct
from typing import Any

from paramiko import SFTPServer
from paramiko.sftp import (
    CMD_DATA, CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_INIT, CMD_OPEN, CMD_OPENDIR, CMD_READ, CMD_VERSION, CMD_WRITE,
    SFTP_BAD_MESSAGE, SFTP_EOF, SFTP_FAILURE, Message, SFTPError,
)

log = logging.getLogger(__name__)

# What we advertise (limits@openssh.com): the values of OpenSSH's sftp-server (SFTP_MAX_MSG_LENGTH
# and SFTP_MAX_READ_LENGTH in sftp-common.h / sftp-server.c), which every OpenSSH client can take.
MAX_PACKET_LENGTH = 256 * 1024
MAX_READ_LENGTH = MAX_PACKET_LENGTH - 1024
MAX_WRITE_LENGTH = MAX_PACKET_LENGTH - 1024
MAX_OPEN_HANDLES = 128  # above OpenSSH's 64 requests in flight, which the client caps by this value
# What we accept: more than we advertise, for clients that never ask (paramiko-based ones may
# send 1 MiB writes); anything larger is discarded as it arrives and refused.
MAX_ACCEPTED_LENGTH = 1024 * 1024 + 1024

_TOO_LONG = -1  # pseudo message type: a request over MAX_ACCEPTED_LENGTH, already discarded
_READ_BLOCK = 1024 * 1024  # at least this much from the channel at once (at most what it holds)
_SEND_CHUNK = 32 * 1024  # OpenSSH's session channels take 32 KiB per SSH packet
# Replies wait while more requests are already here, but no longer than this: the client may
# not send more until it hears back (OpenSSH's keeps at most 64 requests in flight).
_FLUSH_BYTES = 32 * 1024  # replies that fill one SSH packet
_FLUSH_REPLIES = 64  # this many replies
_FLUSH_WRITTEN = 4 * 1024 * 1024  # replies to WRITEs of this many bytes


class LimitedSftpServer(SFTPServer):
    """paramiko's SFTP subsystem with OpenSSH's request-size limits, bounded input and batched replies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbuf = bytearray()
        self._inpos = 0
        self._out = bytearray()
        self._pending = 0
        self._written = 0  # bytes written by the WRITEs whose replies are held

    # -- logging: paramiko formats a line for every request even when DEBUG is off ------------------
    def _log(self, level: int, msg: Any) -> None:
        if self.logger.isEnabledFor(level):
            super()._log(level, msg)

    # -- input -------------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Append what the channel has (blocking for at least one byte); replies go out first if it has nothing."""
        if self._inpos:
            del self._inbuf[: self._inpos]  # only the tail of one message is left to move
            self._inpos = 0
        if self._out and not self.sock.recv_ready():
            self._flush()  # never wait for the client while holding answers it may be waiting for
        # Everything the channel holds (at most its window): paramiko's pipe moves what is left
        # over to the front on every partial read, which costs O(window) per read.
        chunk = self.sock.recv(max(_READ_BLOCK, getattr(self.sock, "in_window_size", 0)))
        if not chunk:
            raise EOFError()
        self._inbuf += chunk

    def _take(self, n: int) -> bytes:
        """Exactly ``n`` bytes of input."""
        while len(self._inbuf) - self._inpos < n:
            self._fill()
        start = self._inpos
        self._inpos = start + n
        with memoryview(self._inbuf) as view:
            return bytes(view[start:start + n])

    def _skip(self, n: int) -> None:
        """Discard ``n`` bytes of input without keeping more than one block."""
        while n > 0:
            if self._inpos >= len(self._inbuf):
                self._fill()
            step = min(n, len(self._inbuf) - self._inpos)
            self._inpos += step
            n -= step

    def _read_all(self, n: int) -> bytes:
        return self._take(n)

    def _read_packet(self) -> tuple[int, bytes]:
        (size,) = struct.unpack(">I", self._take(4))
        if size >= 1 << 24:
            raise SFTPError("Garbage packet received")  # as paramiko: not SFTP at all; end the session
        if size == 0:
            return 0, b""
        if size > MAX_ACCEPTED_LENGTH:
            head = self._take(5)  # type and request id
            self._skip(size - 5)
            log.warning("sftp: refused a %d-byte request (type %d); the limit is %d", size, head[0],
                        MAX_ACCEPTED_LENGTH)
            return _TOO_LONG, head[1:]
        t = self._take(1)[0]
        return t, self._take(size - 1)

    # -- output ------------------------------------------------------------------------------------
    def _send_packet(self, t: int, packet: Any) -> None:
        body = packet.asbytes()
        self._out += struct.pack(">IB", len(body) + 1, t)
        self._out += body
        self._pending += 1
        more_waiting = len(self._inbuf) > self._inpos or self.sock.recv_ready()
        if (not more_waiting or len(self._out) >= _FLUSH_BYTES or self._pending >= _FLUSH_REPLIES
                or self._written >= _FLUSH_WRITTEN):
            self._flush()

    def _flush(self) -> None:
        """Send every batched reply."""
        data = bytes(self._out)
        self._out.clear()
        self._pending = self._written = 0
        pos = 0
        while pos < len(data):
            sent = self.sock.send(data[pos:pos + _SEND_CHUNK])
            if sent <= 0:
                raise EOFError()
            pos += sent

    def finish_subsystem(self) -> None:
        """End of the session: whatever is still batched goes out if the channel is still open."""
        try:
            if self._out:
                self._flush()
        except (OSError, EOFError):  # the client is gone; nothing to deliver to
            pass
        super().finish_subsystem()

    # -- requests ----------------------------------------------------------------------------------
    def _process(self, t: int, request_number: int, msg: Message) -> None:
        if t == CMD_WRITE:  # the hot path first
            handle = msg.get_binary()
            offset = msg.get_int64()
            data = msg.get_binary()
            fh = self.file_table.get(handle)
            if fh is None:
                self._send_status(request_number, SFTP_BAD_MESSAGE, "Invalid handle")
            else:
                self._written += len(data)
                self._send_status(request_number, fh.write(offset, data))
        elif t == CMD_READ:
            handle = msg.get_binary()
            offset = msg.get_int64()
            length = min(msg.get_int(), MAX_READ_LENGTH)  # a short read, as OpenSSH's server does
            fh = self.file_table.get(handle)
            if fh is None:
                self._send_status(request_number, SFTP_BAD_MESSAGE, "Invalid handle")
                return
            data = fh.read(offset, length)
            if isinstance(data, (bytes, str)):
                if len(data) == 0:
                    self._send_status(request_number, SFTP_EOF)
                else:
                    self._response(request_number, CMD_DATA, data)
            else:
                self._send_status(request_number, data)
        elif t == _TOO_LONG:
            self._send_status(request_number, SFTP_FAILURE,
                              f"Request too long (limit {MAX_ACCEPTED_LENGTH} bytes; see limits@openssh.com)")
        elif t in (CMD_OPEN, CMD_OPENDIR) and len(self.file_table) + len(self.folder_table) >= MAX_OPEN_HANDLES:
            self._send_status(request_number, SFTP_FAILURE, f"Too many open handles (limit {MAX_OPEN_HANDLES})")
        elif t == CMD_EXTENDED and self._extended(request_number, msg):
            pass
        else:
            super()._process(t, request_number, msg)

    def _extended(self, request_number: int, msg: Message) -> bool:
        """Answer the extensions paramiko does not know; False (message rewound) for the others."""
        start = msg.packet.tell()
        if msg.get_text() != "limits@openssh.com":
            msg.packet.seek(start)
            return False
        reply = Message()
        reply.add_int(request_number)
        for value in (MAX_PACKET_LENGTH, MAX_READ_LENGTH, MAX_WRITE_LENGTH, MAX_OPEN_HANDLES):
            reply.add_int64(value)
        self._send_packet(CMD_EXTENDED_REPLY, reply)
        return True

    def _send_server_version(self) -> int:
        # paramiko's own, plus limits@openssh.com (OpenSSH's client only asks when it is advertised).
        t, data = self._read_packet()
        if t != CMD_INIT:
            raise SFTPError("Incompatible sftp protocol")
        version = struct.unpack(">I", data[:4])[0]
        msg = Message()
        msg.add_int(3)
        msg.add("check-file", "md5,sha1", "limits@openssh.com", "1")
        self._send_packet(CMD_VERSION, msg)
        return int(version)
