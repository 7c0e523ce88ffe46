"""The streaming multipart receiver: integrity across chunks, refusals, nothing left behind."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from exchange_server.config import load_settings
from exchange_server.errors import BadRequest, PayloadTooLarge
from exchange_server.storage import LocalArchive
from exchange_server.submissions.upload import receive_multipart
from province_agent.transport import multipart_body

BOUNDARY = "test-boundary-7f3a"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def body_of(tmp_path: Path, files: dict[str, bytes]) -> bytes:
    """The multipart body the agent would send for these files."""
    paths = []
    for name, data in files.items():
        p = tmp_path / "src" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    parts, length = multipart_body(paths, BOUNDARY)
    out = b"".join(p if isinstance(p, bytes) else p.read_bytes() for p in parts)
    assert len(out) == length
    return out


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchive:
    return LocalArchive(tmp_path / "archive")


def receive(body: bytes, archive: LocalArchive, **settings: object) -> list:
    s = load_settings({"data_dir": str(archive.root.parent), "upload_chunk": 64 * 1024, **settings}, environ={})
    return receive_multipart(io.BytesIO(body), CT, len(body), archive, s)


def test_files_spanning_many_chunks_arrive_bit_exact(tmp_path: Path, archive: LocalArchive) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # crosses 48 chunk boundaries, boundary-like bytes included
    small = "湖北|0668|中文\n".encode("gb18030")
    got = receive(body_of(tmp_path, {"P_42_202610_00.chk": b"H|x\n", "P_42_202610_31201_00_001.txt": big,
                                     "P_42_202610_32001_00_001.txt": small}), archive)
    assert [f.name for f in got] == ["P_42_202610_00.chk", "P_42_202610_31201_00_001.txt",
                                     "P_42_202610_32001_00_001.txt"]
    assert got[1].sha256 == hashlib.sha256(big).hexdigest() and got[1].size == len(big)
    assert archive.path(got[1].sha256).read_bytes() == big
    assert archive.path(got[2].sha256).read_bytes() == small
    assert list(archive.staging.iterdir()) == []
    assert oct(archive.path(got[1].sha256).stat().st_mode)[-3:] == "444"  # archived files are read-only


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.txt", "..", ".hidden.txt", "bad\x01name.txt", "x" * 256])
def test_path_like_or_hidden_names_are_refused(tmp_path: Path, archive: LocalArchive, name: str) -> None:
    body = body_of(tmp_path, {"ok.chk": b"H\n"}).replace(b'filename="ok.chk"', f'filename="{name}"'.encode())
    with pytest.raises(BadRequest) as err:
        receive(body, archive)
    assert err.value.code == "bad_file_name" and err.value.message_zh
    assert list(archive.staging.iterdir()) == []


def test_a_body_cut_short_is_refused_and_leaves_nothing(tmp_path: Path, archive: LocalArchive) -> None:
    body = body_of(tmp_path, {"a.chk": b"H\n", "a.txt": os.urandom(300_000)})
    with pytest.raises(BadRequest) as err:
        receive(body[:200_000], archive)
    assert err.value.code == "upload_incomplete"
    assert list(archive.staging.iterdir()) == []
    assert list(archive.objects.rglob("*")) == [p for p in archive.objects.rglob("*") if p.is_dir()]


def test_caps_on_file_size_request_size_and_file_count(tmp_path: Path, archive: LocalArchive) -> None:
    body = body_of(tmp_path, {"a.chk": b"H\n", "a.txt": b"x" * 5000})
    with pytest.raises(PayloadTooLarge) as err:
        receive(body, archive, max_file_size=4096)
    assert err.value.code == "file_too_large" and err.value.errors == {"file": "a.txt", "limit": 4096}
    with pytest.raises(PayloadTooLarge) as err:
        receive(body, archive, max_delivery_size=1000)
    assert err.value.code == "delivery_too_large"
    with pytest.raises(PayloadTooLarge) as err:
        receive(body_of(tmp_path, {f"f{i}.txt": b"1" for i in range(5)}), archive, max_files_per_delivery=4)
    assert err.value.code == "too_many_files"
    assert list(archive.staging.iterdir()) == []


def test_not_multipart_and_empty_requests_are_refused(tmp_path: Path, archive: LocalArchive) -> None:
    s = load_settings({"data_dir": str(tmp_path)}, environ={})
    with pytest.raises(BadRequest) as err:
        receive_multipart(io.BytesIO(b"{}"), "application/json", 2, archive, s)
    assert err.value.code == "not_multipart"
    with pytest.raises(BadRequest) as err:
        receive(f"--{BOUNDARY}--\r\n".encode(), archive)
    assert err.value.code == "no_files"
