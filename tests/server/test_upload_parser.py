"""The streaming multipart parser on tricky bodies: chunk edges, near-miss boundaries, limits."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from exchange_server.config import Settings, load_settings
from exchange_server.errors import BadRequest, PayloadTooLarge
from exchange_server.storage import LocalArchive
from exchange_server.submissions.upload import HEADER_LIMIT, ReceivedFile, receive_multipart

BOUNDARY = "----kamBoundary7MA4YWxk"
CT = f"multipart/form-data; boundary={BOUNDARY}"
DELIM = f"--{BOUNDARY}".encode()


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int, readinto: bool = True) -> None:
        self.data = data
        self.step = step
        self.at = 0
        if not readinto:
            self.readinto = None  # type: ignore[assignment]  # the parser must fall back to read()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        n = self.step if size is None or size < 0 else min(size, self.step)
        out = self.data[self.at:self.at + n]
        self.at += len(out)
        return out

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        out = self.read(len(b))
        b[:len(out)] = out
        return len(out)


def part(name: str | None, data: bytes, field: str = "files", extra: str = "") -> bytes:
    """One part: delimiter line, headers, blank line, data (the CRLF before the next delimiter is not added)."""
    disposition = f'form-data; name="{field}"' + (f'; filename="{name}"' if name is not None else "")
    return DELIM + b"\r\n" + f"Content-Disposition: {disposition}\r\n{extra}".encode() + \
        b"Content-Type: application/octet-stream\r\n\r\n" + data


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    """Parts joined by CRLF, closed by the final delimiter."""
    return preamble + b"".join(p + b"\r\n" for p in parts) + DELIM + b"--" + epilogue


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchive:
    return LocalArchive(tmp_path / "archive")


def settings_for(archive: LocalArchive, **kw: object) -> Settings:
    return load_settings({"data_dir": str(archive.root.parent), "upload_chunk": 4096, **kw}, environ={})


def receive(data: bytes, archive: LocalArchive, step: int | None = None, readinto: bool = True,
            **kw: object) -> list[ReceivedFile]:
    stream = Trickle(data, step, readinto) if step else io.BytesIO(data)
    return receive_multipart(stream, CT, len(data), archive, settings_for(archive, **kw))  # type: ignore[arg-type]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_clean(archive: LocalArchive) -> None:
    assert list(archive.staging.iterdir()) == []


# Data that looks like delimiters without being one: a CRLF-- with a prefix of the boundary,
# the whole boundary followed by a letter, a delimiter not at a line start, a lone CR, dashes.
NEAR_MISS = (b"a\r\n--" + BOUNDARY[:-1].encode() + b"!\r\n" + b"\r\n--" + BOUNDARY.encode() + b"X tail"
             + DELIM + b"\r\n" + b"\r\r\n-\r\n--\r\n" + b"-" * 40 + b"\r\n\r\n" + b"end\r\n")


def test_small_body_split_at_every_offset_with_every_chunk_size(archive: LocalArchive) -> None:
    files = {"P_42_202610_00.chk": b"H|1\r\n", "a.txt": NEAR_MISS, "b.txt": b"\r\n", "c.txt": b""}
    data = body(*(part(n, d) for n, d in files.items()), preamble=b"ignored preamble\r\n",
                epilogue=b"\r\nepilogue, ignored\r\n")
    expected = [(n, digest(d), len(d)) for n, d in files.items()]
    for step in range(1, 65):
        got = receive(data, archive, step=step, readinto=step % 2 == 0)
        assert [(f.name, f.sha256, f.size) for f in got] == expected, step
    for name, d in files.items():
        assert archive.path(digest(d)).read_bytes() == d
    assert_clean(archive)


def test_the_buffer_edge_falls_at_every_position_of_a_delimiter(archive: LocalArchive) -> None:
    # With 4 KiB reads, shifting the first file's size moves the delimiter after it across
    # the edge between two reads, byte by byte.
    for size in range(4096 - 200, 4096 + 40):
        a = (b"x\r\n-" * 2000)[:size]
        got = receive(body(part("a.txt", a), part("b.txt", b"second")), archive)
        assert [(f.name, f.sha256) for f in got] == [("a.txt", digest(a)), ("b.txt", digest(b"second"))], size
    assert_clean(archive)


def test_random_files_over_many_chunks_are_bit_exact(archive: LocalArchive) -> None:
    blobs = [os.urandom(n) for n in (0, 1, 4095, 4096, 4097, 100_000, 300_001)]
    # Random data with the delimiter's first bytes planted everywhere.
    blobs.append(b"".join(os.urandom(97) + b"\r\n--" + DELIM[2:9] for _ in range(2000)))
    data = body(*(part(f"f{i}.txt", b) for i, b in enumerate(blobs)))
    for step in (None, 1000, 4096, 65536):
        got = receive(data, archive, step=step)
        assert [f.sha256 for f in got] == [digest(b) for b in blobs]
        assert [f.size for f in got] == [len(b) for b in blobs]
    assert archive.path(digest(blobs[-1])).read_bytes() == blobs[-1]
    assert_clean(archive)


def test_first_boundary_at_offset_zero_and_transport_padding(archive: LocalArchive) -> None:
    data = body(part("a.txt", b"one")).replace(DELIM + b"\r\n", DELIM + b" \t \r\n", 1)
    assert data.startswith(DELIM)
    assert [f.name for f in receive(data, archive)] == ["a.txt"]


def test_parts_without_a_file_name_are_ignored(archive: LocalArchive) -> None:
    data = body(part(None, b"plain value", field="note"), part("a.chk", b"H\n"), part(None, b"x" * 10_000, field="z"))
    got = receive(data, archive, step=7)
    assert [(f.name, f.size) for f in got] == [("a.chk", 2)]
    with pytest.raises(BadRequest) as err:
        receive(body(part(None, b"only a field", field="note")), archive)
    assert err.value.code == "no_files"
    assert_clean(archive)


def test_rfc5987_file_names_and_lower_case_headers(archive: LocalArchive) -> None:
    raw = (DELIM + b"\r\ncontent-disposition: form-data; name=files; filename*=UTF-8''%E6%B9%96%E5%8C%97.txt\r\n\r\n"
           b"data\r\n" + DELIM + b"--\r\n")
    assert [f.name for f in receive(raw, archive)] == ["湖北.txt"]


def test_crlf_at_the_end_of_a_part_belongs_to_the_delimiter_only_once(archive: LocalArchive) -> None:
    got = receive(body(part("a.txt", b"line\r\n"), part("b.txt", b"\r\n\r\n")), archive)
    assert [f.size for f in got] == [6, 4]


def test_header_block_too_long_is_refused(archive: LocalArchive) -> None:
    long_header = f"X-Filler: {'y' * HEADER_LIMIT}\r\n"
    data = body(part("a.txt", b"data", extra=long_header))
    for step in (None, 1000):
        with pytest.raises(BadRequest) as err:
            receive(data, archive, step=step)
        assert err.value.code == "bad_multipart"
    # Headers that never end are refused once they pass the limit, not read forever.
    endless = DELIM + b"\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n" + b"X: y\r\n" * 10_000
    with pytest.raises(BadRequest) as err:
        receive(endless, archive, step=512)
    assert err.value.code == "bad_multipart"
    assert_clean(archive)


def test_header_line_without_colon_or_not_utf8_is_malformed(archive: LocalArchive) -> None:
    for bad in (b"no colon here", b"Content-Disposition: form-data; filename=\"\xff.txt\""):
        raw = DELIM + b"\r\n" + bad + b"\r\n\r\ndata\r\n" + DELIM + b"--\r\n"
        with pytest.raises(BadRequest) as err:
            receive(raw, archive)
        assert err.value.code == "bad_multipart"


@pytest.mark.parametrize("cut", [
    lambda d: d[:-len(DELIM) - 4],       # the final delimiter is missing
    lambda d: d[:-4],                    # the final delimiter is cut inside the boundary
    lambda d: d[:-3],                    # ... just before its second dash
    lambda d: d[:d.index(b"\r\n\r\n") + 2],  # inside the first header block
    lambda d: b"",                       # nothing at all
    lambda d: b"no delimiter anywhere " * 100,
])
def test_a_body_without_its_final_delimiter_is_incomplete(archive: LocalArchive, cut: Any) -> None:
    data = cut(body(part("a.chk", b"H\n"), part("a.txt", os.urandom(10_000))))
    for step in (None, 333):
        with pytest.raises(BadRequest) as err:
            receive(data, archive, step=step)
        assert err.value.code == "upload_incomplete"
    assert_clean(archive)
    assert not any(p.is_file() for p in archive.objects.rglob("*"))


def test_many_parts_and_the_file_count_cap(archive: LocalArchive) -> None:
    blobs = [f"file {i}\n".encode() * (i % 7) for i in range(300)]
    data = body(*(part(f"f{i:03}.txt", b) for i, b in enumerate(blobs)))
    got = receive(data, archive, step=1500)
    assert [f.name for f in got] == [f"f{i:03}.txt" for i in range(300)]
    assert [f.sha256 for f in got] == [digest(b) for b in blobs]
    with pytest.raises(PayloadTooLarge) as err:
        receive(data, archive, max_files_per_delivery=299)
    assert err.value.code == "too_many_files"
    assert_clean(archive)


def test_size_caps_are_checked_while_streaming(archive: LocalArchive) -> None:
    data = body(part("a.chk", b"H\n"), part("a.txt", b"z" * 20_000))
    with pytest.raises(PayloadTooLarge) as err:
        receive(data, archive, max_file_size=19_999)
    assert err.value.code == "file_too_large" and err.value.errors == {"file": "a.txt", "limit": 19_999}
    # An unknown length (chunked transfer coding) is capped by what is actually read.
    with pytest.raises(PayloadTooLarge) as err:
        receive_multipart(io.BytesIO(data), CT, None, archive, settings_for(archive, max_delivery_size=10_000))
    assert err.value.code == "delivery_too_large"
    assert_clean(archive)


def test_a_stream_that_fails_mid_body_is_incomplete(archive: LocalArchive) -> None:
    class Broken(Trickle):
        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            if self.at > 5000:
                raise TimeoutError("timed out")
            return super().read(size)

    data = body(part("a.txt", os.urandom(20_000)))
    with pytest.raises(BadRequest) as err:
        receive_multipart(Broken(data, 1000), CT, len(data), archive, settings_for(archive))  # type: ignore[arg-type]
    assert err.value.code == "upload_incomplete"
    assert_clean(archive)


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=" + "b" * 71,
                                          'multipart/form-data; boundary="bad\x01"'])
def test_invalid_boundaries_are_refused(archive: LocalArchive, content_type: str) -> None:
    with pytest.raises(BadRequest) as err:
        receive_multipart(io.BytesIO(b""), content_type, 0, archive, settings_for(archive))
    assert err.value.code in ("bad_multipart", "not_multipart")


def test_write_back_is_started_while_a_big_file_arrives(archive: LocalArchive, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchange_server.storage import archive as archive_module

    hints: list[tuple[int, int]] = []
    monkeypatch.setattr(archive_module, "WRITEBACK_STEP", 10_000)
    monkeypatch.setattr(archive_module, "_FADVISE", lambda fd, offset, length, advice: hints.append((offset, length)))
    blob = os.urandom(50_000)
    got = receive(body(part("a.txt", blob)), archive)
    assert got[0].sha256 == digest(blob)
    assert len(hints) >= 4 and hints[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in zip(hints, hints[1:]))  # consecutive ranges, each once
