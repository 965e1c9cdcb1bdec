"""Fixtures shared by the end-to-end modules; each module provides its own ``stack``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qorch.client import QorchClient
from qorch.stack import Stack

# The browser tests' session fixtures: Debian's Chromium (apt-get installs it where missing)
# and one headless browser driven by Playwright.
from tests.support.browser import browser, chromium  # noqa: F401


@pytest.fixture
def client(stack: Stack) -> Iterator[QorchClient]:
    """An admin client of the module's stack (REST and gRPC)."""
    with QorchClient(
        stack.api_url, stack.grpc_target, timeout=120, api_key=stack.admin_key
    ) as client:
        yield client
