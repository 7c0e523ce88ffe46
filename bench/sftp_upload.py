"""SFTP upload benchmark: one ~1 GB delivery to our embedded SFTP server and to OpenSSH's sshd.

    python -m bench.sftp_upload                 # a 1 GiB delivery, each upload 3 times
    python -m bench.sftp_upload --quick         # a 50 MiB smoke run, each upload once
    python -m bench.sftp_upload --profile 256   # also: cProfile of our server in-process, 256 MiB upload

One valid delivery (a check file and one GB18030 text file of ``31201 VIP_CUST_INFO``, as
``bench.upload`` writes it, party 44) is streamed to disk in a child process. Then, one
after another, each with the machine to itself (``sync`` before each run):

- ``ours`` — ``exchange-server serve --workers 0`` as its own process on a fresh data
  directory (SQLite; account ``prov44`` with an Ed25519 key, cycle 202610 open), SFTP on its
  own port. The server takes the delivery out of the inbox on its own (hash, copy into the
  archive, record, receipt): that is timed separately, from the end of the upload until the
  delivery's row is in ``exchange.db`` ("taken into the archive").
- ``OpenSSH sshd`` — ``tests.support.sshd.OpenSshServer``: a real ``sshd`` on loopback,
  chrooted, ``internal-sftp``, writing into ``inbox/`` on the same disk. The reference.

Clients (each the same for both servers): OpenSSH's ``sftp -b`` with a batch of
``put data inbox/<name>.part``, ``rename``, then the check file the same way (wall time of
the command, connection included), and paramiko (``SSHClient`` + ``open_sftp().put()``, as
the province agent's SFTP transport does; in a child process, connection included).

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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.upload import (
    CYCLE, MiB, PROVINCE, ROOT, VENV_BIN, Process, delivery_files, free_port, generate, proc_status_kib,
    sha256_file, wait_http,
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


def sftp_batch(files: Sequence[Path], path: Path) -> Path:
    """The ``sftp -b`` batch: data files first, the check file last, each under .part and renamed."""
    ordered = [p for p in files if not p.name.endswith(".chk")] + [p for p in files if p.name.endswith(".chk")]
    lines = []
    for p in ordered:
        lines += [f'put "{p}" "inbox/{p.name}.part"', f'rename "inbox/{p.name}.part" "inbox/{p.name}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def openssh_cmd(t: Target, batch: Path, verbose: bool = False) -> list[str]:
    """The OpenSSH ``sftp`` command line, host key checked against our known_hosts only."""
    return ["sftp", *(["-v"] if verbose else []), "-b", str(batch), "-P", str(t.port), "-i", str(t.key),
            "-o", f"UserKnownHostsFile={t.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            f"{t.user}@127.0.0.1"]


def negotiated(client: str, t: Target, work: Path) -> str:
    """The cipher and MAC a client negotiates with a server (an untimed ``pwd`` with ``sftp -v``; for
    paramiko, what the child reports of an empty upload)."""
    if client == "paramiko":
        empty = work / "empty.txt"
        empty.write_bytes(b"x")
        cipher = _upload_paramiko(t, [empty], work)[1]
        for p in (t.inbox_path / "empty.txt",) if t.inbox_path else ():
            p.unlink(missing_ok=True)
        return cipher
    batch = work / "pwd.batch"
    batch.write_text("pwd\n")
    out = subprocess.run(openssh_cmd(t, batch, verbose=True), capture_output=True, text=True)
    for line in out.stderr.splitlines():
        if "kex: client->server cipher:" in line:  # "<cipher> MAC: <mac> compression: none"
            cipher, _, rest = line.split("cipher:", 1)[1].strip().partition(" MAC: ")
            mac = rest.split(" compression:")[0]
            return cipher if mac == "<implicit>" else f"{cipher}, {mac}"
    return "?"


def upload_openssh(t: Target, files: Sequence[Path], work: Path) -> float:
    """Run the sftp batch; wall seconds."""
    cmd = openssh_cmd(t, sftp_batch(files, work / "upload.batch"))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"sftp to {t.name} failed ({out.returncode}): {out.stderr[-1000:]}")
    return seconds


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
    return _upload_paramiko(t, files, work)[0]


def _upload_paramiko(t: Target, files: Sequence[Path], work: Path) -> tuple[float, str]:
    """paramiko in a fresh interpreter (so the benchmark's own threads do not share its GIL); seconds, cipher."""
    out = subprocess.run([sys.executable, "-m", "bench.sftp_upload", "--child-paramiko",
                          json.dumps([t.port, t.user, str(t.key), str(t.known_hosts), [str(p) for p in files]])],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"paramiko to {t.name} failed: {out.stderr[-1500:]}")
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), str(answer["cipher"])


CLIENTS: dict[str, Callable[[Target, Sequence[Path], Path], float]] = {
    "OpenSSH sftp": upload_openssh,
    "paramiko": upload_paramiko,
}


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
                             inbox_path=self.data_dir / "sftp" / PROVINCE / "inbox")
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
        kh = work / "known_hosts.sshd"
        kh.write_text(f"[127.0.0.1]:{self.server.port} {self.server.host_key_line}\n")
        assert self.server.proc is not None
        self.target = Target("OpenSSH sshd", self.server.port, "root", key, kh, self.server.proc.pid, tree=True,
                             inbox_path=self.inbox)

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
    seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    idle_mib: list[float] = field(default_factory=list)
    taken: list[float] = field(default_factory=list)
    cipher: str = ""
    ok: bool = True

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)

    @property
    def mb_s(self) -> float:
        """Throughput of the median run in MB/s (10^6 bytes)."""
        return self.bytes / 1e6 / self.median


def measure_ours(client: str, files: Sequence[Path], expected: dict[str, tuple[int, str]], total: int,
                 work: Path, key: Path, times: int) -> Run:
    """Each run on a fresh server and data directory (the same bytes twice would be one delivery)."""
    r = Run(client, "ours (serve --workers 0)", total)
    for i in range(times):
        os.sync()
        srv = Ours(work, key)
        try:
            if i == 0:
                r.cipher = negotiated(client, srv.target, work)
            r.idle_mib.append(srv.p.rss_mib())
            r.seconds.append(CLIENTS[client](srv.target, files, work))
            r.peak_mib.append(srv.p.peak_mib())
            r.taken.append(srv.wait_taken())
            rows = srv.deliveries()
            archived = archive_matches(srv.data_dir, expected)
            r.ok = r.ok and len(rows) == 1 and rows[0][1] == total and archived
        finally:
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


def measure_sshd(client: str, srv: Sshd, files: Sequence[Path], expected: dict[str, tuple[int, str]], total: int,
                 work: Path, times: int) -> Run:
    """Each run into the emptied inbox of the same sshd."""
    r = Run(client, "OpenSSH sshd (internal-sftp)", total)
    r.cipher = negotiated(client, srv.target, work)
    for _ in range(times):
        srv.clear()
        os.sync()
        r.idle_mib.append(sum(proc_status_kib(p, "VmRSS") for p in descendants(srv.target.pid)) / 1024)
        with PeakSampler(srv.target.pid) as sampler:
            r.seconds.append(CLIENTS[client](srv.target, files, work))
        r.peak_mib.append(sampler.peak_mib)
        got = {p.name: p.stat().st_size for p in srv.inbox.iterdir()}
        r.ok = r.ok and got == {n: s for n, (s, _) in expected.items()}
    srv.clear()
    return r


def run(size: int, work: Path, times: int) -> tuple[dict[str, Any], list[Run]]:
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
            for client in CLIENTS:
                results.append(measure_sshd(client, sshd, files, expected, total, work, times))
        finally:
            sshd.close()
        for client in CLIENTS:
            results.append(measure_ours(client, files, expected, total, work, key, times))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return gen, results


def table(results: list[Run]) -> str:
    """The uploads as a Markdown table, throughput against OpenSSH sftp → sshd."""
    ref = next(r for r in results if r.client == "OpenSSH sftp" and r.server.startswith("OpenSSH"))
    lines = ["| client | server | bytes | seconds (median) | runs, seconds (sorted) | MB/s | × OpenSSH→sshd MB/s | "
             "server peak MiB (idle) | taken into the archive, s (median; runs) | cipher | files intact |",
             "|---|---|---:|---:|---|---:|---:|---:|---|---|---|"]
    for r in results:
        runs = ", ".join(f"{x:.2f}" for x in sorted(r.seconds))
        idle = f" ({statistics.median(r.idle_mib):.0f})" if r.idle_mib else ""
        taken = (f"{statistics.median(r.taken):.2f} ({', '.join(f'{x:.2f}' for x in sorted(r.taken))})"
                 if r.taken else "—")
        lines.append(f"| {r.client} | {r.server} | {r.bytes:,} | {r.median:.2f} | {runs} | {r.mb_s:,.0f} | "
                     f"{r.mb_s / ref.mb_s:.2f} | {max(r.peak_mib):.0f}{idle} | {taken} | {r.cipher} | "
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
    paramiko.Transport.run = wrap(transport_run)  # type: ignore[method-assign,assignment]
    cpu0 = time.process_time()
    try:
        seconds = CLIENTS[client](t, files, work)
    finally:
        threading.Thread.run = original  # type: ignore[method-assign,assignment]
        paramiko.Transport.run = transport_run  # type: ignore[method-assign,assignment]
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
    ap.add_argument("--profile-client", choices=list(CLIENTS), default="OpenSSH sftp", help="client for --profile")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one under /tmp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the sshd reference needs root (chroot, login as root)")
    size = (50 if a.quick else (a.profile or a.size_mb)) * MiB
    work = a.work or Path(tempfile.mkdtemp(prefix="kam-bench-sftp-"))
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < 4 * size:  # the file, the inbox copy, the archive copy, slack
        size = max(MiB, free // 4)
        print(f"note: only {free / 2**30:.1f} GiB free under {work}; the delivery is cut to {size / MiB:.0f} MiB")
    try:
        if a.profile:
            print(profile(size, work, a.profile_client))
            return
        started = time.time()
        gen, results = run(size, work, 1 if a.quick else a.repeat)
        ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        import paramiko

        print(f"machine: {platform.machine()}, {os.cpu_count()} cores (client and server on the same machine), "
              f"Python {platform.python_version()}, {ssh_v}, paramiko {paramiko.__version__}; "
              f"wall {time.time() - started:.0f} s")
        print(f"delivery: 1 data file of {gen['rows']:,} rows + check file, {gen['bytes']:,} bytes; written in "
              f"{gen['seconds']:.1f} s, generator peak {gen['peak_mib']:.0f} MiB")
        print(table(results))
        if a.json:
            a.json.write_text(json.dumps({"generate": gen, "runs": [vars(r) | {"mb_s": r.mb_s} for r in results]},
                                         indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
