"""The example app's sign-in page, used the way a person would: in headless Chromium.

A person signs in without the admin scope, sees who they are, is told clearly that /api/admin needs
a scope they did not pick, signs in again with it, hits /api/limited until the 429 and its retry
time, and signs out. The app runs under uvicorn on 127.0.0.1; the browser is Debian's
``chromium`` driven by ``chromedriver`` through Selenium, all offline. A screenshot of each step
lands in ``test-artifacts/`` (git ignores it) so a failure can be looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium, screenshot
from tests.servers import serve

pytestmark = pytest.mark.browser

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    from example_app.main import create_app

    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


class Page:
    """The sign-in page's controls, by the ids the page gives them."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def click(self, element_id: str) -> None:
        """Click; for an API button, wait until the page shows that very call's answer."""
        self._clear("output")
        button = self.driver.find_element(By.ID, element_id)
        path = button.get_attribute("data-path")
        button.click()
        if path:
            WebDriverWait(self.driver, 5).until(lambda d: f"GET {path}\n" in self.output)

    def _clear(self, element_id: str) -> None:
        self.driver.execute_script(f"document.getElementById('{element_id}').textContent = ''")

    def sign_in(self, user: str, *, admin: bool) -> None:
        """Sign in and wait until the page has shown who is signed in (its own /api/me call)."""
        field = self.driver.find_element(By.ID, "sub")
        field.clear()
        field.send_keys(user)
        box = self.driver.find_element(By.CSS_SELECTOR, "input[name=scope][value=admin]")
        if box.is_selected() != admin:
            box.click()
        self._clear("who")
        self._clear("output")
        self.driver.find_element(By.ID, "signin-button").click()
        WebDriverWait(self.driver, 5).until(lambda d: f"Signed in as {user} " in self.who)

    @property
    def who(self) -> str:
        return str(self.driver.find_element(By.ID, "who").text)

    @property
    def output(self) -> str:
        return str(self.driver.find_element(By.ID, "output").text)

    def screenshot(self, name: str) -> None:
        screenshot(self.driver, f"signin-{name}")


def test_a_person_signs_in_is_refused_admin_hits_the_limit_and_signs_out(
    browser: Any, base_url: str
) -> None:
    browser.get(base_url + "/")
    page = Page(browser)
    assert "Not signed in" in page.who

    page.sign_in("carol", admin=False)
    assert "carol" in page.who and "read" in page.who
    page.click("call-me")
    assert page.output.startswith("200")
    assert '"subject": "carol"' in page.output

    page.click("call-admin")
    page.screenshot("1-admin-refused")
    assert page.output.startswith("403")
    assert 'error="insufficient_scope"' in page.output
    assert 'scope="admin"' in page.output

    page.sign_in("carol", admin=True)
    page.click("call-admin")
    assert page.output.startswith("200")

    page.click("call-session")
    assert page.output.startswith("200")
    assert '"session_id": "sess_' in page.output

    statuses = []
    for _ in range(6):
        page.click("call-limited")
        statuses.append(page.output.split()[0])
    page.screenshot("2-rate-limited")
    assert statuses == ["200"] * 5 + ["429"]
    assert "Retry-After: " in page.output

    page.click("signout-button")
    WebDriverWait(browser, 5).until(lambda d: "Not signed in" in page.who)
    page.click("call-session")
    page.screenshot("3-signed-out")
    assert page.output.startswith("401")
