"""Fixtures of the browser tests: ``ilcs serve`` on loopback, and Debian's headless Chromium with no network.

The browser is Debian's ``chromium`` driven through its ``chromedriver`` (apt packages; ``.ci/run``
installs them as root); the tests skip, saying so, where either is missing. Its host resolver
answers "not found" for every name but 127.0.0.1 and its proxy is a closed local port, so a
request to any other host fails instead of leaving the machine; the tests also read every URL the
browser requested from its performance log and assert that none is another host's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.live_server import ilcs_serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # Debian's packages
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags that run this Chromium headless on a server without a display, sandbox or network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
]  # fmt: skip  (loopback bypasses the proxy, as always in Chromium)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[str]:
    """``ilcs serve`` with the shipped checkpoint on a free loopback port; yields its base URL once ready."""
    log = tmp_path_factory.mktemp("browser") / "serve.log"
    # A long deadline: the page is under test here, not the speed of a machine shared with other work.
    with ilcs_serve(log, threads="1", max_batch_size="4", request_timeout_s="120", backend="torch") as url:
        yield url


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
    """The network URLs for another host than ``base``'s (data:, blob: and the browser's own chrome:// stay inside)."""
    host = urlsplit(base).netloc
    network = ("http", "https", "ws", "wss", "ftp")
    return [u for u in urls if urlsplit(u).scheme in network and urlsplit(u).netloc != host]
