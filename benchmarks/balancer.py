"""The compose file's load balancer on this machine: nginx with deploy/nginx, in front of local replicas.

docker-compose.yml's ``balancer`` runs nginx with ``deploy/nginx/ilcs.conf`` (the proxy: retries,
timeouts) and ``deploy/nginx/servers.conf`` (the replicas: the compose service name, re-resolved).
``write_config`` renders the same two files for replicas on loopback ports: ``ilcs.conf`` with
only its ``listen`` address changed, and one ``server`` line per replica with servers.conf's own
parameters (``resolve`` dropped: loopback addresses need no DNS, and Debian's nginx predates it).
With ``ByName`` instead it keeps servers.conf's line, the compose service name, and points
``resolver`` at a DNS server of the caller's (tests/deploy/test_dns_discovery.py). ``Balancer``
runs the real nginx binary on them; tests/deploy/test_scale_out.py and benchmarks/scale_out.py
both use it, so what they test is what compose deploys.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NGINX_DIR", "Balancer", "ByName", "find_nginx", "nginx_resolves_upstreams", "write_config"]

NGINX_DIR = Path(__file__).resolve().parents[1] / "deploy" / "nginx"
_SERVER = re.compile(r"^server\s+inspector:8000\s+resolve(?P<params>(?:\s+[\w=]+)*)\s*;\s*$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen 8000;$", re.MULTILINE)
_RESOLVER = re.compile(r"^resolver 127\.0\.0\.11 ", re.MULTILINE)
# The first open-source nginx whose upstream `server ... resolve` re-resolves a name while it runs.
RESOLVE_SINCE = (1, 27, 3)


@dataclass(frozen=True)
class ByName:
    """The replicas as compose finds them: servers.conf's own line, the service name ``inspector``.

    ``resolver`` (``address[:port]``) replaces Docker's DNS in ilcs.conf, ``port`` the replicas' 8000.
    With ``resolve`` False the parameter is dropped, for an nginx older than ``RESOLVE_SINCE``: such
    an nginx resolves the name (with the system's resolver) only when it starts or reloads.
    """

    resolver: str
    port: int
    resolve: bool = True


def find_nginx() -> str | None:
    """The nginx binary on PATH or in /usr/sbin (Debian's, not on a normal user's PATH), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_resolves_upstreams(binary: str) -> bool:
    """Whether this nginx knows upstream ``server ... resolve`` (open source since ``RESOLVE_SINCE``)."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return match is not None and tuple(int(g) for g in match.groups()) >= RESOLVE_SINCE


def _replace_once(pattern: re.Pattern[str], new: str, text: str, file: str, what: str) -> str:
    text, n = pattern.subn(new, text)
    if n != 1:
        msg = f"{NGINX_DIR / file} no longer has one {what}: update {__name__}"
        raise ValueError(msg)
    return text


def write_config(work: Path, listen_port: int, replicas: list[str] | ByName) -> Path:
    """Write nginx's configuration for ``replicas`` (``host:port``, or ``ByName``) into ``work``; returns the
    main file."""
    proxy = _replace_once(_LISTEN, rf"\1listen 127.0.0.1:{listen_port};", (NGINX_DIR / "ilcs.conf").read_text(),
                          "ilcs.conf", "`listen 8000;` line")  # fmt: skip
    servers = (NGINX_DIR / "servers.conf").read_text()
    match = _SERVER.search(servers)
    if match is None:
        msg = f"{NGINX_DIR / 'servers.conf'} no longer has `server inspector:8000 resolve ...;`: update {__name__}"
        raise ValueError(msg)
    if isinstance(replicas, ByName):
        proxy = _replace_once(_RESOLVER, f"resolver {replicas.resolver} ", proxy, "ilcs.conf", "`resolver 127.0.0.11`")
        line = f"server inspector:{replicas.port}{' resolve' if replicas.resolve else ''}{match['params']};"
        servers = servers[: match.start()] + line + servers[match.end() :]
    else:
        servers = "".join(f"server {r}{match['params']};\n" for r in replicas)
    (work / "ilcs").mkdir(parents=True, exist_ok=True)
    (work / "ilcs.conf").write_text(proxy)
    (work / "ilcs" / "servers.conf").write_text(servers)
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
    """nginx in the foreground with ``write_config``'s files, ready (answering) when entered.

    ``launcher`` goes before nginx's command line (a tool that runs it in another namespace, say).
    """

    def __init__(
        self, binary: str, work: Path, port: int, replicas: list[str] | ByName, launcher: Sequence[str] = ()
    ) -> None:
        self.binary, self.work, self.port, self.launcher = binary, work, port, list(launcher)
        self.url = f"http://127.0.0.1:{port}"
        self.config = write_config(work, port, replicas)

    def __enter__(self) -> Balancer:
        argv = [*self.launcher, self.binary, "-p", str(self.work), "-c", str(self.config),
                "-e", str(self.work / "error.log"), "-g", "daemon off;"]  # fmt: skip
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
