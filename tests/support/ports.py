"""Free TCP ports on loopback for the servers the tests start, never the same one for two test workers.

Asking the kernel for port 0 and closing the socket leaves a window before the server binds
the port: another test worker may be handed the same port and start its own server there,
and a test then talks to the wrong server (a hub answering another hub's token with 401).
So each xdist worker takes ports from a block of its own below the kernel's ephemeral range
(32768 and up, where bind(0) and outgoing connections take theirs), one after another, and
only those nothing holds now.
"""
from __future__ import annotations

import itertools
import os
import socket

FIRST = 20_000
BLOCK = 1_500  # ports per worker: gw0 20000-21499, gw1 21500-22999, ... gw7 up to 31999


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) % 8 if digits else 0


_next = itertools.count()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now and no other test worker will be given."""
    base = FIRST + BLOCK * _worker_index()
    for _ in range(BLOCK):
        port = base + next(_next) % BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + BLOCK - 1}")
