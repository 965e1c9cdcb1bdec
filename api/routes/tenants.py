"""/v1/tenants: a tenant's quotas, budget and spend. Admins set them; a tenant reads its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.admission import Quotas
from api.deps import Admin, LimiterDep, Reader, SessionDep, SettingsDep
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store.models import Tenant

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantId = Annotated[
    str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Its name.")
]


class TenantUpdate(BaseModel):
    """Quotas to change: a field left out keeps its value, null returns it to the default."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"max_concurrent_jobs": 50, "budget_usd": 25.0}]}
    )

    max_concurrent_jobs: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Unfinished jobs at once (429 beyond); default "
        "`QORCH_TENANT_MAX_CONCURRENT_JOBS`.",
    )
    max_circuits_per_job: int | None = Field(
        None,
        ge=1,
        le=2_000_000_000,
        description="Circuit runs (programs x bindings) in one job; default "
        "`QORCH_TENANT_MAX_CIRCUITS_PER_JOB`.",
    )
    max_shots_per_job: int | None = Field(
        None,
        ge=1,
        le=10**15,
        description="Shots x circuit runs in one job; default `QORCH_TENANT_MAX_SHOTS_PER_JOB`.",
    )
    submit_rate_per_s: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description="Sustained submissions per second (429 beyond); default "
        "`QORCH_TENANT_SUBMIT_RATE_PER_S`.",
    )
    budget_usd: float | None = Field(
        None,
        ge=0,
        le=1e12,
        description="Total spend allowed on aws-* pools, in USD; default "
        "`QORCH_TENANT_BUDGET_USD`.",
    )


class TenantPublic(BaseModel):
    """A tenant's effective quotas and what it has spent on paid pools."""

    id: str = Field(description="The tenant's name.")
    max_concurrent_jobs: int = Field(description="Unfinished jobs at once; 429 beyond.")
    max_circuits_per_job: int = Field(description="Circuit runs (programs x bindings) in a job.")
    max_shots_per_job: int = Field(description="Shots x circuit runs in a job.")
    submit_rate_per_s: float = Field(description="Sustained submissions per second; 429 beyond.")
    budget_usd: float = Field(description="Total spend allowed on aws-* pools, in USD.")
    spent_usd: float = Field(
        description="What its jobs on paid pools (aws-*, emu-*) cost: the estimate of each "
        "unfinished one, the actual cost of each finished one."
    )

    @classmethod
    def of(cls, row: Tenant, settings: Settings) -> TenantPublic:
        quotas = Quotas.of(row, settings)
        return cls(
            id=row.id,
            max_concurrent_jobs=quotas.max_concurrent_jobs,
            max_circuits_per_job=quotas.max_circuits_per_job,
            max_shots_per_job=quotas.max_shots_per_job,
            submit_rate_per_s=quotas.submit_rate_per_s,
            budget_usd=quotas.budget_usd,
            spent_usd=row.spent_usd,
        )


@router.get("/{tenant}", response_model=TenantPublic, summary="Read a tenant's quotas")
def get_tenant(
    tenant: TenantId, principal: Reader, session: SessionDep, settings: SettingsDep
) -> TenantPublic:
    """Quotas, budget and spend; a key sees only its own tenant (others are 404)."""
    if principal.tenant_filter not in (None, tenant):
        raise repo.NotFound(f"tenant {tenant} not found")
    return TenantPublic.of(repo.get_tenant(session, tenant), settings)


@router.patch("/{tenant}", response_model=TenantPublic, summary="Set a tenant's quotas")
def set_tenant(
    tenant: TenantId,
    body: TenantUpdate,
    _admin: Admin,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> TenantPublic:
    """Change quotas and budget (creating the tenant if new). A new submission rate applies
    through this API process at once, through the others within a second."""
    with session.begin():
        row = repo.lock_tenant(session, tenant)
        for name, value in body.model_dump(exclude_unset=True).items():
            setattr(row, name, value)
        session.flush()
        public = TenantPublic.of(row, settings)
    limiter.forget_rate(tenant)
    return public
