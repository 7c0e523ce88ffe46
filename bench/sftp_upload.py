"""SFTP benchmark: one ~1 GB delivery to our embedded SFTP server and to OpenSSH's sshd, and back.

    python -m bench.sftp_upload                 # a 1 GiB delivery, each transfer 3 times (about 5 minutes)
    python -m bench.sftp_upload --quick         # a 50 MiB smoke run, each transfer once
    python -m bench.sftp_upload --clients "OpenSSH sftp,paramiko"   # only these clients
    python -m bench.sftp_upload --profile 256   # also: cProfile of our server in-process, 256 MiB upload

One valid delivery (a check file and one GB18030 text file of ``31201 VIP_CUST_INFO``, as
``bench.upload`` writes it, party 44) is streamed to disk in a child process. Then, one
after another, each with the machine to itself (``sync`` before each run):

- ``ours`` — ``exchange-server serve --workers 0`` as its own process on a fresh data
  directory (SQLite; account ``prov44`` with an Ed25519 key, cycle 202610 open), SFTP on its
  own port; a fresh one for every upload (the same bytes twice would be one delivery). The
  server takes the delivery out of the inbox on its own (hash, copy into the archive,
  record, receipt): that is timed separately, from the end of the upload until the
  delivery's row is in ``exchange.db`` ("taken into the archive").
- ``OpenSSH sshd`` — ``tests.support.sshd.OpenSshServer``: a real ``sshd`` on loopback,
  chrooted, ``internal-sftp``, writing into ``inbox/`` on the same disk. The reference.

Clients (each the same for both servers; wall time, connection included):

- ``OpenSSH sftp`` — ``sftp -b`` with a batch of ``put data inbox/<name>.part``, ``rename``,
  then the check file the same way; no ``-B``, so the client picks its request size (8.7 and
  later ask the server with ``limits@openssh.com``). The reference against sshd.
- ``OpenSSH sftp -B 32768`` and ``-B 262144`` — the same with the request size pinned
  (OpenSSH's client refuses to send 256 KiB WRITEs itself: that run is expected to fail
  against both servers and is then recorded once, with the client's message).
- ``paramiko`` — ``SSHClient`` + ``open_sftp().put()``, as the province agent's SFTP transport
  does; in a child process.
- ``OpenSSH sftp -B 262144 (get)`` — a download: the data file is copied into the outbox
  (untimed), fetched with ``get``, checked against the original (size, SHA-256) and deleted.

The request size each client used (``sftp -vvv``, or the ``-B`` given) is reported with the
cipher. Throughput is given as a ratio to the reference run and to the same client against
sshd.

Peak memory of our server is its ``VmHWM`` from /proc (since start); for sshd it is the
largest sum of ``VmHWM`` over the listener and its session processes seen while sampling
every 0.1 s. The generated files and data directories are deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.upload import (
    CYCLE, MiB, PROVINCE, ROOT, VENV_BIN, Process, delivery_files, free_port, generate, proc_status_kib, report,
    scratch, sha256_file, wait_http,
)

ACCOUNT = f"prov{PROVINCE}"  # bench.data writes Guangdong's (44) deliveries; the account must send as 44


# -- helpers -------------------------------------------------------------------------------------
def run_cli(data_dir: Path, *args: str) -> str:
    """``exchange-server --data-dir D ...``; its standard output."""
    out = subprocess.run([str(VENV_BIN / "exchange-server"), "--data-dir", str(data_dir), *args],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return out.stdout


def make_key(path: Path) -> Path:
    """A fresh Ed25519 key pair without passphrase; returns the private key's path."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kam-bench", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class PeakSampler:
    """Samples the sum of VmHWM over a process tree every 0.1 s; ``peak_mib`` is the largest sum seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            total = sum(proc_status_kib(p, "VmHWM") for p in descendants(self.pid))
            self.peak_kib = max(self.peak_kib, total)
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        """The largest sum seen, in MiB."""
        return self.peak_kib / 1024


@dataclass
class Target:
    """Where to upload: an SFTP endpoint, the user and key, and how to see its memory."""

    name: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    pid: int
    tree: bool  # sum over the process tree (sshd) or the one process (ours)
    inbox_path: Path | None = None  # where uploads land (to remove the cipher probe's file)
    outbox_path: Path | None = None  # where downloads are placed (the "get" client)


def sftp_batch(files: Sequence[Path], path: Path) -> Path:
    """The ``sftp -b`` batch: data files first, the check file last, each under .part and renamed."""
    ordered = [p for p in files if not p.name.endswith(".chk")] + [p for p in files if p.name.endswith(".chk")]
    lines = []
    for p in ordered:
        lines += [f'put "{p}" "inbox/{p.name}.part"', f'rename "inbox/{p.name}.part" "inbox/{p.name}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def openssh_cmd(t: Target, batch: Path, verbose: bool = False, options: Sequence[str] = ()) -> list[str]:
    """The OpenSSH ``sftp`` command line, host key checked against our known_hosts only."""
    return ["sftp", *(["-vvv"] if verbose else []), *options, "-b", str(batch), "-P", str(t.port), "-i", str(t.key),
            "-o", f"UserKnownHostsFile={t.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            f"{t.user}@127.0.0.1"]


def negotiated(client: "Client", t: Target, work: Path) -> tuple[str, str]:
    """The cipher and MAC a client negotiates with a server, and its request size (an untimed ``pwd`` with
    ``sftp -vvv``; for paramiko, what the child reports of an empty upload)."""
    if client.kind == "paramiko":
        empty = work / "empty.txt"
        empty.write_bytes(b"x")
        cipher = _upload_paramiko(t, [empty], work)[1]
        for p in (t.inbox_path / "empty.txt",) if t.inbox_path else ():
            p.unlink(missing_ok=True)
        return cipher, "32,768"  # paramiko's SFTPFile.MAX_REQUEST_SIZE
    batch = work / "pwd.batch"
    batch.write_text("pwd\n")
    out = subprocess.run(openssh_cmd(t, batch, verbose=True, options=client.options), capture_output=True, text=True)
    cipher, size = "?", ""
    for line in out.stderr.splitlines():
        if "kex: client->server cipher:" in line:  # "<cipher> MAC: <mac> compression: none"
            name, _, rest = line.split("cipher:", 1)[1].strip().partition(" MAC: ")
            mac = rest.split(" compression:")[0]
            cipher = name if mac == "<implicit>" else f"{name}, {mac}"
        if "upload/download buffer sizes" in line:  # "...; using <up> / <down>" (limits@openssh.com)
            up, _, down = line.rsplit("using ", 1)[1].partition(" / ")
            size = f"{int(up if client.direction == 'upload' else down):,}"
    if client.buflen:
        size = f"{client.buflen:,}"
    return cipher, size or "32,768"  # OpenSSH's default without limits@openssh.com


class ClientRefused(RuntimeError):
    """The transfer failed (the message is what the client said)."""


def telling_line(stderr: str) -> str:
    """The line of a client's error output that says what went wrong."""
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    return next((x for x in lines if "too long" in x), lines[-1] if lines else "")


def upload_openssh(t: Target, files: Sequence[Path], work: Path, options: Sequence[str] = ()) -> float:
    """Run the sftp batch; wall seconds."""
    cmd = openssh_cmd(t, sftp_batch(files, work / "upload.batch"), options=options)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise ClientRefused(f"sftp {' '.join(options)} to {t.name} failed ({out.returncode}): "
                            f"{telling_line(out.stderr)}")
    return seconds


def download_openssh(t: Target, files: Sequence[Path], work: Path, options: Sequence[str] = ()) -> float:
    """Place the data file in the outbox (untimed), fetch it with ``sftp get``; wall seconds. The copy is
    checked against the original (size and SHA-256) and deleted."""
    assert t.outbox_path is not None
    src = max(files, key=lambda p: p.stat().st_size)
    t.outbox_path.mkdir(parents=True, exist_ok=True)
    placed = t.outbox_path / src.name
    shutil.copyfile(src, placed)
    got = work / "download" / src.name
    got.parent.mkdir(exist_ok=True)
    batch = work / "download.batch"
    batch.write_text(f'get "outbox/{src.name}" "{got}"\n')
    os.sync()
    try:
        t0 = time.perf_counter()
        out = subprocess.run(openssh_cmd(t, batch, options=options), capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise ClientRefused(f"sftp {' '.join(options)} from {t.name} failed ({out.returncode}): "
                                f"{telling_line(out.stderr)}")
        if got.stat().st_size != src.stat().st_size or sha256_file(got) != sha256_file(src):
            raise RuntimeError(f"download from {t.name}: the copy differs from the original")
        return seconds
    finally:
        placed.unlink(missing_ok=True)
        got.unlink(missing_ok=True)


def _paramiko_child(port: int, user: str, key: str, known_hosts: str, files: list[str]) -> dict[str, Any]:
    """In a child process: connect with paramiko and put every file (.part, rename), the check file last."""
    import paramiko

    ordered = [f for f in files if not f.endswith(".chk")] + [f for f in files if f.endswith(".chk")]
    t0 = time.perf_counter()
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port, user, key_filename=key, look_for_keys=False, allow_agent=False, timeout=60)
    sftp = client.open_sftp()
    transport = client.get_transport()
    assert transport is not None
    cipher = transport.local_cipher + ("" if transport.local_cipher.endswith("-gcm@openssh.com")
                                       else f", {transport.local_mac}")
    for f in ordered:
        name = Path(f).name
        sftp.put(f, f"inbox/{name}.part", confirm=True)
        sftp.posix_rename(f"inbox/{name}.part", f"inbox/{name}")
    client.close()
    return {"seconds": time.perf_counter() - t0, "cipher": cipher}


def upload_paramiko(t: Target, files: Sequence[Path], work: Path) -> float:
    """paramiko's upload; seconds."""
    try:
        return _upload_paramiko(t, files, work)[0]
    except RuntimeError as exc:
        raise ClientRefused(str(exc)) from exc


def _upload_paramiko(t: Target, files: Sequence[Path], work: Path) -> tuple[float, str]:
    """paramiko in a fresh interpreter (so the benchmark's own threads do not share its GIL); seconds, cipher."""
    out = subprocess.run([sys.executable, "-m", "bench.sftp_upload", "--child-paramiko",
                          json.dumps([t.port, t.user, str(t.key), str(t.known_hosts), [str(p) for p in files]])],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"paramiko to {t.name} failed: {out.stderr[-1500:]}")
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), str(answer["cipher"])


@dataclass(frozen=True)
class Client:
    """One way to move the delivery: a client, its options, and which way."""

    name: str
    kind: str  # "openssh" or "paramiko"
    direction: str = "upload"  # or "download" (the data file, from the outbox)
    buflen: int = 0  # sftp -B; 0: the client's own choice (with limits@openssh.com: the server's)

    @property
    def options(self) -> tuple[str, ...]:
        """Extra sftp options."""
        return ("-B", str(self.buflen)) if self.buflen else ()

    def run(self, t: Target, files: Sequence[Path], work: Path) -> float:
        """One timed transfer; seconds (ClientRefused when the transfer fails)."""
        if self.kind == "paramiko":
            return upload_paramiko(t, files, work)
        if self.direction == "download":
            return download_openssh(t, files, work, self.options)
        return upload_openssh(t, files, work, self.options)


CLIENTS: list[Client] = [
    Client("OpenSSH sftp", "openssh"),
    Client("OpenSSH sftp -B 32768", "openssh", buflen=32768),
    Client("OpenSSH sftp -B 262144", "openssh", buflen=262144),  # OpenSSH's client refuses this itself
    Client("paramiko", "paramiko"),
    Client("OpenSSH sftp -B 262144 (get)", "openssh", direction="download", buflen=262144),
]
REFERENCE = "OpenSSH sftp"  # with sshd: the reference run every ratio is taken against


# -- the servers ---------------------------------------------------------------------------------
class Ours:
    """``exchange-server serve --workers 0`` on a fresh data directory, SFTP on its own port."""

    def __init__(self, work: Path, key: Path) -> None:
        self.data_dir = work / "ours"
        shutil.rmtree(self.data_dir, ignore_errors=True)
        run_cli(self.data_dir, "init")
        run_cli(self.data_dir, "account", "create", ACCOUNT, "--role", "province", "--party", PROVINCE)
        run_cli(self.data_dir, "sshkey", "add", ACCOUNT, str(key) + ".pub")
        run_cli(self.data_dir, "cycle", "create", CYCLE, "--open", "--deadline", "20261231180000")
        port, self.sftp_port = free_port(), free_port()
        cmd = [str(VENV_BIN / "exchange-server"), "--data-dir", str(self.data_dir), "serve",
               "--port", str(port), "--sftp-port", str(self.sftp_port), "--workers", "0"]
        self.log = work / "ours.log"
        with self.log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.p = Process(proc, f"http://127.0.0.1:{port}", self.log)
        wait_http(self.p.url + "/healthz", proc, timeout=120)
        host_key = " ".join((self.data_dir / "keys" / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        kh = work / "known_hosts.ours"
        kh.write_text(f"[127.0.0.1]:{self.sftp_port} {host_key}\n")
        self.target = Target("ours", self.sftp_port, ACCOUNT, key, kh, self.p.pid, tree=False,
                             inbox_path=self.data_dir / "sftp" / PROVINCE / "inbox",
                             outbox_path=self.data_dir / "sftp" / PROVINCE / "outbox")
        self.db = self.data_dir / "exchange.db"

    def deliveries(self) -> list[tuple[int, int]]:
        """(id, total_size) of every recorded delivery."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return [(int(a), int(b)) for a, b in con.execute("select id, total_size from delivery")]
        except sqlite3.OperationalError:  # locked for a moment: try again
            return []
        finally:
            con.close()

    def wait_taken(self, timeout: float = 600) -> float:
        """Seconds until a delivery row exists (and the inbox is empty again)."""
        t0 = time.perf_counter()
        inbox = self.data_dir / "sftp" / PROVINCE / "inbox"
        recorded = None
        while time.perf_counter() - t0 < timeout:
            if recorded is None and self.deliveries():
                recorded = time.perf_counter() - t0
            if recorded is not None and not [p for p in inbox.iterdir() if p.is_file()]:
                return recorded
            time.sleep(0.02)
        raise RuntimeError(f"no delivery recorded within {timeout:.0f} s; see {self.log}")

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self.p.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Sshd:
    """OpenSSH's sshd (tests.support.sshd), chrooted, with a writable inbox/."""

    def __init__(self, work: Path, key: Path) -> None:
        from tests.support.sshd import OpenSshServer

        pub = " ".join((Path(str(key) + ".pub")).read_text().split()[:2])
        self.server = OpenSshServer(work / "sshd", [pub]).start()
        self.inbox = self.server.mkdir("inbox")
        self.outbox = self.server.mkdir("outbox")
        kh = work / "known_hosts.sshd"
        kh.write_text(f"[127.0.0.1]:{self.server.port} {self.server.host_key_line}\n")
        assert self.server.proc is not None
        self.target = Target("OpenSSH sshd", self.server.port, "root", key, kh, self.server.proc.pid, tree=True,
                             inbox_path=self.inbox, outbox_path=self.outbox)

    def clear(self) -> None:
        """Empty the inbox between runs."""
        for p in self.inbox.iterdir():
            p.unlink()

    def close(self) -> None:
        """Stop sshd and remove its chroot."""
        self.server.close()


# -- measurements --------------------------------------------------------------------------------
@dataclass
class Run:
    """One measurement (median of its runs)."""

    client: str
    server: str
    bytes: int
    direction: str = "upload"
    request: str = ""  # the request size the client used (bytes)
    seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    idle_mib: list[float] = field(default_factory=list)
    taken: list[float] = field(default_factory=list)
    cipher: str = ""
    ok: bool = True
    error: str = ""  # the transfer failed: what the client said

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)

    @property
    def mb_s(self) -> float:
        """Throughput of the median run in MB/s (10^6 bytes); 0 when it failed."""
        return self.bytes / 1e6 / self.median if self.seconds and not self.error else 0.0


def transferred(client: Client, files: Sequence[Path], total: int) -> int:
    """The bytes one transfer moves: the whole delivery up, or the data file down."""
    return total if client.direction == "upload" else max(p.stat().st_size for p in files)


def measure_ours(client: Client, files: Sequence[Path], expected: dict[str, tuple[int, str]], total: int,
                 work: Path, key: Path, times: int) -> Run:
    """Each upload on a fresh server and data directory (the same bytes twice would be one delivery); the
    downloads from one server. A failed transfer is recorded once, not repeated."""
    r = Run(client.name, "ours (serve --workers 0)", transferred(client, files, total), client.direction)
    srv: Ours | None = None
    try:
        for i in range(times):
            os.sync()
            if srv is None or client.direction == "upload":
                if srv is not None:
                    srv.close()
                srv = Ours(work, key)
            if i == 0:
                r.cipher, r.request = negotiated(client, srv.target, work)
            r.idle_mib.append(srv.p.rss_mib())
            try:
                r.seconds.append(client.run(srv.target, files, work))
            except ClientRefused as exc:
                r.error, r.ok = str(exc), False
                break
            r.peak_mib.append(srv.p.peak_mib())
            if client.direction == "upload":
                r.taken.append(srv.wait_taken())
                rows = srv.deliveries()
                archived = archive_matches(srv.data_dir, expected)
                r.ok = r.ok and len(rows) == 1 and rows[0][1] == total and archived
    finally:
        if srv is not None:
            srv.close()
    return r


def archive_matches(data_dir: Path, expected: dict[str, tuple[int, str]]) -> bool:
    """Whether the delivery's files were recorded with the sizes and SHA-256s computed here."""
    con = sqlite3.connect(f"file:{data_dir / 'exchange.db'}?mode=ro", uri=True)
    try:
        cols = [c[1] for c in con.execute("pragma table_info(delivery_file)")]
        name_col = "name" if "name" in cols else next(c for c in cols if "name" in c)
        got = {n: (int(s), h) for n, s, h in con.execute(f"select {name_col}, size, sha256 from delivery_file")}
    finally:
        con.close()
    return got == expected


def measure_sshd(client: Client, srv: Sshd, files: Sequence[Path], expected: dict[str, tuple[int, str]],
                 total: int, work: Path, times: int) -> Run:
    """Each run into the emptied inbox of the same sshd (or from its outbox)."""
    r = Run(client.name, "OpenSSH sshd (internal-sftp)", transferred(client, files, total), client.direction)
    r.cipher, r.request = negotiated(client, srv.target, work)
    for _ in range(times):
        srv.clear()
        os.sync()
        r.idle_mib.append(sum(proc_status_kib(p, "VmRSS") for p in descendants(srv.target.pid)) / 1024)
        with PeakSampler(srv.target.pid) as sampler:
            try:
                r.seconds.append(client.run(srv.target, files, work))
            except ClientRefused as exc:
                r.error, r.ok = str(exc), False
        r.peak_mib.append(sampler.peak_mib)
        if r.error:
            break
        if client.direction == "upload":
            got = {p.name: p.stat().st_size for p in srv.inbox.iterdir()}
            r.ok = r.ok and got == {n: s for n, (s, _) in expected.items()}
    srv.clear()
    return r


def run(size: int, work: Path, times: int, clients: Sequence[Client]) -> tuple[dict[str, Any], list[Run]]:
    """Generate the delivery, then take every measurement, one after another."""
    gen = generate(size, work)
    folder = Path(gen["folder"])
    files = delivery_files(folder)
    expected = {p.name: (p.stat().st_size, sha256_file(p)) for p in files}
    total = sum(s for s, _ in expected.values())
    key = make_key(work / "id_ed25519")
    results = []
    try:
        sshd = Sshd(work, key)
        try:
            for client in clients:
                results.append(measure_sshd(client, sshd, files, expected, total, work, times))
        finally:
            sshd.close()
        for client in clients:
            results.append(measure_ours(client, files, expected, total, work, key, times))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return gen, results


def table(results: list[Run]) -> str:
    """The transfers as a Markdown table, each client against sshd and then ours, with throughput as a
    ratio to the reference run (OpenSSH sftp → sshd) and to the same client → sshd."""
    ref = next(r for r in results if r.client == REFERENCE and r.server.startswith("OpenSSH"))
    lines = ["| client | server | request, bytes | bytes | seconds (median) | runs, seconds (sorted) | MB/s | "
             "× OpenSSH→sshd | × same client→sshd | server peak MiB (idle) | "
             "taken into the archive, s (median; runs) | cipher | intact |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|"]
    order = {c.name: i for i, c in enumerate(CLIENTS)}
    for r in sorted(results, key=lambda x: (order.get(x.client, 99), not x.server.startswith("OpenSSH"))):
        same = next((x for x in results if x.client == r.client and x.server.startswith("OpenSSH")), None)
        idle = f" ({statistics.median(r.idle_mib):.0f})" if r.idle_mib else ""
        peak = f"{max(r.peak_mib):.0f}{idle}" if r.peak_mib else "—"
        if r.error:
            lines.append(f"| {r.client} | {r.server} | {r.request} | {r.bytes:,} | — | — | **fails** | — | — | "
                         f"{peak} | — | {r.cipher} | {r.error.split(': ', 1)[-1]} |")
            continue
        runs = ", ".join(f"{x:.2f}" for x in sorted(r.seconds))
        taken = (f"{statistics.median(r.taken):.2f} ({', '.join(f'{x:.2f}' for x in sorted(r.taken))})"
                 if r.taken else "—")
        vs_same = f"{r.mb_s / same.mb_s:.2f}" if same is not None and same.mb_s else "—"
        lines.append(f"| {r.client} | {r.server} | {r.request} | {r.bytes:,} | {r.median:.2f} | {runs} | "
                     f"{r.mb_s:,.0f} | {r.mb_s / ref.mb_s:.2f} | {vs_same} | {peak} | {taken} | {r.cipher} | "
                     f"{'yes' if r.ok else '**no**'} |")
    return "\n".join(lines)


# -- profiling ---------------------------------------------------------------------------------------
def profile(size: int, work: Path, client: str = "OpenSSH sftp", top: int = 25) -> str:
    """Our SFTP server in this process under cProfile (every thread), one upload of ``size`` bytes by ``client``.

    Only the upload is profiled (no scanner: the server is started without one).
    """
    import cProfile
    import io
    import pstats

    gen = generate(size, work)
    folder = Path(gen["folder"])
    files = delivery_files(folder)
    key = make_key(work / "id_prof")
    data_dir = work / "prof"
    run_cli(data_dir, "init")
    run_cli(data_dir, "account", "create", ACCOUNT, "--role", "province", "--party", PROVINCE)
    run_cli(data_dir, "sshkey", "add", ACCOUNT, str(key) + ".pub")

    from exchange_server.runtime import open_runtime
    from exchange_server.sftp.server import EmbeddedSftpServer

    rt = open_runtime({"data_dir": str(data_dir)})
    profiles: list[cProfile.Profile] = []
    import paramiko

    original = threading.Thread.run
    transport_run = paramiko.Transport.run  # a Thread subclass with its own run(): the packet layer

    def wrap(run: Callable[[Any], None]) -> Callable[[Any], None]:
        def profiled_run(self: threading.Thread) -> None:
            prof = cProfile.Profile()
            profiles.append(prof)
            prof.enable()
            try:
                run(self)
            finally:
                prof.disable()
        return profiled_run

    srv = EmbeddedSftpServer(rt, "127.0.0.1", 0)
    srv.start()
    host_key = " ".join((data_dir / "keys" / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    kh = work / "known_hosts.prof"
    kh.write_text(f"[127.0.0.1]:{srv.port} {host_key}\n")
    t = Target("ours (in-process)", srv.port, ACCOUNT, key, kh, os.getpid(), tree=False)
    # session threads start from here on
    threading.Thread.run = wrap(original)  # type: ignore[method-assign,assignment]
    paramiko.Transport.run = wrap(transport_run)
    cpu0 = time.process_time()
    try:
        seconds = next(c for c in CLIENTS if c.name == client).run(t, files, work)
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]
        paramiko.Transport.run = transport_run
    cpu = time.process_time() - cpu0
    time.sleep(1.0)  # let the session threads end (and their profiles stop)
    srv.shutdown()
    rt.db.dispose()
    out = io.StringIO()
    stats = pstats.Stats(*profiles, stream=out) if len(profiles) > 1 else pstats.Stats(profiles[0], stream=out)
    stats.sort_stats("tottime").print_stats(top)
    total = sum(p.stat().st_size for p in files)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    return (f"profiled upload ({client}): {total:,} bytes in {seconds:.2f} s under cProfile "
            f"({total / 1e6 / seconds:.0f} MB/s), server CPU {cpu:.2f} s\n" + out.getvalue())


def main() -> None:
    """Command line: run the benchmark and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child-paramiko":
        port, user, key, kh, files = json.loads(sys.argv[2])
        print(json.dumps(_paramiko_child(port, user, key, kh, files)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="size of the delivery in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    ap.add_argument("--quick", action="store_true", help="a 50 MiB smoke run, each measurement once")
    ap.add_argument("--profile", type=int, default=0, metavar="MiB",
                    help="only profile our server in-process (cProfile) for one upload of this size")
    ap.add_argument("--profile-client", choices=[c.name for c in CLIENTS if c.direction == "upload"],
                    default="OpenSSH sftp", help="client for --profile")
    ap.add_argument("--clients", default=",".join(c.name for c in CLIENTS),
                    help="comma-separated subset of: " + ", ".join(c.name for c in CLIENTS) + f" (always: {REFERENCE})")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one under /tmp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the sshd reference needs root (chroot, login as root)")
    work, size = scratch(a.work, "kam-bench-sftp-", (50 if a.quick else (a.profile or a.size_mb)) * MiB)
    try:
        if a.profile:
            print(profile(size, work, a.profile_client))
            return
        started = time.time()
        wanted = {REFERENCE, *(n.strip() for n in a.clients.split(","))}
        unknown = wanted - {c.name for c in CLIENTS}
        if unknown:
            sys.exit(f"unknown clients: {', '.join(sorted(unknown))}")
        gen, results = run(size, work, 1 if a.quick else a.repeat, [c for c in CLIENTS if c.name in wanted])
        ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        import paramiko

        report(gen, table(results), started, f" (client and server on the same machine), Python "
               f"{platform.python_version()}, {ssh_v}, paramiko {paramiko.__version__}", a.json, "runs", results)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
