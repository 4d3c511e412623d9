"""The compose file's load balancer on this machine: nginx with deploy/nginx, in front of local replicas.

docker-compose.yml's ``balancer`` runs nginx with ``deploy/nginx/ilcs.conf`` (the proxy: retries,
timeouts) and ``deploy/nginx/servers.conf`` (the replicas: the compose service name, re-resolved).
``write_config`` renders the same two files for replicas on loopback ports: ``ilcs.conf`` with
only its ``listen`` address changed, and one ``server`` line per replica with servers.conf's own
parameters (``resolve`` dropped: loopback addresses need no DNS, and Debian's nginx predates it).
``Balancer`` runs the real nginx binary on them; tests/deploy/test_scale_out.py and
benchmarks/scale_out.py both use it, so what they test is what compose deploys.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["NGINX_DIR", "Balancer", "find_nginx", "write_config"]

NGINX_DIR = Path(__file__).resolve().parents[1] / "deploy" / "nginx"
_SERVER = re.compile(r"^server\s+inspector:8000\s+resolve(?P<params>(?:\s+[\w=]+)*)\s*;\s*$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen 8000;$", re.MULTILINE)


def find_nginx() -> str | None:
    """The nginx binary on PATH or in /usr/sbin (Debian's, not on a normal user's PATH), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def write_config(work: Path, listen_port: int, replicas: list[str]) -> Path:
    """Write nginx's configuration for ``replicas`` (``host:port``) into ``work``; returns the main file."""
    proxy = (NGINX_DIR / "ilcs.conf").read_text()
    proxy, n = _LISTEN.subn(rf"\1listen 127.0.0.1:{listen_port};", proxy)
    if n != 1:
        msg = f"{NGINX_DIR / 'ilcs.conf'} no longer has one `listen 8000;` line: update {__name__}"
        raise ValueError(msg)
    match = _SERVER.search((NGINX_DIR / "servers.conf").read_text())
    if match is None:
        msg = f"{NGINX_DIR / 'servers.conf'} no longer has `server inspector:8000 resolve ...;`: update {__name__}"
        raise ValueError(msg)
    (work / "ilcs").mkdir(parents=True, exist_ok=True)
    (work / "ilcs.conf").write_text(proxy)
    (work / "ilcs" / "servers.conf").write_text("".join(f"server {r}{match['params']};\n" for r in replicas))
    temp = work / "temp"
    temp.mkdir(exist_ok=True)
    # The official image's nginx.conf, reduced to what a foreground nginx in a work folder needs.
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the work folder
    main = work / "nginx.conf"
    main.write_text(
        f"{user}worker_processes 1;\npid {work}/nginx.pid;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log {work}/access.log;\n"
        f"    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n    scgi_temp_path {temp}/scgi;\n"
        "    include ilcs.conf;\n}\n"
    )
    return main


class Balancer:
    """nginx in the foreground with ``write_config``'s files, ready (answering) when entered."""

    def __init__(self, binary: str, work: Path, port: int, replicas: list[str]) -> None:
        self.binary, self.work, self.port = binary, work, port
        self.url = f"http://127.0.0.1:{port}"
        self.config = write_config(work, port, replicas)

    def __enter__(self) -> Balancer:
        argv = [self.binary, "-p", str(self.work), "-c", str(self.config), "-e", str(self.work / "error.log"),
                "-g", "daemon off;"]  # fmt: skip
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            msg = f"nginx refused the configuration: {check.stderr}"
            raise RuntimeError(msg)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                msg = f"nginx did not start: {self.error_log()[-3000:]}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nginx's fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/nginx-health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def error_log(self) -> str:
        log = self.work / "error.log"
        return log.read_text() if log.is_file() else ""
