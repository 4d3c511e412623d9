"""The inspection page and the API docs in a real browser, with no network: upload, label, heatmap, docs.

A person's path through the page: open ``/``, choose a sample image, see the label, the top 5 and
the overlay heatmap; then ``/docs`` and ``/redoc`` render their operations from the package's own
assets. No request may go to another host. The screenshot of the answered page is kept as
``reports/figures/inspection-page.png`` (rewritten by this test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import foreign, requested_urls

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "scratches.png"
SCREENSHOT = ROOT / "reports" / "figures" / "inspection-page.png"
LABELS = {"crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"}


def wait_for(driver, script: str, timeout_s: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: d.execute_script(script))


def test_a_person_uploads_an_image_and_sees_label_top5_and_heatmap(live_server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server}/")
    wait_for(browser, "return document.getElementById('card-fields').children.length > 0")  # the model card
    browser.find_element(By.ID, "file").send_keys(str(SAMPLE))
    answered = (
        "const s = document.getElementById('status');"
        "return document.getElementById('label').textContent"
        "  || (s.classList.contains('error') && 'error: ' + s.textContent);"
    )
    label = wait_for(browser, answered, timeout_s=180)
    assert label in LABELS, label
    drawn = (
        "const h = document.getElementById('heatmap');"
        "return h.complete && h.naturalWidth > 0 && [h.naturalWidth, h.naturalHeight];"
    )
    heatmap = wait_for(browser, drawn)
    assert heatmap == [200, 200], "the heatmap is drawn at the image's size"
    top5 = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#top5 li")]
    assert len(top5) == 5 and top5[0].startswith(label), top5
    assert browser.find_element(By.ID, "image").get_attribute("naturalWidth") == "200"
    wait_for(browser, "return document.getElementById('class-counts').children.length === 6")  # live figures
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    urls = requested_urls(browser)
    assert any(u.endswith("/classify?heatmap=overlay") for u in urls), urls
    assert not foreign(urls, live_server), f"requests left the host: {foreign(urls, live_server)}"


def test_api_docs_render_from_the_package_with_no_network(live_server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server}/docs")
    wait_for(browser, "return document.querySelectorAll('.opblock').length >= 4")  # Swagger UI drew the operations
    assert browser.find_elements(By.XPATH, "//*[contains(text(), '/classify')]")
    browser.get(f"{live_server}/redoc")
    wait_for(browser, "return document.body.innerText.includes('Classify one image')")  # ReDoc drew the operations
    urls = requested_urls(browser)
    assert any(u.endswith("/openapi.json") for u in urls), urls
    left = foreign(urls, live_server)
    if left == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]:  # the page renders without it; the one known gap
        pytest.xfail("ReDoc's bundle still asks cdn.redoc.ly for its side-menu logo")
    assert not left, f"requests left the host: {left}"
