"""The agent's parts on their own: configuration, exit codes, lock, resend numbers, backoff, schedule."""
from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from pathlib import Path

import pytest

from province_agent._exceptions import ConfigError, LockedError, TransportError
from province_agent.config import RetryPolicy, load_config
from province_agent.lock import RunLock
from province_agent.retry import backoff, with_retries
from province_agent.state import LOCAL_REJECTED, State
from province_agent.template import render_template
from schemas import Spec


def agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "province_agent.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "kam-agent.toml"
    p.write_text(text, "utf-8")
    return p


def test_template_loads_and_every_problem_names_its_key(tmp_path: Path, spec: Spec) -> None:
    cfg = load_config(write(tmp_path, render_template(spec)))
    assert cfg.party == "42" and cfg.state_dir == tmp_path / "state" and len(cfg.units) == 6
    bad = [("[agent]\nparty='99x'\nstate_dir='s'\nexport_dir='e'\n[server]\nurl='http://x'", "agent.party"),
           ("[agent]\nparty='42'\nstate_dir='s'\nexport_dir='e'\n[server]\ntransport='ftp'", "server.transport"),
           ("[agent]\nparty='42'\nstate_dir='s'\nexport_dir='e'\n[server]\ntransport='sftp'", "sftp.host"),
           ("[agent]\nparty='42'\nstate_dir='s'\nexport_dir='e'\n[server]\nurl='http://x'\nverfy_tls=false",
            "server"),
           ("[agent]\nparty='42'\nstate_dir='s'\nexport_dir='e'\n[server]\nurl='http://x'\n[retry]\nattempts='5'",
            "retry.attempts"),
           ("[agent]\nparty='42'\n[server]\nurl='http://x'", "agent"),
           ("[agent\nparty='42'", None)]
    for text, key in bad:
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, text))
        if key:
            assert f"[{key}]" in str(err.value), (key, str(err.value))
        assert "kam-agent.toml" in str(err.value)


def test_exit_codes_for_cron(tmp_path: Path, spec: Spec) -> None:
    r = agent("--config", str(tmp_path / "missing.toml"), "run", cwd=tmp_path)
    assert r.returncode == 2 and "ConfigError" in r.stderr and "Traceback" not in r.stderr
    cfg = render_template(spec, url="http://127.0.0.1:9")  # nothing listens on port 9
    cfg = cfg.replace("attempts = 5", "attempts = 2").replace("base_seconds = 2", "base_seconds = 0.1")
    write(tmp_path, cfg)
    (tmp_path / "token").write_text("kam_x")
    r = agent("--config", str(tmp_path / "kam-agent.toml"), "run", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "failed after 2 attempt(s)" in r.stderr and "Traceback" not in r.stderr
    r = agent("--config", str(tmp_path / "kam-agent.toml"), "--json", "run", cwd=tmp_path)
    assert r.returncode == 3 and '"kind": "TransportError"' in r.stdout


def test_the_secret_is_read_from_its_file_not_the_config(tmp_path: Path, spec: Spec) -> None:
    cfg = load_config(write(tmp_path, render_template(spec)))
    with pytest.raises(ConfigError, match="server.token_file"):
        cfg.token()
    (tmp_path / "token").write_text("kam_secret\n")
    assert cfg.token() == "kam_secret"


def test_two_runs_never_overlap(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        with pytest.raises(LockedError, match="another run"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+');"
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
                               str(tmp_path / "agent.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError):
        with RunLock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with RunLock(tmp_path):  # the kernel dropped the dead process's lock
        pass


def test_resend_numbers(tmp_path: Path) -> None:
    state = State(tmp_path)
    assert state.next_resend("202610") == 0
    assert state.next_resend("202610", server_max=3) == 4  # HQ knows more than we do
    state.add("202610", "P", 0, "P_42_202610_00", tmp_path, ["32001"], "x")
    assert state.next_resend("202610") == 1
    state.add("202610", "P", 1, "P_42_202610_01", tmp_path, ["32001"], "y", LOCAL_REJECTED)
    assert state.next_resend("202610") == 1  # never sent: the number is free again
    fixed = state.add("202610", "P", 1, "P_42_202610_01", tmp_path, ["32001"], "z")  # the corrected build takes it
    assert [(r.resend, r.state) for r in state.for_cycle("202610")] == [(0, "built"), (1, "built")]
    assert fixed.content == "z" and state.next_resend("202610") == 2
    assert state.next_resend("202610", mode="T") == 0  # test deliveries are numbered on their own
    state.close()


def test_backoff_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(attempts=5, base_seconds=2, max_seconds=30)
    rng = random.Random(1)
    waits = [backoff(n, policy, rng) for n in range(6)]
    assert all(2 ** n <= w * 2 <= 2 ** (n + 1) * 2 for n, w in enumerate(waits[:4]))
    assert max(waits) <= 30 and waits[5] >= 15
    calls: list[float] = []
    tries = iter([OSError("refused"), OSError("refused"), "ok"])

    def flaky() -> str:
        v = next(tries)
        if isinstance(v, Exception):
            raise v
        return v

    assert with_retries("x", flaky, policy, (OSError,), sleep=calls.append) == "ok" and len(calls) == 2
    with pytest.raises(TransportError, match="failed after 5"):
        with_retries("x", lambda: (_ for _ in ()).throw(OSError("down")), policy, (OSError,), sleep=calls.append)


def test_schedule_prints_cron_and_systemd(tmp_path: Path) -> None:
    r = agent("--config", "kam-agent.toml", "schedule", cwd=tmp_path)
    assert r.returncode == 0
    assert "run >> /var/log/kam-agent/agent.log" in r.stdout
    assert "[Timer]" in r.stdout and "Persistent=true" in r.stdout and "Type=oneshot" in r.stdout
    assert str(tmp_path / "kam-agent.toml") in r.stdout


def test_due_cycles_follow_state_and_exceptions(tmp_path: Path, spec: Spec) -> None:
    from province_agent.runner import Agent
    from province_agent.transport.base import CycleInfo

    agent = Agent(load_config(write(tmp_path, render_template(spec, url="http://127.0.0.1:9"))),
                  today=dt.date(2026, 11, 23))
    end = dt.date(2026, 10, 31)
    cycles = [CycleInfo("202610", "open", end, "20261110180000", ("32001",)),
              CycleInfo("202609", "closed", dt.date(2026, 9, 30), "20261010180000", ("32001",)),
              CycleInfo("202608", "closed", dt.date(2026, 8, 31), "20260910180000", ("32001",), "20991231180000"),
              CycleInfo("202607", "closed", dt.date(2026, 7, 31), "20260810180000", ("32001",), "20200101000000"),
              CycleInfo("202611", "open", dt.date(2026, 11, 30), "20261210180000", ("32001",)),  # not ended yet
              CycleInfo("202612", "planned", dt.date(2026, 12, 31), "20270110180000", ("32001",)),
              CycleInfo("202606", "unknown", dt.date(2026, 6, 30), "20260710180000", ("32001",)),  # > 60 days late
              CycleInfo("202605", "unknown", dt.date(2026, 10, 1), "20261010180000", ("32001",))]
    assert [c.id for c in agent.due_cycles(cycles)] == ["202605", "202608", "202610"]
    agent.close()
