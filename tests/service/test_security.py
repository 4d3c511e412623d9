"""Security: keys only in headers, compared in constant time; nothing secret in the logs; no bad checkpoint served."""

from __future__ import annotations

import hmac
import io
import json
import logging
import subprocess
import sys

import httpx
import pytest
import torch
from PIL import Image, PngImagePlugin

import ilcs_cli
from model_zoo.checkpoint import read_card
from service import deps
from service.run import DrainingServer

KEYS = ["line-3-gateway-7f1c", "qa-laptop-93ab"]
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def svc(live):
    with live(api_keys=KEYS) as running:
        yield running


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token", "API_KEY"])
def test_a_key_in_the_query_string_is_refused_even_a_right_one(svc, png, name):
    for headers in ({}, {"X-API-Key": KEYS[0]}):
        response = svc.classify(png, params={name: KEYS[0]}, headers=headers)
        assert response.status_code == 401
        assert "in the URL are refused" in response.json()["detail"]


def test_no_key_and_a_wrong_key_are_refused_and_a_right_one_accepted(svc, png):
    assert svc.classify(png).status_code == 401
    assert svc.classify(png, headers={"Authorization": f"Bearer {KEYS[0]}x"}).status_code == 401
    assert svc.classify(png, headers={"X-API-Key": KEYS[1][:-1]}).status_code == 401
    assert svc.classify(png, headers={"X-API-Key": KEYS[1]}).status_code == 200


def test_every_key_is_compared_in_constant_time_and_a_match_does_not_stop_the_loop(svc, png, monkeypatch):
    compared = []
    constant_time = hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", recording)
    for given in (KEYS[0], "line-3-gateway-7f1d", "l"):
        compared.clear()
        svc.classify(png, headers={"X-API-Key": given})
        assert [b for _, b in compared] == [k.encode() for k in KEYS]
        assert all(a == given.encode() for a, _ in compared)


def test_nothing_secret_reaches_the_logs(serve, caplog):
    """Keys (right, wrong, in the URL) and image bytes appear in no log line, access log included."""
    marker = "SECRET-PIXELS-4f9a2c"
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", marker)
    buf = io.BytesIO()
    Image.new("L", (40, 30), 90).save(buf, format="PNG", pnginfo=info)
    image = buf.getvalue()
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error", "service")]
    caplog.set_level(logging.DEBUG)
    with serve(api_keys=KEYS, log_level="debug") as server, httpx.Client(base_url=server.url) as client:
        for logger in loggers:  # now: uvicorn's start-up configured its loggers' handlers
            logger.addHandler(caplog.handler)
            logger.setLevel(logging.DEBUG)
        try:
            client.post("/classify", content=image, headers={**PNG, "X-API-Key": KEYS[0]})
            client.post("/classify", content=image, headers={**PNG, "Authorization": "Bearer wrong-key-5d1e"})
            client.post("/classify", content=image, headers=PNG, params={"api_key": KEYS[1], "width": 5})
            client.post("/classify", content=image[:60] + marker.encode(), headers={**PNG, "X-API-Key": KEYS[0]})
            client.post("/classify", content=marker.encode() * 3, headers={"content-type": "image/tiff"})
        finally:
            for logger in loggers:
                logger.removeHandler(caplog.handler)
    served = [r for r in caplog.records if r.name.startswith(("uvicorn", "service"))]  # not the test's httpx
    text = "\n".join(r.getMessage() for r in served)
    assert "POST /classify" in text, "the access log was captured"
    assert "width=5" in text and "***" in text, "known parameters kept, the rest redacted"
    for secret in (*KEYS, "wrong-key-5d1e", marker, image[8:24].hex(), repr(image[:16])):
        assert secret not in text


# ---- start-up refuses what it must not serve -----------------------------------------------------


def _tampered(tiny, tmp):
    stem = tmp / "tampered"
    stem.with_suffix(".json").write_bytes(tiny.with_suffix(".json").read_bytes())
    weights = bytearray(tiny.with_suffix(".safetensors").read_bytes())
    weights[-1] ^= 0x01
    stem.with_suffix(".safetensors").write_bytes(bytes(weights))
    return stem, "sha256"


def _unknown_arch(tiny, tmp):
    stem = tmp / "foreign"
    card = json.loads(tiny.with_suffix(".json").read_text())
    card["arch"] = "yolo_v99"
    stem.with_suffix(".json").write_text(json.dumps(card))
    stem.with_suffix(".safetensors").write_bytes(tiny.with_suffix(".safetensors").read_bytes())
    return stem, "'yolo_v99'"


def _pickle_file(tiny, tmp):
    path = tmp / "model.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path, "pickle"


def _pickle_in_safetensors_clothes(tiny, tmp):
    """A torch.save file renamed .safetensors, with a card whose sha256 matches it."""
    stem = tmp / "disguised"
    torch.save({"weights": torch.zeros(3)}, stem.with_suffix(".safetensors"))
    card = read_card(tiny).model_copy()
    from model_zoo.checkpoint import sha256_file

    card.weights_sha256 = sha256_file(stem.with_suffix(".safetensors"))
    stem.with_suffix(".json").write_text(card.model_dump_json())
    return stem, "pickle"


BAD_CHECKPOINTS = [_tampered, _unknown_arch, _pickle_file, _pickle_in_safetensors_clothes]


@pytest.mark.parametrize("make", BAD_CHECKPOINTS, ids=lambda f: f.__name__.strip("_"))
def test_ilcs_serve_refuses_a_bad_checkpoint_with_its_reason_before_listening(
    make, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    path, reason = make(tiny_checkpoint, tmp_path)
    monkeypatch.setenv("ILCS_CHECKPOINT", str(path))
    monkeypatch.setattr(DrainingServer, "run", lambda *a, **k: pytest.fail("the server started"))
    deps_settings = __import__("service.settings", fromlist=["get_settings"]).get_settings
    deps_settings.cache_clear()
    try:
        status = ilcs_cli.main(["serve", "--port", "0"])
    finally:
        deps_settings.cache_clear()
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("ilcs serve: error: ") and reason in err and str(path.name) in err


def test_the_refusal_is_an_exit_status_and_one_line_of_the_real_command(tiny_checkpoint, tmp_path):
    path, _ = _tampered(tiny_checkpoint, tmp_path)
    env = {"ILCS_CHECKPOINT": str(path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "ilcs_cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.splitlines() if x.strip()]
    assert line.startswith("ilcs serve: error: checkpoint weights") and "sha256" in line
