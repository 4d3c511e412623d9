"""Fixtures of the browser tests: ``ilcs serve`` on loopback, and Debian's headless Chromium with no network.

The browser is Debian's ``chromium`` driven through its ``chromedriver`` (apt packages; ``.ci/run``
installs them as root); the tests skip, saying so, where either is missing. Its host resolver
answers "not found" for every name but 127.0.0.1 and its proxy is a closed local port, so a
request to any other host fails instead of leaving the machine; the tests also read every URL the
browser requested from its performance log and assert that none is another host's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
STARTUP_DEADLINE_S = 600
# The flags that run this Chromium headless on a server without a display, sandbox or network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--proxy-server=http://127.0.0.1:9"]  # fmt: skip  (loopback bypasses the proxy, as always in Chromium)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[str]:
    """``ilcs serve`` with the shipped checkpoint on a free loopback port; yields its base URL once ready."""
    port = _free_port()
    ilcs = shutil.which("ilcs", path=str(Path(sys.executable).parent))
    assert ilcs, "install the project first (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    env.update(ILCS_HOST="127.0.0.1", ILCS_PORT=str(port), ILCS_THREADS="1", ILCS_MAX_BATCH_SIZE="4")
    log = tmp_path_factory.mktemp("browser") / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([ilcs, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            end = time.monotonic() + STARTUP_DEADLINE_S
            while True:
                assert proc.poll() is None, f"ilcs serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < end, f"not ready in {STARTUP_DEADLINE_S} s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture
def browser(tmp_path) -> Iterator[object]:
    """A headless Chromium (selenium + Debian's chromedriver) that logs every request it makes."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromedriver are not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome DevTools' Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], base: str) -> list[str]:
    """The URLs that would leave this host (data: and blob: URLs stay in the page)."""
    host = urlsplit(base).netloc
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != host]
