"""deploy/nginx/tracker.conf as shipped, run by a real nginx on loopback ports.

Only the ports, the certificate paths and the upstream address change. The tests
(test_front_nginx.py) run it as production would; the benchmark (bench/ingest.py)
runs it without the ``limit_req`` first wall, since a load generator on one address
is not many learners.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    def __init__(self, folder: Path, cert: str, key: str, upstream_port: int, *, flood_limits: bool = True,
                 access_log: str = "access.log", log_format: str | None = None, workers: str = "1"):
        self.folder, self.port, self.http_port = folder, free_port(), free_port()
        site = (ROOT / "deploy" / "nginx" / "tracker.conf").read_text()
        site = re.sub(r"^\s*listen \[::\]:.*$", "", site, flags=re.M)
        site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{self.port} ssl")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
        site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
        site = site.replace("/etc/tracker/tls/cert.pem", cert).replace("/etc/tracker/tls/key.pem", key)
        if log_format:  # the bench's own format, for the whole server
            site = re.sub(r"^\s*access_log .*$", "", site, flags=re.M)
        site = site.replace("/var/log/nginx/tracker-access.log", f"{folder}/{access_log}")
        if not flood_limits:
            site = re.sub(r"^\s*limit_req .*$", "", site, flags=re.M)
        (folder / "tracker.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        log_format_line = f"    log_format bench '{log_format}';" if log_format else ""
        (folder / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes {workers};
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 2048; }}
http {{
{log_format_line}
    access_log {folder}/{access_log}{" bench buffer=64k" if log_format else ""};
{temp}
    include {folder}/tracker.conf;
}}
""")
        self.url = f"https://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        check = subprocess.run([NGINX, "-t", "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"),
                                         "-g", "daemon off;"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start: " + (self.folder / "error.log").read_text())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process.stderr.close()
