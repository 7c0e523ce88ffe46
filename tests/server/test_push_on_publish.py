"""HQ push end to end: publishing a list on a running server puts each slice on the province's
own SFTP server (a real OpenSSH sshd), host key verified, without anyone running a command."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exchange_server.lists.services import ListService
from exchange_server.push.keys import hq_public_key_line
from exchange_server.push.services import PushService
from exchange_server.runtime.serve import Server
from exchange_server.sftp.outbox import place_list_slices
from tests.server.conftest import Setup
from tests.server.test_list_api import write_list
from tests.support.deliveries import valid_rows
from tests.support.sshd import OpenSshServer, require_sshd


def test_published_slice_reaches_the_provinces_own_server(setup: Setup, runtime: Any, tmp_path: Path,
                                                          spec: Any) -> None:
    require_sshd()
    sshd = OpenSshServer(tmp_path / "sshd", [hq_public_key_line(runtime.settings)]).start()
    try:
        sshd.mkdir("incoming")
        with runtime.db.session() as s:
            PushService(s, runtime.archive, "admin").set_target("42", "127.0.0.1", sshd.port, "root", "/incoming",
                                                                sshd.host_key_line)
        nets = sorted({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
        source = write_list(tmp_path / "l.csv", spec, [("G420000001", "42", nets[0]), ("G440000001", "44", "020")])
        server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=0)
        try:
            with runtime.db.session() as s:
                svc = ListService(s, runtime.archive, runtime.spec, "admin")
                svc.publish(svc.load(source, "2026V01"))
            assert place_list_slices(runtime, "2026V01") == 2
            want = {"D_42_2026V01_00.chk", "D_42_2026V01_31101_00_001.txt"}
            deadline = time.monotonic() + 30
            while {p.name for p in sshd.path("incoming").iterdir()} != want:
                assert time.monotonic() < deadline, sshd.log_text()[-2000:]
                time.sleep(0.2)
            pushed = sshd.path("incoming/D_42_2026V01_31101_00_001.txt").read_bytes()
            assert pushed == (runtime.settings.sftp_root / "42" / "outbox" / "D_42_2026V01_31101_00_001.txt").read_bytes()
            # The push worker marks a job done just after its file lands: wait for that commit too.
            while True:
                with runtime.db.session() as s:
                    jobs = PushService(s).jobs(party="42")
                    if {j.state for j in jobs} == {"done"} or time.monotonic() >= deadline:
                        break
                time.sleep(0.1)
            with runtime.db.session() as s:
                jobs = PushService(s).jobs(party="42")
                assert {j.state for j in jobs} == {"done"} and len(jobs) == 2
                assert PushService(s).jobs(party="44") == []  # no endpoint: outbox only
        finally:
            server.shutdown()
    finally:
        sshd.close()
