"""Read a delimited file as bounded batches of whole lines, as UTF-8 bytes for polars.

Bytes are read in blocks and cut after the last LF of each block, so a batch always holds
whole lines (the file's lines end in LF: tier 1 refuses a file whose last line has none).
UTF-8 is handed on as it is (polars validates it as it reads it). GB18030 is transcoded to
UTF-8 with Python's codec, block by block. The reading, cutting and transcoding run on a
second thread, a batch ahead, so that they overlap the
checks of the batch in hand (the codec holds the GIL for a block, the polars work releases
it). Tier 1 has not decoded the file (``DeliveryValidator.run``): a block that is not in
its encoding raises UnicodeDecodeError here, or in ``as_lines``. A line
longer than ``long_line`` bytes is not put in a batch: it is returned as its byte range,
for the row path's own reader, so memory stays bounded by the block size whatever the
file holds.
"""
from __future__ import annotations

from queue import Full, Queue
from threading import Event, Thread
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import polars as pl

BLOCK = 4 << 20
LONG_LINE = 32 << 20


@dataclass
class Batch:
    """``count`` whole lines of a file, as UTF-8 ``data`` ending in LF, starting at line ``first`` + 1."""

    first: int
    data: bytes | None  # None for one over-long line, read by the row path from ``start``..``end``
    count: int = 0
    start: int = 0
    end: int = 0


def as_lines(data: bytes) -> pl.Series:
    """The lines of a batch's bytes (each without its LF) as a string Series; UnicodeDecodeError if not UTF-8."""
    try:
        text = pl.Series("l", [data], dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.PolarsError:
        data.decode("utf-8")  # says where
        raise UnicodeDecodeError("utf-8", data, 0, len(data), "invalid UTF-8") from None
    lines = text.str.split("\n").explode()
    return lines.slice(0, len(lines) - 1)  # the block ends with LF: the last piece is empty


def _utf8(data: bytes, codec: str) -> bytes:
    """The block as UTF-8: GB18030 transcoded (UnicodeDecodeError when it is not GB18030), UTF-8 as it is.

    UTF-8 is validated where polars reads it (``core``: the CSV reader refuses an invalid
    sequence, and so does ``as_lines``, which then raises UnicodeDecodeError).
    """
    return data if codec == "utf-8" else data.decode(codec).encode("utf-8")


def _blocks(path: Path, bom: bool, block: int, long_line: int) -> Iterator[tuple[bytes | None, int, int, int]]:
    """(bytes of whole lines, line count, start, end); bytes None for an over-long line at start..end."""
    with path.open("rb") as fh:
        offset = 0
        if bom:
            head = fh.read(3)
            if head == b"\xef\xbb\xbf":
                offset = 3
            else:
                fh.seek(0)
        carry = b""
        carry_at = offset
        while True:
            data = fh.read(block)
            if not data:
                break
            buf = carry + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) <= long_line:
                    carry = buf
                    continue
                # One line longer than the bound: find where it ends without holding it.
                end = carry_at + len(buf)
                while True:
                    more = fh.read(block)
                    if not more:
                        break
                    j = more.find(b"\n")
                    if j >= 0:
                        end += j + 1
                        fh.seek(end)
                        break
                    end += len(more)
                yield None, 1, carry_at, end
                carry, carry_at = b"", end
                continue
            whole = buf[:cut + 1]
            yield whole, whole.count(b"\n"), carry_at, carry_at + len(whole)
            carry = buf[cut + 1:]
            carry_at += len(whole)
        if carry:  # no final LF: tier 1 stops such a file, but stay correct
            yield carry + b"\n", 1, carry_at, carry_at + len(carry)


def batches(path: Path, encoding: str, block: int = BLOCK, long_line: int = LONG_LINE) -> Iterator[Batch]:
    """The file's lines in batches of about ``block`` bytes.

    The file is read, cut into blocks and (GB18030) transcoded on a second thread, a batch
    ahead of the caller, so that this work overlaps the caller's checks of the batch in
    hand. An error there is raised here, in its place.
    """
    utf8 = encoding.upper() == "UTF-8"
    return ahead(lambda: _produce(path, utf8, "utf-8" if utf8 else "gb18030", block, long_line), "columnar-reader")


T = TypeVar("T")


def ahead(produce: Callable[[], Iterator[T]], name: str) -> Iterator[T]:
    """The items of ``produce()``, made on a second thread one item ahead of the caller.

    An exception raised there is raised here, after the items made before it. When the
    caller stops early the thread stops at its next item.
    """
    queue: Queue[tuple[T] | BaseException | None] = Queue(maxsize=1)
    stop = Event()

    def put(item: tuple[T] | BaseException | None) -> bool:
        """Hand an item over; False once the caller has stopped reading."""
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put((item,)):
                    return
            put(None)
        except BaseException as exc:  # handed to the caller, who raises it in its place
            put(exc)

    thread = Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            got = queue.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield got[0]
    finally:
        stop.set()
        thread.join()


def _produce(path: Path, utf8: bool, codec: str, block: int, long_line: int) -> Iterator[Batch]:
    line = 0
    for data, n, start, end in _blocks(path, utf8, block, long_line):
        yield Batch(line, None if data is None else _utf8(data, codec), n, start, end)
        line += n
