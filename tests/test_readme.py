"""The README works as written: every ``curl`` example runs against a live ``ilcs serve``, from the repository root.

The server is ``ilcs serve`` with its defaults (the shipped checkpoint), on a free loopback port;
``localhost:8000`` in the examples is replaced by that address and nothing else is changed.
``curl`` runs with ``--fail-with-body`` (any HTTP error fails the example) and ``-sS``. The JSON
answer shown in the README has the keys a live answer has, and the model version the card says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import ilcs_serve

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def curl_examples() -> list[str]:
    """Every command of a ``bash`` block that starts with ``curl``, its continuation lines joined."""
    commands = []
    for block in code_blocks("bash"):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            if command.lstrip().startswith("curl "):
                commands.append(command.strip())
    return commands


EXAMPLES = curl_examples()


def test_the_readme_has_curl_examples_for_every_way_of_sending_an_image():
    text = "\n".join(EXAMPLES)
    assert len(EXAMPLES) >= 8, EXAMPLES
    for way in ("-F file=@", "image/bmp", "image/png", "application/octet-stream", "-F files=@"):
        assert way in text, f"no example sends {way}"
    for path in re.findall(r"@(\S+)", text):
        assert (ROOT / path).is_file(), f"the README sends {path}, which is not in the repository"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """``ilcs serve`` as a reader starts it (its defaults), on a free loopback port; yields ``127.0.0.1:<port>``."""
    with ilcs_serve(tmp_path_factory.mktemp("readme") / "serve.log", threads="1", backend="torch") as url:
        yield url.removeprefix("http://")


def run_example(command: str, address: str) -> str:
    script = 'set -o pipefail\ncurl() { command curl -sS --fail-with-body "$@"; }\n' + command.replace(
        "localhost:8000", address
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"{command}\nexit {result.returncode}: {result.stdout[-2000:]}{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("command", EXAMPLES, ids=[f"line{i}" for i in range(len(EXAMPLES))])
def test_curl_example_runs(server, command):
    out = run_example(command, server)
    card = httpx.get(f"http://{server}/model", timeout=10).json()
    path = re.search(r"localhost:8000(/[\w/]*)", command)[1]
    if path == "/classify":
        answer = json.loads(out)
        assert answer["label"] in card["labels"] and answer["model"]["version"] == card["version"]
    elif path == "/classify/batch":
        results = json.loads(out)["results"]
        assert len(results) == command.count("files=@") and all(r["result"]["label"] for r in results)
    elif path == "/model":
        assert json.loads(out)["weights_sha256"] == card["weights_sha256"]
    else:
        assert out.strip(), f"{command} printed nothing"


def _shape(value: object) -> object:
    """The keys of a JSON value, recursively (a list by its first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_the_answer_shown_is_the_answer_given(server):
    (shown,) = (json.loads(b) for b in code_blocks("json") if '"request_id"' in b and '"top5"' in b)
    sample = ROOT / "samples" / "scratches.png"
    given = httpx.post(f"http://{server}/classify", files={"file": (sample.name, sample.read_bytes())}, timeout=60)
    assert given.status_code == 200, given.text
    assert _shape(shown) == _shape(given.json())
    card = httpx.get(f"http://{server}/model", timeout=10).json()
    assert shown["model"]["name"] == card["name"] and shown["model"]["version"] == card["version"]
