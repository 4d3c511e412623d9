"""/docs and /redoc work in an air-gapped plant: every asset they load is served by the service itself."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(live, page):
    with live() as svc:
        html = svc.get(page).text
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        urls += re.findall(r"""(?:url|specUrl)\s*:\s*["']([^"']+)["']""", html)  # the schema, fetched by script
        assert urls, html
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
            r = svc.get(url)
            assert r.status_code == 200 and r.content, url
        assert "fonts.googleapis" not in html and "cdn" not in html.lower()


def test_the_schema_validator_is_not_called(live):
    """Swagger UI's badge would send the schema to a public validator; it is switched off."""
    with live() as svc:
        assert '"validatorUrl": null' in svc.get("/docs").text
