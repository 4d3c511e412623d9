"""Replicas found by DNS, as compose's are, without Docker: a real DNS server answers the service name.

Under compose, ``inspector`` resolves (Docker's DNS) to one address per replica, and both nginx
(deploy/nginx, ``server inspector:8000 resolve``) and Prometheus (``dns_sd_configs``) follow that
answer as replicas come and go. Here dnsmasq (Debian's) answers ``inspector`` from a hosts file
with loopback addresses (127.0.0.2, .3, .4, each with a stub HTTP replica on one port), nginx and
Prometheus run in a private mount namespace whose /etc/resolv.conf names that server, and the
answer is changed mid-test: from {.2, .3} to {.3, .4}.

* Prometheus with deploy/prometheus/prometheus.yml (only the port, the refresh and scrape intervals
  changed) scrapes exactly the replicas DNS names, before and after the change, without a reload.
* nginx with deploy/nginx (only ``listen``, the resolver's address and the replicas' port changed)
  sends requests to exactly those replicas. An nginx of 1.27.3 or later re-resolves the name while
  it runs (``resolve``), and the test then requires the new set without a reload. Debian 12's nginx
  (1.22) refuses ``resolve``; with it dropped, nginx resolves the name when it starts and reloads,
  so there the test shows the name found by DNS and the new set after ``nginx -s reload`` (SIGHUP)
  -- the re-resolution itself runs only in the compose image's nginx (reports/scale-out.md).

Needs root (the mount namespace and port 53 of 127.0.0.153), dnsmasq and the tool; skips otherwise.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from benchmarks.balancer import Balancer, ByName, find_nginx, nginx_resolves_upstreams
from tests.deploy.conftest import INSTALL
from tests.deploy.test_prometheus_e2e import Process, running, wait_until

DNS_ADDRESS = "127.0.0.153"  # dnsmasq's; resolv.conf can name no port, so it listens on 53
BEFORE, AFTER = ["127.0.0.2", "127.0.0.3"], ["127.0.0.3", "127.0.0.4"]
DEADLINE_S = 60
# Runs the command after it with /etc/resolv.conf replaced, for it alone ($0: the file to put there).
PRIVATE_RESOLV_CONF = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"']


class Dns:
    """dnsmasq answering ``inspector`` with the addresses of ``answer``, and nothing else (no upstream)."""

    def __init__(self, binary: str, work: Path) -> None:
        self.hosts, self.log = work / "hosts", work / "dnsmasq.log"
        self.resolv_conf = work / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {DNS_ADDRESS}\noptions timeout:1 attempts:2\n")
        self.hosts.write_text("")
        argv = [binary, "-C", "/dev/null", "--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts",
                f"--addn-hosts={self.hosts}", f"--listen-address={DNS_ADDRESS}", "--bind-interfaces", "--port=53",
                "--local-ttl=0", "--no-negcache", "--user=root", "--pid-file="]  # fmt: skip
        self.process = Process("dnsmasq", argv, dict(os.environ), self.log)
        wait_until("dnsmasq reading its hosts file", lambda: self._reads() == 1, DEADLINE_S, self.process.died)

    def _reads(self) -> int:
        return self.log.read_text().count(f"read {self.hosts}")

    def answer(self, addresses: list[str]) -> None:
        """From now on ``inspector`` resolves to ``addresses`` (dnsmasq re-reads its hosts file on SIGHUP)."""
        reads = self._reads()
        self.hosts.write_text("".join(f"{a} inspector\n" for a in addresses))
        self.process.proc.send_signal(signal.SIGHUP)
        wait_until("dnsmasq re-reading its hosts file", lambda: self._reads() > reads, DEADLINE_S, self.process.died)

    def launcher(self) -> list[str]:
        """The command prefix that runs a program with this server as its DNS."""
        return [*PRIVATE_RESOLV_CONF, str(self.resolv_conf)]


@pytest.fixture
def dns(tool, tmp_path) -> Iterator[Dns]:
    binary = tool("dnsmasq")
    if os.geteuid() != 0:
        pytest.skip("needs root: a private mount namespace for /etc/resolv.conf, and port 53 for the DNS server")
    probe = subprocess.run([*PRIVATE_RESOLV_CONF, "/dev/null", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.strip()}")
    server = Dns(binary, tmp_path)
    try:
        server.answer(BEFORE)
        yield server
    finally:
        server.process.stop()


class _Stub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ilcs_stub_replica 1\n"  # a valid exposition: Prometheus' scrape of it succeeds
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_replicas(free_port) -> Iterator[int]:
    """An HTTP stub on each of 127.0.0.2, .3 and .4, one port for all (as compose's replicas share 8000)."""
    port = free_port()
    servers = [ThreadingHTTPServer((address, port), _Stub) for address in sorted({*BEFORE, *AFTER})]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_prometheus_scrapes_the_replicas_dns_names(dns, stub_replicas, tool, free_port, prometheus_config, tmp_path):
    config = copy.deepcopy(prometheus_config)
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert (sd["names"], sd.get("type", "A")) == (["inspector"], "A"), (
        "the deployed discovery changed: update this test"
    )
    sd.update(port=stub_replicas, refresh_interval="1s")
    config["global"] = {**config["global"], "scrape_interval": "1s", "scrape_timeout": "1s"}
    config.pop("rule_files")  # the alerts are tested elsewhere; here only discovery
    work = tmp_path / "prometheus"
    (work / "data").mkdir(parents=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [*dns.launcher(), tool("prometheus"), f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running("prometheus", argv, dict(os.environ), work / "prometheus.log", f"{url}/-/ready") as prometheus:

        def scraped(addresses: list[str]) -> bool:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            found = {t["labels"]["instance"]: t["health"] for t in targets if t["labels"]["job"] == job["job_name"]}
            return found == {f"{a}:{stub_replicas}": "up" for a in addresses}

        wait_until(f"Prometheus scraping exactly {BEFORE}", lambda: scraped(BEFORE), DEADLINE_S, prometheus.died)
        dns.answer(AFTER)
        wait_until(f"Prometheus scraping exactly {AFTER}", lambda: scraped(AFTER), DEADLINE_S, prometheus.died)


def test_nginx_sends_requests_to_the_replicas_dns_names(dns, stub_replicas, free_port, tmp_path):
    nginx = find_nginx()
    if nginx is None:
        pytest.skip(f"nginx is not installed: {INSTALL['nginx']}")
    resolves = nginx_resolves_upstreams(nginx)
    replicas = ByName(resolver=DNS_ADDRESS, port=stub_replicas, resolve=resolves)
    with Balancer(nginx, tmp_path / "nginx", free_port(), replicas, launcher=dns.launcher()) as balancer:

        def answering(addresses: list[str]) -> bool:
            """Twenty requests in a row were answered by exactly ``addresses`` (X-Upstream), every one 200."""
            with httpx.Client(timeout=10) as client:
                answers = [client.get(f"{balancer.url}/metrics") for _ in range(20)]
            assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]
            return {r.headers["x-upstream"] for r in answers} == {f"{a}:{stub_replicas}" for a in addresses}

        def alive() -> str | None:
            code = balancer.proc.poll()
            return None if code is None else f"nginx exited with {code}: {balancer.error_log()[-2000:]}"

        wait_until(f"nginx sending to exactly {BEFORE}", lambda: answering(BEFORE), DEADLINE_S, alive)
        dns.answer(AFTER)
        if not resolves:  # nginx < 1.27.3 resolves only when it (re)loads its configuration
            balancer.proc.send_signal(signal.SIGHUP)
        wait_until(f"nginx sending to exactly {AFTER}", lambda: answering(AFTER), DEADLINE_S, alive)
