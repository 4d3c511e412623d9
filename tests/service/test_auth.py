"""API keys: off by default; when set, /classify* and /model need one, health and metrics stay open."""

from __future__ import annotations

import pytest

KEYS = ["line-3-gateway", "qa-laptop"]
PROTECTED = [("POST", "/classify"), ("POST", "/classify/batch"), ("GET", "/model")]
OPEN = ["/healthz", "/readyz", "/metrics"]


@pytest.fixture(scope="module")
def svc(live):
    with live(api_keys=KEYS) as running:
        yield running


def send(svc, method: str, url: str, png: bytes, headers: dict[str, str] | None = None):
    if url == "/classify/batch":
        return svc.request(method, url, files={"files": ("a.png", png, "image/png")}, headers=headers)
    if method == "POST":
        return svc.request(method, url, content=png, headers={"content-type": "image/png", **(headers or {})})
    return svc.request(method, url, headers=headers)


def test_without_keys_everything_is_open(live, png):
    with live() as svc:
        for method, url in PROTECTED:
            assert send(svc, method, url, png).status_code == 200, url


@pytest.mark.parametrize(("method", "url"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer not-a-key"},
        {"X-API-Key": "line-3-gatewa"},  # a prefix of a key is not the key
        {"Authorization": "Basic bGluZS0zLWdhdGV3YXk="},
    ],
    ids=["no key", "wrong bearer", "wrong header", "basic auth"],
)
def test_protected_routes_refuse_a_missing_or_wrong_key(svc, png, method, url, headers):
    response = send(svc, method, url, png, headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
@pytest.mark.parametrize(
    "headers", [{"Authorization": "Bearer qa-laptop"}, {"X-API-Key": "line-3-gateway"}], ids=["bearer", "x-api-key"]
)
def test_protected_routes_accept_any_configured_key(svc, png, method, url, headers):
    assert send(svc, method, url, png, headers).status_code == 200


@pytest.mark.parametrize("url", OPEN)
def test_health_readiness_and_metrics_need_no_key(svc, url):
    assert svc.get(url).status_code == 200


def test_a_request_refused_for_its_key_never_reaches_the_model(svc, gate, png):
    g = gate(svc)
    g.open()
    assert send(svc, "POST", "/classify", png).status_code == 401
    assert g.batches == []


def test_keys_from_a_file(live, png, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# one key per line\nfrom-file-key\n\n")
    with live(api_keys_file=keys) as svc:
        assert send(svc, "POST", "/classify", png).status_code == 401
        assert send(svc, "POST", "/classify", png, {"X-API-Key": "from-file-key"}).status_code == 200
