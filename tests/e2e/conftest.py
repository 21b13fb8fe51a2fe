"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright never downloads a browser here; ``scripts/ensure-chromium`` installs Debian's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


@pytest.fixture
def browser(monkeypatch):
    """One Chromium per test, stopped afterwards.

    While the sync Playwright API runs, its event loop makes Django refuse ORM calls from this
    thread (test set-up and polling), though they are still synchronous and safe. The variable
    that allows them is set for this test only: left set, it would also reach ``manage.py
    check --deploy`` in later tests, which rightly refuses it.
    """
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}; run scripts/ensure-chromium")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
        # Inside the loop Django keeps this thread's connection in a context variable, not in
        # the thread's storage; close it now, or it outlives the test and the test database.
        connections.close_all()


@pytest.fixture
def new_page(browser):
    """Pages in fresh contexts (one per person); map tiles are refused as if offline."""
    contexts = []

    def open_page(*, width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(30_000)  # a shared, busy CI machine
        context.route("**/tile.openstreetmap.org/**", lambda route: route.abort())
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(request):
    """Save a full-page screenshot under test-artifacts/e2e/<test name>/NN-<step>.png."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    count = iter(range(1, 100))

    def save(page, step: str) -> Path:
        path = folder / f"{next(count):02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def sign_in(page, base_url: str, username: str, next_path: str = "/") -> None:
    """Sign in through the login form, landing on ``next_path``."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}{next_path}")


def fits_phone_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
