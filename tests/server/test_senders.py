"""No province can hurt another, and every delivery and fetch is credited to whoever authenticated.

Over real HTTP and OpenSSH ``sftp`` against a live server, on SQLite and PostgreSQL:
another province's files sent in Hubei's name are refused and change nothing for Hubei;
a province with two accounts has each account's SFTP deliveries credited to it; the same
bytes from one account are one delivery whichever channels carry them; fetching a list
slice over SFTP is an acknowledgement, as over HTTP.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.audit.models import AuditEvent
from exchange_server.lists.models import ListDownload
from exchange_server.lists.services import ListService
from exchange_server.runtime.serve import Server
from exchange_server.sftp.outbox import place_list_slices
from exchange_server.submissions.models import Delivery
from province_agent.transport import HttpTransport
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.server.test_sftp import Province, judged
from tests.support.deliveries import valid_rows
from tests.support.lists import Entry, write_list_csv
from tests.support.waiting import wait_for


def _renamed(folder: Path, party: str, resend: int) -> Path:
    """The same files under another party's and resend's names (what a hostile client does)."""
    out = folder.parent / f"{folder.name}-as-{party}-{resend:02d}"
    out.mkdir()
    for p in folder.iterdir():
        parts = p.name.split("_")
        parts[1] = party
        if p.name.endswith(".chk"):
            parts[3] = f"{resend:02d}.chk"
        else:
            parts[4] = f"{resend:02d}"
        data = p.read_bytes()
        if p.name.endswith(".chk"):  # the check file names the files and its own header
            text = data.decode("utf-8")
            for q in folder.iterdir():
                qp = q.name.split("_")
                qp[1] = party
                if q.name.endswith(".chk"):
                    continue
                qp[4] = f"{resend:02d}"
                text = text.replace(q.name, "_".join(qp))
            head, rest = text.split("\n", 1)
            h = head.split("|")
            h[3], h[5] = party, f"{resend:02d}"
            data = ("|".join(h) + "\n" + rest).encode("utf-8")
        (out / "_".join(parts)).write_bytes(data)
    return out


def test_another_provinces_delivery_in_hubeis_name_changes_nothing_for_hubei(
        setup: Setup, live_server: Server, spec: Any, tmp_path: Path, runtime: Any) -> None:
    setup.cycle("202610")
    hubei = HttpTransport(live_server.url, setup.province("42"))
    beijing = HttpTransport(live_server.url, setup.province("11"))
    analyst = HttpTransport(live_server.url, setup.role("analyst", "analyst"))
    own = valid_rows(spec).write(tmp_path / "hubei")
    # Beijing's token sends Hubei's files as Hubei's resend 99.
    forged = _renamed(own, "42", 99)
    status, receipt = beijing.upload(files_of(forged))
    assert status == 202
    d = wait_final(beijing, receipt["delivery_id"])
    assert d["status"] == "rejected" and {c["code"] for c in d["counts"]} >= {"E606"}
    # Hubei's own first delivery (resend 00) and a resend (01) are judged on their own merits.
    status, receipt = hubei.upload(files_of(own))
    first = wait_final(hubei, receipt["delivery_id"])
    assert first["status"] == "accepted", first["counts"]
    status, receipt = hubei.upload(files_of(valid_rows(spec).write(tmp_path / "r1", resend=1)))
    again = wait_final(hubei, receipt["delivery_id"])
    assert again["status"] == "accepted", again["counts"]
    # Hubei learns nothing of Beijing's attempt: not in its listing, not in its outbox, not in its resend numbers.
    listed = hubei.get_json("/api/v1/deliveries", {"cycle": "202610"})["items"]
    assert {x["delivery_id"] for x in listed} == {first["delivery_id"], again["delivery_id"]}
    outbox42 = runtime.settings.sftp_root / "42" / "outbox"
    assert not list(outbox42.glob("P_42_202610_99*")) if outbox42.exists() else True
    assert list((runtime.settings.sftp_root / "11" / "outbox").glob("P_42_202610_99.fbf.xml"))
    # HQ's completeness names only what Hubei's accounts sent.
    comp = analyst.get_json("/api/v1/reports/202610")["completeness"]
    cell = next(r for r in comp["matrix"] if r["prov_id"] == "42")["units"]["32001"]
    assert cell["state"] == "accepted" and cell["delivery_id"] == again["delivery_id"]
    with runtime.db.session() as s:
        assert s.get(Delivery, d["delivery_id"]).entitled is False
        assert s.get(Delivery, again["delivery_id"]).entitled is True


def test_each_account_is_credited_with_what_it_sent_on_every_channel(
        setup: Setup, live_server: Server, spec: Any, tmp_path: Path, runtime: Any) -> None:
    setup.cycle("202610")
    first = Province(live_server, setup, "42", tmp_path / "hubei")  # account prov42, the party's first
    second = Province(live_server, setup, "42", tmp_path / "crm2", user="hubei-crm2")

    def put(province: Province, folder: Path) -> None:
        names = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".chk"))
        check = next(p.name for p in folder.iterdir() if p.name.endswith(".chk"))
        cmds = ["cd inbox"] + [f"put {folder / n} {n}.part\nrename {n}.part {n}" for n in names]
        cmds += [f"put {folder / check} {check}.part", f"rename {check}.part {check}"]
        r = province.sftp("\n".join(cmds) + "\n")
        assert r.returncode == 0, r.stderr

    put(second, valid_rows(spec).write(tmp_path / "d0"))  # the party's second account, not its first
    judged(live_server, 1)
    folder1 = valid_rows(spec).write(tmp_path / "d1", resend=1)
    put(first, folder1)
    d0, d1 = judged(live_server, 2)
    with runtime.db.session() as s:
        names = {a.id: a.name for a in s.scalars(select(Account))}
        assert (names[d0.account_id], names[d1.account_id]) == ("hubei-crm2", "prov42")
        actors = {e.target: e.actor for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.received"))}
        assert actors[f"delivery:{d0.id}"] == "hubei-crm2" and actors[f"delivery:{d1.id}"] == "prov42"
        secret, _ = AccountService(s, "test").create_token(AccountService(s, "test").get("prov42"), "again")
    assert d1.status == "accepted"  # not E605: the second account's 00 and the first's 01 are one sequence
    # The same bytes over HTTP with the first account's token: the same delivery, its first receipt.
    status, receipt = HttpTransport(live_server.url, secret).upload(files_of(folder1))
    assert status == 200 and receipt["duplicate"] is True and receipt["delivery_id"] == d1.id
    with runtime.db.session() as s:
        assert len(s.scalars(select(Delivery)).all()) == 2


def test_a_list_slice_fetched_over_sftp_is_acknowledged(setup: Setup, live_server: Server, spec: Any,
                                                        tmp_path: Path, runtime: Any) -> None:
    hubei = Province(live_server, setup, "42", tmp_path / "hubei")
    nets = sorted({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.load(write_list_csv(tmp_path / "v1.csv", spec, [Entry("G420000001", "42", nets[0])]),
                                 "2026V01"))
    place_list_slices(runtime, "2026V01")
    got = tmp_path / "got"
    got.mkdir()
    r = hubei.sftp("cd outbox\nget D_42_2026V01_31101_00_001.txt\nget D_42_2026V01_00.chk\n", cwd=got)
    assert r.returncode == 0, r.stderr

    def acknowledged() -> list[Any] | None:
        with runtime.db.session() as s:
            rows = [(d.file_name, d.channel, d.account_id) for d in s.scalars(select(ListDownload))]
        return rows if len(rows) == 2 else None

    rows = wait_for(acknowledged)
    with runtime.db.session() as s:
        prov42 = s.scalar(select(Account).where(Account.name == "prov42"))
        assert prov42 is not None
    assert sorted(rows) == [("D_42_2026V01_00.chk", "sftp", prov42.id),
                            ("D_42_2026V01_31101_00_001.txt", "sftp", prov42.id)]
