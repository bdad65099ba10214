"""Adding texts to the tenant's near-duplicate reference index."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter

from api.deps import ScorerDep, SettingsDep, TenantDep
from api.problems import Problem, problem_responses
from api.schemas import ReferenceRequest, ReferenceResponse
from detectors.reference import ReferenceEntry

router = APIRouter(tags=["reference"])


@router.post(
    "/reference",
    operation_id="addReferenceTexts",
    response_model=ReferenceResponse,
    responses=problem_responses((413, "too many texts for one request (`limit`)"), 422, 503),
)
def add_reference(
    body: ReferenceRequest, tenant: TenantDep, scorer: ScorerDep, settings: SettingsDep
) -> ReferenceResponse:
    """Add known LLM outputs, earlier batches or evaluation items; ids already present are skipped."""
    limit = settings.max_rows_per_audit
    if len(body.texts) > limit:
        raise Problem(413, f"{len(body.texts)} texts; the limit is {limit} per request", limit=limit)
    index = scorer.with_reference(settings.tenant_reference_location(tenant.id)).duplicates.index
    assert index is not None  # a tenant location is always given
    entries = [
        ReferenceEntry(
            key=t.id or hashlib.sha256(t.text.encode()).hexdigest()[:24], text=t.text, label=t.label, source=t.source
        )
        for t in body.texts
    ]
    added = index.add(entries)
    return ReferenceResponse(added=added, already_present=len({e.key for e in entries}) - added, entries=len(index))
