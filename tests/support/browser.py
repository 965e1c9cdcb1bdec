"""A real headless Chromium for the browser tests, driven by Playwright, with no internet.

The browser is Debian's ``chromium`` package (Playwright's own download needs the internet):
``chromium_executable`` installs it with apt-get where ``/usr/bin/chromium`` is missing (as
root; otherwise the tests skip, saying why). ``guard_network`` aborts every request of a page
to a host other than the loopback, and keeps what it aborted, so that a test can assert that
nothing tried to reach the internet.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, sync_playwright

logger = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
#: Where the browser tests leave their screenshots (ignored by git; CI keeps it as an artifact).
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
#: The only hosts a page may reach: the stack, on the loopback.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: An apt-get install that takes longer than this fails (a mirror that does not answer).
INSTALL_TIMEOUT_S = 900.0


def _apt_get(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"apt-get {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def chromium_executable() -> Path:
    """``/usr/bin/chromium``, installed with apt-get first where it is missing (as root only:
    anyone else skips)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    if os.geteuid() != 0:
        pytest.skip(
            f"{CHROMIUM} is missing and only root may install it: "
            "run `apt-get install -y --no-install-recommends chromium` as root"
        )
    start = time.monotonic()
    _apt_get("update")
    _apt_get("install", "-y", "--no-install-recommends", "chromium")
    logger.warning("installed Debian's chromium in %.0f s", time.monotonic() - start)
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium, but {CHROMIUM} is still missing")
    return CHROMIUM


@contextmanager
def headless_chromium(executable: Path) -> Iterator[Browser]:
    """The system's Chromium, headless, driven by Playwright."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable),
            headless=True,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this machine (the loopback, or no host at all: data:, blob:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname in LOCAL_HOSTS


def guard_network(page: Page) -> list[str]:
    """Abort every request of ``page`` that would leave the loopback; the returned list
    fills with the URLs aborted (a test asserts it stays empty)."""
    aborted: list[str] = []

    def route(route: Route) -> None:
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            aborted.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", route)
    return aborted


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed where it is missing (``chromium_executable``)."""
    return chromium_executable()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    """One headless Chromium for a module's browser tests. Not for the session: Playwright's
    sync API keeps an event loop running on the main thread while it is open, and every later
    test that calls ``asyncio.run`` would fail."""
    with headless_chromium(chromium) as running:
        yield running


def screenshot(page: Page, name: str, hide: Sequence[Locator] = ()) -> Path:
    """A screenshot of what ``page`` shows (its viewport) as ``test-artifacts/<name>.png``, with
    the ``hide`` elements painted over (an API key, say); returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), mask=list(hide))
    return path
