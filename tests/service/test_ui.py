"""GET /: the inspection page, from the package, loading nothing from elsewhere, its data behind the API keys."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from service.routes.ui import STATIC


def test_the_page_and_its_assets_come_from_the_service(live):
    with live() as svc:
        page = svc.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp, csp
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
        local = [u for u in urls if not u.startswith(("data:", "/docs", "/redoc"))]
        assert {"/ui/app.js", "/ui/style.css"} <= set(local)
        for url in local:
            assert not urlsplit(url).netloc, url
            assert svc.get(url).status_code == 200, url


def test_the_script_calls_only_this_service():
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"https?://", script), "the page's script names another host"
    assert set(re.findall(r"""(?:api|fetch)\(\s*[`"'](/[\w/]*)""", script)) == {"/model", "/metrics", "/classify"}


def test_with_keys_the_page_shows_nothing_without_one(live):
    """The page itself is a shell; the card and the answers it shows need the key, sent as X-API-Key."""
    with live(api_keys=["line-3-key"]) as svc:
        assert svc.get("/").status_code == 200
        assert svc.get("/model").status_code == 401
        assert svc.get("/model", headers={"X-API-Key": "line-3-key"}).status_code == 200
    assert '"X-API-Key": key' in (STATIC / "app.js").read_text()
