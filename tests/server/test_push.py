"""HQ push: queued files reach a province's own SFTP server (a real OpenSSH sshd on loopback).

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture); one sshd per test.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select, update

from exchange_server.audit.models import AuditEvent
from exchange_server.clock import utcnow
from exchange_server.errors import BadRequest, NotFound
from exchange_server.push.cli import push_group
from exchange_server.push.keys import (fingerprint, host_key_from_line, hq_public_key_line, hq_push_key_path,
                                       load_or_create_hq_key)
from exchange_server.push.models import DONE, FAILED, PENDING, PushJob
from exchange_server.push.services import PushService
from exchange_server.push.worker import Pusher
from exchange_server.runtime import Runtime
from tests.support.sshd import OpenSshServer, require_sshd

PARTY = "42"
NAME = "D_42_2026V01_00_001.txt"


def _pub(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@pytest.fixture
def sshd(runtime: Runtime, tmp_path: Path) -> Iterator[OpenSshServer]:
    """The province's SFTP server: trusts HQ's push key, has a writable /inbox."""
    require_sshd()
    server = OpenSshServer(tmp_path / "sshd", [hq_public_key_line(runtime.settings)]).start()
    server.mkdir("inbox")
    yield server
    server.close()


def _target(rt: Runtime, server: OpenSshServer, host_key: str | None = None, port: int | None = None) -> None:
    with rt.db.session() as s:
        PushService(s, rt.archive, "admin").set_target(PARTY, "127.0.0.1", port or server.port, "root", "/inbox",
                                                       host_key or server.host_key_line)


def _enqueue(rt: Runtime, data: bytes, name: str = NAME) -> int:
    sha = rt.archive.put_bytes(data)
    with rt.db.session() as s:
        job = PushService(s, rt.archive).enqueue(PARTY, name, sha, len(data), "list.publish")
        assert job is not None
        return job.id


def _job(rt: Runtime, job_id: int) -> PushJob:
    with rt.db.session() as s:
        job = s.get(PushJob, job_id)
        assert job is not None
        return job


def _audit(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _make_due(rt: Runtime, job_id: int) -> None:
    with rt.db.session() as s:
        s.execute(update(PushJob).where(PushJob.id == job_id).values(next_attempt_at=utcnow()))


# -- the HQ key -----------------------------------------------------------------------------
def test_hq_key_is_created_once_private_and_stable(runtime: Runtime) -> None:
    path = hq_push_key_path(runtime.settings)
    assert not path.exists()
    line = hq_public_key_line(runtime.settings)
    assert line.startswith("ssh-ed25519 AAAA")
    assert path == runtime.settings.data_path / "keys" / "hq_push_ed25519"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert hq_public_key_line(runtime.settings) == line  # loaded, not regenerated
    assert load_or_create_hq_key(runtime.settings).get_base64() == line.split()[1]


# -- pushing to a real sshd -----------------------------------------------------------------
def test_published_file_lands_whole_and_is_audited(runtime: Runtime, sshd: OpenSshServer) -> None:
    _target(runtime, sshd)
    # An older copy with other bytes is already there: it must be replaced, not appended to.
    (sshd.path("/inbox") / NAME).write_bytes(b"stale copy from an earlier push, longer than nothing\n" * 10)
    data = os.urandom(300_000) + "客户名称|中国电信\n".encode("gbk")
    job_id = _enqueue(runtime, data)

    assert Pusher(runtime).drain() == 1

    assert (sshd.path("/inbox") / NAME).read_bytes() == data
    assert sorted(p.name for p in sshd.path("/inbox").iterdir()) == [NAME]  # no .part left
    job = _job(runtime, job_id)
    assert (job.state, job.attempts, job.last_error) == (DONE, 1, None)
    assert job.pushed_at is not None
    [event] = _audit(runtime, "push.done")
    assert event.target == f"push_job:{job_id}"
    assert event.detail["party"] == PARTY and event.detail["file"] == NAME and event.detail["size"] == len(data)
    assert Pusher(runtime).drain() == 0  # nothing left to do


def test_wrong_host_key_is_refused_retried_then_failed(runtime: Runtime, sshd: OpenSshServer) -> None:
    other = _pub(ed25519.Ed25519PrivateKey.generate())
    _target(runtime, sshd, host_key=other)
    job_id = _enqueue(runtime, b"top-500 slice\n")

    before = utcnow()
    assert Pusher(runtime, base_delay=60, max_attempts=3).drain() == 1

    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (PENDING, 1)
    assert job.last_error is not None and "host key mismatch" in job.last_error
    assert fingerprint(host_key_from_line(other)) in job.last_error  # what we expected
    assert fingerprint(host_key_from_line(sshd.host_key_line)) in job.last_error  # what the server offered
    assert job.next_attempt_at >= before + dt.timedelta(seconds=60 * 0.8)  # backed off, not due now
    assert list(sshd.path("/inbox").iterdir()) == []  # nothing sent to a server we could not verify
    assert "Accepted publickey" not in sshd.log_text()  # we never even authenticated

    # Later attempts fail the same way; the last one gives up for good.
    _make_due(runtime, job_id)
    assert Pusher(runtime, base_delay=0, max_attempts=3).drain() == 2
    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (FAILED, 3)
    [event] = _audit(runtime, "push.failed")
    assert event.target == f"push_job:{job_id}" and "host key mismatch" in event.detail["error"]


def test_pinned_key_of_another_type_is_refused(runtime: Runtime, sshd: OpenSshServer) -> None:
    pinned = _pub(ec.generate_private_key(ec.SECP256R1()))  # the server only has an ed25519 key
    _target(runtime, sshd, host_key=pinned)
    job_id = _enqueue(runtime, b"feedback\n", "F_42_202610_00_001.txt")

    assert Pusher(runtime, max_attempts=1).drain() == 1

    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (FAILED, 1)
    assert job.last_error is not None
    assert fingerprint(host_key_from_line(pinned)) in job.last_error
    assert fingerprint(host_key_from_line(sshd.host_key_line)) in job.last_error


def test_endpoint_down_then_up_succeeds_on_a_later_attempt(runtime: Runtime, sshd: OpenSshServer) -> None:
    _target(runtime, sshd)
    data = b"list slice\n" * 1000
    job_id = _enqueue(runtime, data)
    sshd.stop()  # the province's server is down: connection refused
    pusher = Pusher(runtime, base_delay=0.2, timeout=5)

    assert pusher.drain() == 1
    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (PENDING, 1)
    assert job.last_error
    assert pusher.drain() == 0  # backing off: not due yet

    sshd.start()
    deadline = time.monotonic() + 10
    while _job(runtime, job_id).state == PENDING and time.monotonic() < deadline:
        pusher.drain()
        time.sleep(0.05)

    job = _job(runtime, job_id)
    assert (job.state, job.attempts, job.last_error) == (DONE, 2, None)
    assert (sshd.path("/inbox") / NAME).read_bytes() == data


def test_key_not_authorized_is_a_clear_failure(runtime: Runtime, sshd: OpenSshServer) -> None:
    sshd.set_authorized_keys([_pub(ed25519.Ed25519PrivateKey.generate())])
    _target(runtime, sshd)
    job_id = _enqueue(runtime, b"x\n")

    assert Pusher(runtime).drain() == 1

    job = _job(runtime, job_id)
    assert job.state == PENDING and job.last_error is not None and "authentication" in job.last_error


def test_cli_commands(runtime: Runtime, sshd: OpenSshServer, tmp_path: Path) -> None:
    runner = CliRunner()
    obj = {"data_dir": runtime.settings.data_dir, "database_url": runtime.settings.database_url}

    def cli(*args: str) -> str:
        result = runner.invoke(push_group, list(args), obj=dict(obj), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert cli("hq-key").strip() == hq_public_key_line(runtime.settings)
    key_file = tmp_path / "host_key.pub"
    key_file.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")  # a known_hosts line
    cli("target-set", PARTY, "--host", "127.0.0.1", "--port", str(sshd.port), "--user", "root",
        "--path", "/inbox", "--host-key-file", str(key_file))
    assert f"root@127.0.0.1:{sshd.port}" in cli("target-list")
    job_id = _enqueue(runtime, b"via the cli\n")
    assert "1 push attempt(s)" in cli("run", "--drain")
    assert f"{job_id}\t{PARTY}\t{NAME}\tdone" in cli("jobs", "--party", PARTY, "--state", "done")
    cli("target-remove", PARTY)
    assert "no push targets" in cli("target-list")


# -- the service ----------------------------------------------------------------------------
def test_enqueue_is_idempotent_and_needs_a_target(runtime: Runtime) -> None:
    data = b"slice\n"
    sha = runtime.archive.put_bytes(data)
    with runtime.db.session() as s:
        svc = PushService(s, runtime.archive)
        assert svc.enqueue(PARTY, NAME, sha, len(data), "list.publish") is None  # no endpoint: nothing
        assert svc.jobs() == []
        svc.set_target(PARTY, "127.0.0.1", 2222, "hq", "/inbox", _pub(ed25519.Ed25519PrivateKey.generate()))
        first = svc.enqueue(PARTY, NAME, sha, len(data), "list.publish")
        again = svc.enqueue(PARTY, NAME, sha, len(data), "list.publish")
        assert first is not None and again is not None and first.id == again.id
        assert len(svc.jobs(party=PARTY)) == 1
        assert svc.enqueue("44", NAME, sha, len(data), "list.publish") is None  # other province: no target
    # The same file in a new transaction (e.g. the publish retried) is still the one job.
    with runtime.db.session() as s:
        again = PushService(s, runtime.archive).enqueue(PARTY, NAME, sha, len(data), "list.publish")
        assert again is not None and again.id == first.id
    # New bytes under the same name supersede the older, still pending push.
    new = b"slice v2\n"
    sha2 = runtime.archive.put_bytes(new)
    with runtime.db.session() as s:
        svc = PushService(s, runtime.archive)
        second = svc.enqueue(PARTY, NAME, sha2, len(new), "list.publish")
        assert second is not None and second.id != first.id
        assert [j.id for j in svc.jobs(state=PENDING)] == [second.id]
        [old] = svc.jobs(state=FAILED)
        assert old.id == first.id and "superseded" in (old.last_error or "")


def test_set_target_validates_and_audits(runtime: Runtime) -> None:
    key = _pub(ed25519.Ed25519PrivateKey.generate())
    with runtime.db.session() as s:
        svc = PushService(s, runtime.archive, "admin")
        t = svc.set_target(PARTY, "sftp.gd.example", 22, "hq", "/in", f"sftp.gd.example {key} comment")
        assert t.host_key == key  # normalised to "type base64"
        assert svc.target_for(PARTY) is t and [x.party for x in svc.targets()] == [PARTY]
        for bad_key in ("ssh-ed25519 not*base64", "ssh-nope AAAA", "just-a-word",
                        "ssh-ed25519 " + key.split()[1][:-8]):
            with pytest.raises(BadRequest) as err:
                svc.set_target(PARTY, "h", 22, "hq", "/in", bad_key)
            assert err.value.code == "invalid_host_key"
        with pytest.raises(BadRequest):
            svc.set_target(PARTY, "bad host", 22, "hq", "/in", key)
        with pytest.raises(BadRequest):
            svc.set_target(PARTY, "h", 0, "hq", "/in", key)
        with pytest.raises(NotFound):
            svc.set_target("99", "h", 22, "hq", "/in", key)
        sha = runtime.archive.put_bytes(b"x")
        with pytest.raises(BadRequest):
            svc.enqueue(PARTY, "../escape.txt", sha, 1, "list.publish")
        svc.remove_target(PARTY)
        assert svc.target_for(PARTY) is None
        with pytest.raises(NotFound):
            svc.remove_target(PARTY)
    [event] = _audit(runtime, "push.target.set")
    assert event.actor == "admin" and event.detail["host_key_fingerprint"].startswith("SHA256:")
    assert len(_audit(runtime, "push.target.remove")) == 1


def test_enqueue_race_loses_only_its_savepoint(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"slice\n"
    sha = runtime.archive.put_bytes(data)
    with runtime.db.session() as s:
        svc = PushService(s, runtime.archive)
        svc.set_target(PARTY, "127.0.0.1", 2222, "hq", "/inbox", _pub(ed25519.Ed25519PrivateKey.generate()))
        first = svc.enqueue(PARTY, NAME, sha, len(data), "list.publish")
        assert first is not None
    # Another process inserted the same job between our look-up and our insert: the unique
    # constraint fires, the savepoint is rolled back and the caller's other work survives.
    real_job = PushService._job
    looked_up: list[int] = []

    def stale_first_lookup(self: PushService, *args: str | int) -> PushJob | None:
        looked_up.append(1)
        return None if len(looked_up) == 1 else real_job(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(PushService, "_job", stale_first_lookup)
    with runtime.db.session() as s:
        s.add(AuditEvent(actor="test", action="test.marker", target="x", detail={}))
        job = PushService(s, runtime.archive).enqueue(PARTY, NAME, sha, len(data), "list.publish")
        assert job is not None and job.id == first.id
    assert len(_audit(runtime, "test.marker")) == 1
    assert len(looked_up) == 2  # the insert really did hit the constraint
    with runtime.db.session() as s:
        assert len(PushService(s).jobs()) == 1


def test_job_of_a_vanished_pusher_comes_back_after_its_lease(runtime: Runtime, sshd: OpenSshServer) -> None:
    _target(runtime, sshd)
    job_id = _enqueue(runtime, b"lease\n")
    crashed = Pusher(runtime, lease_seconds=0)
    assert crashed._claim() is not None  # claimed, then the process "died" before pushing
    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (PENDING, 1)

    assert Pusher(runtime).drain() == 1
    job = _job(runtime, job_id)
    assert (job.state, job.attempts) == (DONE, 2)
