"""A newcomer's first minute with ``exchange-server demo``: quiet start, and ready only when the data is in.

``/healthz`` answers 503 with the reason while the demo loads its sample deliveries, and 200 from the
moment the banner says "Ready" — by then the roll-up holds every province's figures.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from queue import Empty, Queue

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from exchange_server.demo import Readiness

CYCLE = "202610"


def healthz(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_gate_answers_healthz_until_ready() -> None:
    app = Readiness(lambda environ, start: Response(f"app {environ['PATH_INFO']}")(environ, start))
    client = Client(app)
    r = client.get("/healthz")
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json == {"status": "starting", "ready": False, "reason": "demo: loading the sample deliveries",
                      "reason_zh": "演示：正在载入样例报送"}
    assert client.get("/api/v1/deliveries").get_data(as_text=True) == "app /api/v1/deliveries"  # served meanwhile
    app.loading("computing the roll-up", "正在计算汇总")
    assert (client.get("/healthz").json or {})["reason"] == "demo: computing the roll-up"
    app.ready.set()
    assert client.get("/healthz").get_data(as_text=True) == "app /healthz"


@pytest.mark.slow
def test_the_demo_says_ready_only_with_data_and_logs_no_alembic_lines(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "exchange_server.cli", "demo", "--data-dir", str(tmp_path / "demo"),
                             "--port", "0", "--sftp-port", "0", "--cycle", CYCLE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: Queue[str | None] = Queue()
    errors: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def drain_errors() -> None:
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=drain_errors, daemon=True).start()
    out: list[str] = []

    def until(pattern: str) -> re.Match[str]:
        while True:
            try:
                line = lines.get(timeout=300)
            except Empty:
                pytest.fail("the demo went quiet:\n" + "".join(out[-30:]))
            if line is None:
                pytest.fail("the demo ended:\n" + "".join(out[-30:]) + "".join(errors[-30:]))
            out.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    try:
        url = until(r"HQ up at (http://127\.0\.0\.1:\d+);").group(1)
        status, body = healthz(url)  # the 30 provinces are only now uploading
        assert status == 503 and body["ready"] is False and str(body["reason"]).startswith("demo: "), body
        until(r"roll-up of 202610 ready: \d+ of \d+ local networks reported")
        until(r"^Ready / 就绪")
        until(r"^Stop with Ctrl-C\.")
        status, body = healthz(url)
        assert status == 200 and body["status"] == "ok", body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = "".join(out)
    assert text.index("30 deliveries judged at HQ") < text.index("roll-up of 202610 ready") < text.index("Ready / 就绪")
    assert not [e for e in errors if "alembic" in e], errors[:5]
    assert not [e for e in errors if "setuptools" in e.lower() or "SetuptoolsDeprecationWarning" in e], errors[:5]
