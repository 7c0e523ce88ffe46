"""Faults on the way: each ends with exactly one accepted version on HQ's server and a correct
local status. The agent runs as a real process (``python -m province_agent.cli``), as cron runs it."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import func, select

from exchange_server.ingestion import queue
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.runtime.serve import Server
from exchange_server.sftp.keys import host_key_line
from exchange_server.submissions.models import Delivery, UnitVersion
from schemas import Spec
from tests.agent.conftest import CYCLE, AgentEnv, make_env
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def server_state(rt: Runtime) -> tuple[list[tuple[int, str]], int]:
    """(id, status) of every delivery, and the number of current versions."""
    with rt.db.session() as s:
        ds = [(d.id, d.status) for d in s.scalars(select(Delivery).order_by(Delivery.id))]
        current = s.scalar(select(func.count()).select_from(UnitVersion).where(UnitVersion.superseded_at.is_(None)))
    return ds, current or 0


def local_states(env: AgentEnv) -> list[tuple[str, str | None]]:
    path = env.home / "state" / "state.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return [(r[0], r[1]) for r in db.execute("SELECT state, status FROM delivery ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def assert_one_accepted(env: AgentEnv) -> None:
    ds, current = server_state(env.runtime)
    assert [s for _, s in ds] == ["accepted"], ds
    assert current == 6
    assert local_states(env) == [("judged", "accepted")]


class Hq:
    """HQ's server that a test can stop and start again on the same ports."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.port, self.sftp_port = free_port(), free_port()
        self.server: Server | None = None

    def start(self, workers: int = 1) -> Server:
        rt = open_runtime(settings=self.rt.settings)  # a fresh process's view: new engine, same data
        self.server = Server(rt, "127.0.0.1", self.port, sftp_port=self.sftp_port).start(workers=workers)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def hq(runtime: Runtime) -> Iterator[Hq]:
    h = Hq(runtime)
    yield h
    h.stop()


def env_for(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec, transport: str, customers: int = 3,
            url: str | None = None, sftp_port: int | None = None) -> AgentEnv:
    env = make_env(runtime, tmp_path, spec, transport, None, customers)
    (env.home / "known_hosts").write_text(
        f"[127.0.0.1]:{sftp_port or hq.sftp_port} {host_key_line(runtime.settings)}\n")
    env.write_config(url=url or hq.url, sftp_port=sftp_port or hq.sftp_port)
    return env


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_server_down_at_the_start(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec, transport: str) -> None:
    env = env_for(hq, runtime, tmp_path, spec, transport)
    agent = env.popen("run")
    # HQ comes up once the agent says it is retrying (nothing listens yet), not after a fixed
    # pause: on a loaded machine the agent may take longer than any pause to get that far.
    assert agent.stderr is not None and agent.stdout is not None
    said: list[str] = []
    retrying = threading.Event()

    def pump() -> None:
        for line in agent.stderr:  # type: ignore[union-attr]
            said.append(line)
            if "retrying" in line:
                retrying.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    assert retrying.wait(90), "".join(said)
    assert agent.poll() is None
    hq.start()
    out = agent.stdout.read()
    agent.wait(120)
    reader.join(10)
    assert agent.returncode == 0, out + "".join(said)
    assert_one_accepted(env)


class CuttingProxy:
    """A TCP proxy that cuts the first connection once the client has sent ``cut_after`` bytes."""

    def __init__(self, upstream: int, cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if upstream and self.cuts == 0 and sent + len(data) > self.cut_after:
                    self.cuts += 1
                    dst.sendall(data[: self.cut_after - sent])
                    raise ConnectionAbortedError("cut")
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_connection_cut_mid_upload(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec, transport: str) -> None:
    hq.start()
    proxy = CuttingProxy(hq.port if transport == "http" else hq.sftp_port, cut_after=60_000)
    try:
        env = env_for(hq, runtime, tmp_path, spec, transport, customers=800,
                      url=f"http://127.0.0.1:{proxy.port}" if transport == "http" else hq.url,
                      sftp_port=proxy.port if transport == "sftp" else hq.sftp_port)
        sizes = sum(p.stat().st_size for p in (env.home / "exports").iterdir())
        assert sizes > 100_000  # the cut happens inside the upload
        r = env.run("submit", "--cycle", CYCLE)
        assert r.returncode == 0, r.stdout + r.stderr
        assert proxy.cuts == 1
        assert_one_accepted(env)
    finally:
        proxy.close()


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_agent_killed_between_send_and_verdict(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec,
                                              transport: str) -> None:
    hq.start(workers=0)  # receives, judges nothing yet
    env = env_for(hq, runtime, tmp_path, spec, transport)
    agent = env.popen("submit", "--cycle", CYCLE)
    wait_for(lambda: local_states(env) == [("sent", None)], what="the agent to record the send")
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    assert server_state(runtime)[0][0][1] == "queued"
    IngestionWorker(runtime, "later").drain()  # HQ judges it while the agent is gone
    r = env.run("--json", "run")
    assert r.returncode == 0, r.stdout + r.stderr
    events = json.loads(r.stdout)["events"]
    assert [e["status"] for e in events if e["event"] == "verdict"] == ["accepted"]
    assert not any(e["event"] == "sent" for e in events)  # collected, not sent again
    assert_one_accepted(env)


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_server_restarted_mid_validation(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec,
                                         transport: str) -> None:
    hq.start(workers=0)
    env = env_for(hq, runtime, tmp_path, spec, transport)
    agent = env.popen("submit", "--cycle", CYCLE)
    wait_for(lambda: local_states(env) == [("sent", None)], what="the send")
    # A worker of the old server process took the job and died with it mid-validation.
    dead = queue.worker_identity().split(":")[0] + f":{2**22 + 11}:w0"
    with runtime.db.session() as s:
        assert queue.claim(s, dead, lease_seconds=3600) is not None
    hq.stop()
    time.sleep(1.0)  # the agent keeps asking and is refused
    hq.start(workers=1)  # the restarted server requeues the orphaned job and judges it
    out, err = agent.communicate(timeout=120)
    assert agent.returncode == 0, out + err
    assert "accepted" in out
    assert_one_accepted(env)


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_hq_dies_while_the_agent_waits_for_the_verdict(hq: Hq, runtime: Runtime, tmp_path: Path, spec: Spec,
                                                       transport: str) -> None:
    env = env_for(hq, runtime, tmp_path, spec, transport)
    env.write_config(url=hq.url, sftp_port=hq.sftp_port, verdict_timeout=6)
    hq.start(workers=0)  # receipts, but no verdict yet
    agent = env.popen("submit", "--cycle", CYCLE)
    wait_for(lambda: local_states(env) == [("sent", None)] or None, timeout=60)
    hq.stop()  # HQ goes away while the agent waits
    out, err = agent.communicate(timeout=120)
    assert agent.returncode == 3, out + err  # "HQ unreachable", not a success
    assert "HQ unreachable while waiting" in out + err
    assert local_states(env) == [("sent", None)]
    hq.start()  # back, with a worker: the next run collects the verdict
    r = env.run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_one_accepted(env)
