"""Typed dependencies: the database session and the tenant behind the API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from api.db import Tenant
from api.keys import hash_key, tenant_for_key
from api.problems import Problem
from api.settings import ServiceSettings
from api.task_store import TenantTasks
from auditor.scoring import Scorer


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_scorer(request: Request) -> Scorer:
    scorer = request.app.state.scorer
    if scorer is None:
        raise Problem(503, "the models are still loading; retry in a few seconds", retry_after=5)
    return scorer


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]


API_KEY_HEADER = "X-API-Key"
# The security scheme of every /v1 operation in the OpenAPI document. auto_error=False: a missing
# key is answered by current_tenant, with the same 401 Problem as an unknown one.
api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="your API key (`auditor keys create --tenant NAME`); each key sees only its tenant's data",
    auto_error=False,
)


def current_tenant(request: Request, x_api_key: Annotated[str | None, Security(api_key)]) -> Tenant:
    if not x_api_key:
        raise Problem(
            401, "send your API key in the X-API-Key header (create one with `auditor keys create --tenant NAME`)"
        )
    # A session of its own, closed before the route runs: a /v1/score request waiting for the
    # model must not hold a pooled connection, or concurrent requests exhaust the pool.
    with request.app.state.sessions() as session:
        tenant = tenant_for_key(session, x_api_key)
    if tenant is None:
        raise Problem(401, "this API key is unknown, revoked or expired")
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


async def rate_limit(request: Request, _: TenantDep, x_api_key: Annotated[str | None, Security(api_key)]) -> None:
    """Count the request against its (authenticated) key's rate limit: 429 past it (api.ratelimit)."""
    limiter = request.app.state.rate_limit
    if limiter is not None and x_api_key:
        await limiter.check(hash_key(x_api_key))


def tenant_tasks(tenant: TenantDep, settings: SettingsDep) -> TenantTasks:
    """The task references of the tenant behind the API key (no other tenant's)."""
    return TenantTasks(settings.tenant_tasks_dir(tenant.id))


TasksDep = Annotated[TenantTasks, Depends(tenant_tasks)]
