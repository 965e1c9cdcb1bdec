"""The dashboard (`/ui`, api/ui) in a real headless Chromium, on the whole stack, with no
internet: log in with the admin key, follow a training job live on its page until it ends, and
check that its loss curve has one point per row of its metrics history; a second tenant's key
sees none of another tenant's jobs. A screenshot is kept as `test-artifacts/dashboard.png`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from qorch.client import QorchClient
from qorch.stack import Stack
from qorchestra.examples import example
from tests.support.browser import guard_network, screenshot
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

#: How long one step in the page (a render, a redirect) may take.
STEP_MS = 15_000
#: How long the training job may take from submission to its end.
JOB_MS = 180_000

#: A small classifier (as tests/unit/test_training.py's `tiny_classifier`), with a few epochs so
#: that it runs while its page is open.
TRAINING: dict[str, Any] = {
    "kind": "train",
    "name": "dashboard-train",
    "seed": 4,
    "model": {"qubits": 2, "layers": 1},
    "data": {"builtin": "circles", "samples": 16, "validation_fraction": 0.25},
    "training": {"loss": "bce", "epochs": 4, "batch_size": 4},
}


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(database_url, kafka_bootstrap, tmp_path_factory) as stack:
        yield stack


@dataclass
class UiPage:
    """A fresh browser page, with the requests it tried to send off the loopback, and its
    script errors."""

    page: Page
    aborted: list[str]
    errors: list[str] = field(default_factory=list)


def _new_page(browser: Browser) -> Iterator[UiPage]:
    context = browser.new_context(viewport={"width": 1300, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    checked = UiPage(page, guard_network(page))
    page.on("pageerror", lambda error: checked.errors.append(str(error)))
    try:
        yield checked
    finally:
        context.close()


@pytest.fixture
def ui(browser: Browser) -> Iterator[UiPage]:
    yield from _new_page(browser)


@pytest.fixture
def other_ui(browser: Browser) -> Iterator[UiPage]:
    yield from _new_page(browser)


def log_in(page: Page, stack: Stack, key: str) -> None:
    """Open /ui (which sends to the login form), enter the key, land on the jobs list."""
    page.goto(f"{stack.api_url}/ui")
    expect(page).to_have_url(f"{stack.api_url}/ui/login")
    page.locator("#key").fill(key)
    page.locator("#login").click()
    expect(page).to_have_url(f"{stack.api_url}/ui")
    expect(page.locator("h1")).to_have_text("Jobs")


def test_a_training_job_followed_live_on_the_dashboard(
    stack: Stack, client: QorchClient, ui: UiPage
) -> None:
    page = ui.page
    log_in(page, stack, stack.admin_key)

    job_id = client.submit(TRAINING)["id"]
    page.goto(f"{stack.api_url}/ui")
    row = page.locator(f'tr.job[data-job-id="{job_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("progress")).to_have_count(1)
    row.locator("a").click()
    expect(page).to_have_url(f"{stack.api_url}/ui/jobs/{job_id}")
    expect(page.locator("#job-id")).to_have_text(job_id)

    # The page updates itself: the event count grows with no reload (the marker set on this
    # document survives only if the page is never loaded again).
    page.evaluate("window.__dashboardMarker = 1")
    first = int(page.locator("#event-count").inner_text())
    page.wait_for_function(
        "first => Number(document.getElementById('event-count').textContent) > first",
        arg=first,
        timeout=JOB_MS,
    )
    state = page.locator('#job-state[data-terminal="1"]')
    expect(state).to_have_count(1, timeout=JOB_MS)
    assert page.evaluate("window.__dashboardMarker") == 1, "the page was reloaded"
    expect(page.locator("#job-status")).to_have_text("SUCCEEDED")

    # One point of the loss curve per row of the metrics history, as the REST API reads it.
    history = client.metrics(job_id)["data"]
    assert history
    loss = page.locator("#curve-loss polyline.loss")
    assert loss.get_attribute("data-points") == str(len(history))
    assert len((loss.get_attribute("points") or "").split()) == len(history)
    accuracy = [r for r in history if {"batch_accuracy", "train_accuracy"} & set(r["values"])]
    if accuracy:
        points = page.locator("#curve-accuracy polyline").get_attribute("points") or ""
        assert len(points.split()) == len(accuracy)
    expect(page.locator("tr.event").first).to_be_visible()

    assert screenshot(page, "dashboard").stat().st_size > 0
    assert not ui.aborted, f"the page tried to reach the internet: {ui.aborted}"
    assert not ui.errors, ui.errors


def test_a_tenant_sees_only_its_own_jobs(
    stack: Stack, client: QorchClient, ui: UiPage, other_ui: UiPage
) -> None:
    first = client.create_key("dash-a", ["read", "submit"])["key"]
    second = client.create_key("dash-b", ["read", "submit"])["key"]
    with QorchClient(stack.api_url, stack.grpc_target, timeout=60, api_key=first) as tenant:
        job_id = tenant.submit(example("bell-sweep"))["id"]

    log_in(ui.page, stack, first)
    expect(ui.page.locator(f'tr.job[data-job-id="{job_id}"]')).to_be_visible()
    expect(ui.page.locator("tr.job")).to_have_count(1)  # not the admin's jobs either

    page = other_ui.page
    log_in(page, stack, second)
    expect(page.locator("#no-jobs")).to_be_visible()
    expect(page.locator("tr.job")).to_have_count(0)
    answer = page.goto(f"{stack.api_url}/ui/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    expect(page.locator(".error")).to_contain_text("not found")

    page.goto(f"{stack.api_url}/ui/tenant")
    expect(page.locator("#tenant")).to_have_text("dash-b")
    expect(page.locator("#active-jobs")).to_have_text("0")
    page.goto(f"{stack.api_url}/ui/nodes")
    expect(page.locator("tr.node .badge.live").first).to_be_visible()
    expect(page.locator('tr.pool[data-pool="local-sv"] .badge')).to_have_text("live")

    # Logging out forgets the key: /ui sends to the login form again.
    page.locator("header form button").click()
    expect(page).to_have_url(f"{stack.api_url}/ui/login")
    page.goto(f"{stack.api_url}/ui")
    expect(page).to_have_url(f"{stack.api_url}/ui/login")
    assert not ui.aborted and not other_ui.aborted
    assert not ui.errors and not other_ui.errors


def test_a_wrong_key_is_refused_and_ui_is_not_in_the_schema(stack: Stack, ui: UiPage) -> None:
    page = ui.page
    page.goto(f"{stack.api_url}/ui/login")
    page.locator("#key").fill("qk_not-a-key")
    page.locator("#login").click()
    expect(page.locator("#login-error")).to_have_text("invalid or revoked API key")
    schema = page.request.get(f"{stack.api_url}/openapi.json").json()
    assert not [path for path in schema["paths"] if path.startswith("/ui")]
