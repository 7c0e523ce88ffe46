"""The archive: files stored once by their SHA-256, written atomically, never changed.

A file is streamed into a staging file while its digest and size are computed, flushed to
disk, then moved to ``sha256/ab/cd/<digest>`` with one rename; a reader sees the whole file
or nothing. Storing bytes that are already there costs nothing and changes nothing.
Back-ends share the ``Archive`` interface; the local-disk one is the default (an object
store would be a second implementation chosen by configuration).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, BinaryIO, Iterator

from ..config import Settings
from ..errors import InsufficientStorage, PayloadTooLarge
from .scratch import owner_prefix, sweep

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Every this many bytes of a staged file, the kernel is asked to start writing them out.
WRITEBACK_STEP = 16 * 1024 * 1024
_FADVISE = getattr(os, "posix_fadvise", None)  # Linux and most Unixes; not macOS or Windows


class StagedObject:
    """A file being received: write bytes, then ``commit`` to archive it (or ``discard``)."""

    def __init__(self, archive: "LocalArchive", limit: int | None = None, label: str = "") -> None:
        self.archive = archive
        self.limit = limit
        self.label = label
        # Named with host and process id: a sweep removes what a killed process left (scratch.py).
        try:
            fd, name = tempfile.mkstemp(dir=archive.staging, prefix=owner_prefix(STAGING_KIND))
        except OSError as exc:
            raise _storage_error(exc, label) from exc
        self.path = Path(name)
        self.fh: IO[bytes] = os.fdopen(fd, "wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None
        self._kicked = 0

    def write(self, data: bytes | memoryview) -> int:
        """Append bytes; PayloadTooLarge once the cap is passed."""
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            self.discard()
            raise PayloadTooLarge(
                f"file {self.label} is larger than the limit of {self.limit} bytes",
                f"文件 {self.label} 超过大小上限 {self.limit} 字节", code="file_too_large",
                errors={"file": self.label, "limit": self.limit})
        self.sha.update(data)
        try:
            self.fh.write(data)
        except OSError as exc:
            self.discard()
            raise _storage_error(exc, self.label) from exc
        if self.size - self._kicked >= WRITEBACK_STEP:
            self._start_writeback()
        return len(data)

    def _start_writeback(self) -> None:
        # seal() fsyncs the file. Left alone, the kernel keeps a whole 1 GB upload as dirty
        # pages until then, so the disk idles while the body arrives and the fsync waits for
        # all of it. POSIX_FADV_DONTNEED on Linux starts asynchronous write-back of the range
        # (dirty pages are not dropped, so the file stays cached for validation); only a hint.
        if _FADVISE is None:
            return
        try:
            self.fh.flush()
            _FADVISE(self.fh.fileno(), self._kicked, self.size - self._kicked, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # a file system that refuses the hint loses nothing but the overlap
        self._kicked = self.size

    def seal(self) -> str:
        """Finish writing: flush to disk and fix the digest (the file stays in staging)."""
        if self.digest is None:
            try:
                self.fh.flush()
                os.fsync(self.fh.fileno())
                self.fh.close()
            except OSError as exc:
                self.discard()
                raise _storage_error(exc, self.label) from exc
            self.digest = self.sha.hexdigest()
        return self.digest

    def commit(self) -> str:
        """Seal the file and move it into the archive; returns its SHA-256."""
        digest = self.seal()
        try:
            self.archive._place(self.path, digest)
        except OSError as exc:
            self.discard()
            raise _storage_error(exc, self.label) from exc
        return digest

    def discard(self) -> None:
        """Drop a file that will not be archived (also when the disk is full: closing may fail then too)."""
        if not self.fh.closed:
            try:
                self.fh.close()
            except OSError:
                pass  # a flush of buffered bytes failing (ENOSPC) must not keep the file
        self.path.unlink(missing_ok=True)


STAGING_KIND = "in"
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _storage_error(exc: OSError, label: str) -> Exception:
    """A full disk as the clean answer it deserves (507); any other OS error as it is."""
    if exc.errno in _FULL:
        return InsufficientStorage(f"the server's disk is full; {label or 'the file'} was not kept, try again later",
                                   f"服务器磁盘已满，{label or '文件'}未保存，请稍后重试", errors={"file": label})
    return exc


class Archive(ABC):
    """The archive interface every back-end implements."""

    @abstractmethod
    def stage(self, limit: int | None = None, label: str = "") -> StagedObject:
        """A staging file to stream bytes into."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Archive bytes held in memory (receipts, reports); returns the SHA-256."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether an object is archived."""

    @abstractmethod
    def path(self, digest: str) -> Path:
        """A local path to read the object from (validation reads files by path)."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """The object's bytes, for streaming to a client."""

    def sweep_staging(self) -> list[str]:
        """Remove staging left by dead processes of this host; returns what was removed (none by default)."""
        return []

    def read_bytes(self, digest: str) -> bytes:
        """The whole object (small objects only)."""
        with self.open(digest) as fh:
            return fh.read()

    def iter_chunks(self, digest: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The object in chunks."""
        with self.open(digest) as fh:
            while block := fh.read(chunk):
                yield block


class LocalArchive(Archive):
    """The archive on local disk under ``<data dir>/archive``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "sha256"
        self.staging = self.root / "staging"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def _object_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        return self.objects / digest[:2] / digest[2:4] / digest

    def _place(self, staged: Path, digest: str) -> None:
        final = self._object_path(digest)
        if final.exists():
            staged.unlink(missing_ok=True)  # same bytes already kept: nothing to change
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(staged, 0o444)
        os.replace(staged, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    def stage(self, limit: int | None = None, label: str = "") -> StagedObject:
        """A staging file in the archive's own file system (so the final move is a rename)."""
        return StagedObject(self, limit, label)

    def sweep_staging(self) -> list[str]:
        """Remove staging files left by processes of this host that are gone (a kill -9 mid-upload)."""
        return sweep(self.staging, STAGING_KIND, legacy_prefix="in-")

    def put_bytes(self, data: bytes) -> str:
        """Archive bytes held in memory."""
        staged = self.stage()
        staged.write(data)
        return staged.commit()

    def exists(self, digest: str) -> bool:
        """Whether an object is archived."""
        return self._object_path(digest).exists()

    def path(self, digest: str) -> Path:
        """The object's path on disk."""
        return self._object_path(digest)

    def open(self, digest: str) -> BinaryIO:
        """Open the object for reading."""
        return self._object_path(digest).open("rb")


def open_archive(settings: Settings) -> Archive:
    """The archive back-end the configuration names (local disk today)."""
    return LocalArchive(settings.archive_path)
