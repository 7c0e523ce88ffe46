"""The archive's staging files: large ones are hashed and written on a thread of their own, with the same result."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from exchange_server.errors import PayloadTooLarge
from exchange_server.storage import archive as archive_mod
from exchange_server.storage.archive import LocalArchive

CHUNK = 1 << 20


def _chunks(total: int) -> list[bytes]:
    data = os.urandom(CHUNK)
    return [data[: min(CHUNK, total - i)] for i in range(0, total, CHUNK)]


def test_a_large_file_is_archived_byte_for_byte(tmp_path: Path) -> None:
    archive = LocalArchive(tmp_path / "archive")
    staged = archive.stage(label="big.txt")
    buffer = bytearray(CHUNK)
    expected = hashlib.sha256()
    for chunk in _chunks(archive_mod.PIPELINE_AFTER + 5 * CHUNK + 123):
        buffer[: len(chunk)] = chunk  # the upload reuses one buffer: the staging file must have copied it
        expected.update(chunk)
        staged.write(memoryview(buffer)[: len(chunk)])
    assert staged._pipeline is not None  # past the threshold the writer thread took over
    digest = staged.commit()
    assert digest == expected.hexdigest()
    assert hashlib.sha256(archive.path(digest).read_bytes()).hexdigest() == digest
    assert not any(archive.staging.iterdir())


def test_the_cap_still_applies_and_leaves_nothing(tmp_path: Path) -> None:
    archive = LocalArchive(tmp_path / "archive")
    staged = archive.stage(limit=archive_mod.PIPELINE_AFTER + 2 * CHUNK, label="capped.txt")
    with pytest.raises(PayloadTooLarge):
        for chunk in _chunks(archive_mod.PIPELINE_AFTER + 4 * CHUNK):
            staged.write(chunk)
    assert not any(archive.staging.iterdir())


def test_a_write_error_on_the_thread_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = LocalArchive(tmp_path / "archive")
    staged = archive.stage(label="full.txt")
    real = staged._absorb

    def disk_full(data: bytes | memoryview) -> None:
        if staged._written >= archive_mod.PIPELINE_AFTER + CHUNK:
            raise OSError(28, "No space left on device")
        real(data)

    monkeypatch.setattr(staged, "_absorb", disk_full)
    with pytest.raises(OSError, match="No space left"):
        for chunk in _chunks(archive_mod.PIPELINE_AFTER + 20 * CHUNK):
            staged.write(chunk)
        staged.seal()
    staged.discard()
    assert not any(archive.staging.iterdir())
