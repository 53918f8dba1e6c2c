"""Swagger UI's Authorize button, used as a person would: offline, in headless Chromium.

The example app serves Swagger UI from the ``swagger-ui-bundle`` package (no CDN: these machines
have no internet, and neither do many developers' trains). A person opens ``/docs``, pastes a bearer
token from the development issuer into the Authorize dialog, runs ``GET /api/me`` from the page and
sees 200 with their subject; after logging out of the dialog the same call answers 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import chromium, screenshot
from tests.servers import serve

pytestmark = pytest.mark.browser

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15
STATUS = ".live-responses-table tr.response .response-col_status"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    from example_app.main import create_app

    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(width=1200, height=1400) as driver:
        yield driver


def _auth_container(driver: Any, scheme: str) -> Any:
    for container in driver.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container"):
        if scheme in container.text:
            return container
    raise AssertionError(f"no {scheme} section in the Authorize dialog")


def _execute_me(driver: Any) -> tuple[str, str]:
    """Run ``GET /api/me`` from its operation block; answers (status, response body text)."""
    block = driver.find_element(By.ID, "operations-default-me_api_me_get")
    # the block renders after its summary is clicked, and "Execute" after "Try it out": wait for
    # each rather than finding them at once (a slow machine renders after the first look)
    WebDriverWait(driver, WAIT).until(
        lambda d: block.find_elements(By.CSS_SELECTOR, "button.execute, button.try-out__btn")
    )
    if not block.find_elements(By.CSS_SELECTOR, "button.execute"):
        try_out = block.find_elements(By.CSS_SELECTOR, "button.try-out__btn")
        if try_out and "Cancel" not in try_out[0].text:
            try_out[0].click()
    WebDriverWait(driver, WAIT).until(
        lambda d: block.find_elements(By.CSS_SELECTOR, "button.execute")
    )
    for clear in block.find_elements(By.CSS_SELECTOR, "button.btn-clear"):
        clear.click()  # forget the previous answer so the wait below sees this call's own
    WebDriverWait(driver, WAIT).until(lambda d: not block.find_elements(By.CSS_SELECTOR, STATUS))
    block.find_element(By.CSS_SELECTOR, "button.execute").click()
    WebDriverWait(driver, WAIT).until(lambda d: block.find_elements(By.CSS_SELECTOR, STATUS))
    status = block.find_element(By.CSS_SELECTOR, STATUS).text.strip()
    body = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description"
    )
    return status, body.text


def test_swagger_authorize_with_a_dev_token_then_without(browser: Any, base_url: str) -> None:
    token = httpx.post(
        base_url + "/dev/token", json={"sub": "dora", "scopes": ["read"]}, timeout=10
    ).json()["access_token"]

    browser.get(base_url + "/docs")
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")
    )
    assert "fastapi_authgate example" in browser.find_element(By.CSS_SELECTOR, ".info").text
    # every asset came from this server: a CDN request would have failed on this machine
    sources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert sources and all(str(src).startswith(base_url) for src in sources), sources

    browser.find_element(By.CSS_SELECTOR, ".scheme-container button.authorize").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container")
    )
    bearer = _auth_container(browser, "BearerAuth")
    bearer.find_element(By.CSS_SELECTOR, "input").send_keys(token)
    bearer.find_element(By.CSS_SELECTOR, "button.authorize").click()
    WebDriverWait(browser, WAIT).until(lambda d: "Logout" in _auth_container(d, "BearerAuth").text)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.close-modal").click()

    browser.find_element(
        By.CSS_SELECTOR, "#operations-default-me_api_me_get .opblock-summary"
    ).click()
    status, body = _execute_me(browser)
    screenshot(browser, "swagger-1-authorized")
    assert status.startswith("200"), (status, body)
    assert '"subject": "dora"' in body

    browser.find_element(By.CSS_SELECTOR, ".scheme-container button.authorize").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container")
    )
    logout = [
        button
        for button in _auth_container(browser, "BearerAuth").find_elements(By.TAG_NAME, "button")
        if button.text.strip() == "Logout"
    ]
    assert logout, "the Authorize dialog offers no Logout for the bearer scheme"
    logout[0].click()
    WebDriverWait(browser, WAIT).until(
        lambda d: "Logout" not in _auth_container(d, "BearerAuth").text
    )
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.close-modal").click()

    status, body = _execute_me(browser)
    screenshot(browser, "swagger-2-signed-out")
    assert status.startswith("401"), (status, body)
    assert "not_authenticated" in body
