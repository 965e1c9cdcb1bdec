"""The API's docs pages in a real browser, with no internet: headless Chromium (Debian's) opens
`/docs` and `/redoc` on the whole stack, while every request that would leave the loopback is
aborted, and must not happen.

On `/docs` (Swagger UI) an operator authorizes with the admin key, then, each through "Try it
out" with the example the page offers, creates a tenant's key, gives that tenant a budget,
submits the bell-sweep job and cancels the tenant's job; a screenshot of the page is kept as
`test-artifacts/swagger-ui.png`. `/redoc` must render every operation of the schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from api.routes.keys import KeyCreate
from qorch.stack import Stack
from qorchestra.examples import example
from tests.support.browser import guard_network, screenshot
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

#: How long one step in the page (rendering, an answer) may take.
STEP_MS = 15_000
#: The tenant of the example body of `POST /v1/keys`.
TENANT = KeyCreate.model_json_schema()["examples"][0]["tenant"]


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(database_url, kafka_bootstrap, tmp_path_factory) as stack:
        yield stack


@pytest.fixture(scope="module")
def openapi(stack: Stack) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    return schema


#: What Redoc's bundle fetches whatever its options (Redocly's logo in its menu); the page's
#: Content-Security-Policy (api/docs_pages.py) stops it in the browser, before any request.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class DocsPage:
    """A fresh browser page, and what it did wrong: requests that tried to leave the loopback
    (aborted), loads its Content-Security-Policy stopped, and script or console errors."""

    page: Page
    aborted: list[str]
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if "violates the following Content Security Policy" in message.text:
            self.refused.append(message.text)
        else:
            self.errors.append(message.text)


@pytest.fixture
def docs_page(browser: Browser) -> Iterator[DocsPage]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    checked = DocsPage(page, guard_network(page))
    page.on("pageerror", lambda error: checked.errors.append(str(error)))
    page.on("console", checked.on_console)
    try:
        yield checked
    finally:
        context.close()


def _operations(openapi: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``"METHOD /path"`` -> (tag, operationId) for every operation of the schema."""
    return {
        f"{method.upper()} {path}": (operation["tags"][0], operation["operationId"])
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
    }


def _try_out(page: Page, openapi: dict[str, Any], operation: str) -> Locator:
    """The Swagger UI block of ``operation``, expanded, with "Try it out" pressed."""
    tag, operation_id = _operations(openapi)[operation]
    block = page.locator(f"#operations-{tag}-{operation_id}")
    block.locator(".opblock-summary").first.click()
    block.locator(".try-out__btn").click()
    expect(block.locator(".execute")).to_be_visible(timeout=STEP_MS)
    return block


def _execute(page: Page, block: Locator, key: str, method: str, path_end: str, status: int) -> Any:
    """Press Execute in ``block``: the browser sends ``Authorization: Bearer <key>`` and the
    page shows ``status`` as the live answer. Returns the answer's JSON."""
    with page.expect_response(
        lambda r: r.request.method == method and r.url.endswith(path_end)
    ) as answer:
        block.locator(".execute").click()
    response = answer.value
    assert response.request.headers["authorization"] == f"Bearer {key}"
    assert response.status == status, response.text()
    expect(block.locator(".live-responses-table .response .response-col_status")).to_have_text(
        str(status), timeout=STEP_MS
    )
    return response.json()


def test_an_operator_works_from_swagger_ui_with_no_internet(
    stack: Stack, openapi: dict[str, Any], docs_page: DocsPage
) -> None:
    browser_page, admin = docs_page.page, stack.admin_key
    browser_page.goto(f"{stack.api_url}/docs")
    expect(browser_page.locator(".opblock")).to_have_count(
        len(_operations(openapi)), timeout=STEP_MS
    )

    # Authorize: the key alone; every request then carries `Authorization: Bearer <key>`.
    browser_page.locator(".auth-wrapper .authorize").click()
    dialog = browser_page.locator(".modal-ux")
    dialog.locator("input").first.fill(admin)
    dialog.locator(".auth-btn-wrapper .authorize").click()
    expect(dialog.locator(".auth-btn-wrapper .btn-done")).to_be_visible(timeout=STEP_MS)
    dialog.locator(".auth-btn-wrapper .btn-done").click()
    expect(dialog).to_have_count(0, timeout=STEP_MS)

    # Create a key for the example's tenant.
    block = _try_out(browser_page, openapi, "POST /v1/keys")
    created = _execute(browser_page, block, admin, "POST", "/v1/keys", 201)
    tenant = created["tenant"]
    assert tenant == TENANT and created["key"].startswith("qk_")

    # Give that tenant a budget (the example body), for its job on an AWS pool below.
    block = _try_out(browser_page, openapi, "PATCH /v1/tenants/{tenant}")
    block.locator('tr[data-param-name="tenant"] input').fill(tenant)
    quotas = _execute(browser_page, block, admin, "PATCH", f"/v1/tenants/{tenant}", 200)
    assert quotas["budget_usd"] == 25.0

    # Submit the bell-sweep example: the first example of the job body.
    block = _try_out(browser_page, openapi, "POST /v1/jobs")
    shown = json.loads(block.locator("textarea.body-param__text").input_value())
    assert shown == example("bell-sweep")
    job = _execute(browser_page, block, admin, "POST", "/v1/jobs", 201)
    assert job["name"] == "bell-sweep"

    # The tenant's new key submits a job that cannot end first (no agent of the stack serves
    # an AWS pool); the admin cancels it.
    waiting = httpx.post(
        f"{stack.api_url}/v1/jobs",
        json={**example("bell-sweep"), "pool": "aws-sv1", "max_cost_usd": 1.0},
        headers={"Authorization": f"Bearer {created['key']}"},
        timeout=30,
    )
    assert waiting.status_code == 201, waiting.text
    job_id = waiting.json()["id"]
    block = _try_out(browser_page, openapi, "POST /v1/jobs/{job_id}/cancel")
    block.locator('tr[data-param-name="job_id"] input').fill(job_id)
    cancelled = _execute(browser_page, block, admin, "POST", f"/v1/jobs/{job_id}/cancel", 200)
    assert cancelled["status"] == "CANCELLED"

    block.locator(".live-responses-table").scroll_into_view_if_needed()
    # The page's curl commands show the key: painted over.
    shot = screenshot(browser_page, "swagger-ui", hide=[browser_page.locator(".curl-command")])
    assert shot.stat().st_size > 0
    assert not docs_page.aborted, f"the page tried to reach the internet: {docs_page.aborted}"
    assert not docs_page.refused, docs_page.refused
    assert not docs_page.errors, docs_page.errors


def test_redoc_renders_every_operation_with_no_internet(
    stack: Stack, openapi: dict[str, Any], docs_page: DocsPage
) -> None:
    browser_page = docs_page.page
    browser_page.goto(f"{stack.api_url}/redoc")
    sections = browser_page.locator('[data-section-id*="/operation/"]')
    expect(sections).to_have_count(len(_operations(openapi)), timeout=STEP_MS)
    rendered = set(sections.evaluate_all("nodes => nodes.map(n => n.dataset.sectionId)"))
    expected = {f"tag/{tag}/operation/{op}" for tag, op in _operations(openapi).values()}
    assert rendered == expected

    assert screenshot(browser_page, "redoc").stat().st_size > 0
    assert not docs_page.aborted, f"the page tried to reach the internet: {docs_page.aborted}"
    assert all(REDOCLY_LOGO in refusal for refusal in docs_page.refused), docs_page.refused
    assert not docs_page.errors, docs_page.errors
