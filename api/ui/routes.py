"""The dashboard's pages: jobs, one job (live), node agents and pools, the tenant's usage.

Server-rendered with Jinja2 (autoescape on); no CDN, no JavaScript framework: the job page polls
a small HTML fragment every second with a few lines of inline JS.

Authentication is the API's own: ``/ui/login`` takes an API key once and keeps it in an
HttpOnly, SameSite=Strict cookie (path ``/ui``); every request checks the key through the
API's ``KeyCache`` (``api.auth``), exactly as a ``/v1`` request's Bearer key, so a key revoked
through this process stops working at once (through another, within ``QORCH_KEY_CACHE_S``). A
key sees only its tenant's jobs (``principal.tenant_filter``), as on REST.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api import use_cases
from api.admission import Quotas
from api.auth import Principal
from api.routes.pools import PoolPublic
from api.schemas import JobPublic, NodePublic
from api.ui.curves import curves
from qorchestra.lifecycle import JobStatus, is_terminal
from qorchestra.store import repository as repo
from qorchestra.store.models import Tenant
from qorchestra.store.pools import pool_overview

router = APIRouter(prefix="/ui", include_in_schema=False)

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
#: The cookie that holds the API key (HttpOnly, SameSite=Strict, path /ui).
COOKIE = "qorch_ui_key"
#: Jobs shown on /ui, newest first.
JOBS_SHOWN = 200
#: Events shown on a job's page: its latest.
EVENTS_SHOWN = 50
#: Statuses in the order /ui shows them.
STATUS_ORDER = [s.value for s in JobStatus]
KINDS_WITH_CURVES = frozenset({"train", "minimize"})


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status_code)


def _principal(request: Request) -> Principal | None:
    """The principal of the key in the cookie, if any, valid and allowed to read. Queries
    Postgres: call it from a thread (the sync routes below run in one)."""
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    principal = request.app.state.keys.principal(key)
    return principal if principal is not None and principal.allows("read") else None


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


def _not_found(principal: Principal, what: str) -> HTMLResponse:
    return _render("not_found.html", 404, principal=principal, what=what)


@router.get("/static/dashboard.css")
def stylesheet() -> Response:
    return Response((HERE / "static" / "dashboard.css").read_text(), media_type="text/css")


@router.get("/login", response_class=HTMLResponse)
def login_page() -> HTMLResponse:
    return _render("login.html", principal=None, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key like a Bearer key, then keep it in the cookie."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    principal = await run_in_threadpool(request.app.state.keys.principal, key) if key else None
    if principal is None or not principal.allows("read"):
        return _render("login.html", 401, principal=None, error="invalid or revoked API key")
    answer = RedirectResponse("/ui", status_code=303)
    answer.set_cookie(
        COOKIE,
        key,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
def logout() -> Response:
    answer = _to_login()
    answer.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return answer


@router.get("", response_class=HTMLResponse)
def jobs_page(request: Request) -> Response:
    """The caller's jobs (an admin's: every tenant's), by status, newest first."""
    principal = _principal(request)
    if principal is None:
        return _to_login()
    now = datetime.now(UTC)
    with request.app.state.sessions() as session:
        jobs, count = repo.list_jobs(
            session, status=None, limit=JOBS_SHOWN, offset=0, tenant=principal.tenant_filter
        )
        shown = [JobPublic.of(job, now) for job in jobs]
    by_status = {status: [j for j in shown if j.status == status] for status in STATUS_ORDER}
    groups = [(status, jobs) for status, jobs in by_status.items() if jobs]
    return _render("jobs.html", principal=principal, groups=groups, count=count, shown=len(shown))


def _job_context(request: Request, principal: Principal, job_id: str) -> dict[str, Any] | None:
    """What the job page and its live fragment show; None for a job the caller may not see."""
    now = datetime.now(UTC)
    with request.app.state.sessions() as session:
        try:
            job, history = use_cases.metrics_history(session, principal, job_id)
        except repo.NotFound:
            return None
        first = max(0, job.last_seq - EVENTS_SHOWN)
        events = use_cases.events_after(session, job.id, first, EVENTS_SHOWN)
        public = JobPublic.of(job, now)
    return {
        "principal": principal,
        "job": public,
        "terminal": is_terminal(public.status),
        "events": list(reversed(events)),
        "metrics_count": len(history),
        "curves": curves(history) if job.kind in KINDS_WITH_CURVES else [],
        "has_curves": job.kind in KINDS_WITH_CURVES,
    }


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> Response:
    principal = _principal(request)
    if principal is None:
        return _to_login()
    context = _job_context(request, principal, job_id)
    if context is None:
        return _not_found(principal, f"job {job_id}")
    return _render("job.html", **context)


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
def job_live(request: Request, job_id: str) -> Response:
    """The live part of a job's page (status, progress, events, curves), polled by the page."""
    principal = _principal(request)
    if principal is None:
        return Response(status_code=401)
    context = _job_context(request, principal, job_id)
    if context is None:
        return Response(status_code=404)
    return _render("job_live.html", **context)


@router.get("/nodes", response_class=HTMLResponse)
def nodes_page(request: Request) -> Response:
    """Node agents with their health, and every pool (as ``GET /v1/nodes`` and ``/v1/pools``)."""
    principal = _principal(request)
    if principal is None:
        return _to_login()
    settings = request.app.state.settings
    now = datetime.now(UTC)
    with request.app.state.sessions() as session:
        nodes = [
            NodePublic.of(n, now, settings.node_offline_after_s) for n in repo.list_nodes(session)
        ]
        pools = [
            PoolPublic.of(p, now)
            for p in pool_overview(
                session, settings.declared_pools(), now, settings.node_offline_after_s
            )
        ]
    return _render("nodes.html", principal=principal, nodes=nodes, pools=pools)


@router.get("/tenant", response_class=HTMLResponse)
def tenant_page(request: Request) -> Response:
    """The caller's tenant: unfinished jobs and spend against its quotas and budget."""
    principal = _principal(request)
    if principal is None:
        return _to_login()
    with request.app.state.sessions() as session:
        row = session.get(Tenant, principal.tenant)
        quotas = Quotas.of(row, request.app.state.settings)
        active = repo.active_jobs(session, principal.tenant)
        spent = row.spent_usd if row is not None else 0.0
    return _render("tenant.html", principal=principal, quotas=quotas, active=active, spent=spent)
