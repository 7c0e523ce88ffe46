"""A throwaway nginx on loopback, running the site configuration printed in docs/deploying.md.

The test takes the ``nginx`` block of the deployment guide as it stands and changes only
what must differ on a test machine: the listen addresses (loopback, free ports), the
certificate files, and the exchange server's port. Each of those is an exact piece of
text; if the guide stops containing one, ``site_config`` fails rather than testing some
other configuration. nginx runs in the foreground under its own prefix (pid file, logs,
temporary files in a temporary folder) and is stopped by its own process id.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploying.md"

# The guide's example values, and what each becomes in a test.
LISTEN_HTTPS = "listen 443 ssl;"
LISTEN_HTTP = "listen 80;"
CERT = "ssl_certificate     /etc/kam/tls/fullchain.pem;"
KEY = "ssl_certificate_key /etc/kam/tls/privkey.pem;"
UPSTREAM = "server 127.0.0.1:8080;"


def find_nginx() -> Path | None:
    """The nginx binary, if installed."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    return Path(found) if found else None


def documented_site() -> str:
    """The guide's nginx site configuration (its ```nginx block that proxies)."""
    blocks = re.findall(r"```nginx\n(.*?)```", GUIDE.read_text("utf-8"), flags=re.S)
    sites = [b for b in blocks if "proxy_pass" in b]
    if len(sites) != 1:
        raise AssertionError(f"{GUIDE} should hold exactly one ```nginx block with proxy_pass, found {len(sites)}")
    return sites[0]


def site_config(https_port: int, http_port: int, cert: Path, key: Path, upstream_port: int) -> str:
    """The guide's site with test addresses, certificate and upstream."""
    text = documented_site()
    for piece, replacement in ((LISTEN_HTTPS, f"listen 127.0.0.1:{https_port} ssl;"),
                               (LISTEN_HTTP, f"listen 127.0.0.1:{http_port};"),
                               (CERT, f"ssl_certificate     {cert};"), (KEY, f"ssl_certificate_key {key};"),
                               (UPSTREAM, f"server 127.0.0.1:{upstream_port};")):
        if piece not in text:
            raise AssertionError(f"the nginx configuration in {GUIDE} no longer contains {piece!r}")
        text = text.replace(piece, replacement)
    return text


@dataclass
class Nginx:
    """One nginx master process (and its worker) serving ``site`` from ``prefix``."""

    binary: Path
    prefix: Path
    https_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The HTTPS address clients use."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def error_log(self) -> Path:
        """nginx's error log."""
        return self.prefix / "error.log"

    def start(self, site: str) -> "Nginx":
        """Write the main configuration around ``site``, start nginx, wait until it listens."""
        tmp = self.prefix / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would drop to a user who cannot read tmp
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            f"{user}worker_processes 1;\npid {self.prefix}/nginx.pid;\nerror_log {self.error_log} info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"    access_log {self.prefix}/access.log;\n"
            f"    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n"
            f"    fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;\n"
            f"{site}\n}}\n", "utf-8")
        test = subprocess.run([str(self.binary), "-t", "-e", str(self.error_log), "-p", str(self.prefix),
                               "-c", str(conf)], capture_output=True, text=True)
        if test.returncode != 0:
            raise AssertionError(f"nginx -t refused the configuration:\n{test.stderr}")
        with (self.prefix / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen([str(self.binary), "-e", str(self.error_log), "-p", str(self.prefix),
                                          "-c", str(conf), "-g", "daemon off;"], stdout=err, stderr=err)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not listen within 15 s: {self.log_tail()}")

    def log_tail(self) -> str:
        """The end of nginx's error log (for failure messages)."""
        try:
            return self.error_log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Graceful stop (SIGQUIT) of this nginx only; SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_nginx(binary: Path, prefix: Path, cert: Path, key: Path, upstream_port: int) -> Nginx:
    """nginx with the guide's site in front of ``127.0.0.1:upstream_port``, TLS with ``cert`` and ``key``."""
    nginx = Nginx(binary, prefix, free_port(), free_port())
    return nginx.start(site_config(nginx.https_port, nginx.http_port, cert, key, upstream_port))
