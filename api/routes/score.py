"""Synchronous scoring of a few texts."""

from __future__ import annotations

import asyncio

import pandas as pd
from fastapi import APIRouter, Request

from api.deps import ScorerDep, SettingsDep, TenantDep
from api.problems import Problem
from api.schemas import ScoreRequest, ScoreResponse, ScoreResult
from auditor.scoring import FLAG_REASON, FLAGGED, PROBABILITY, SIGNAL_PREFIX, Scorer
from detectors import SKIP_REASON

router = APIRouter(tags=["score"])
DUPLICATE_SIGNALS = ("dup_cluster", "dup_jaccard", "ref_key", "ref_jaccard", "ref_label")


def _clean(value):
    """A JSON-safe scalar: numpy scalars unwrapped, NaN/NA/None as null."""
    if isinstance(value, list | dict):
        return value
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


@router.post("/score", response_model=ScoreResponse, responses={413: {"description": "too many texts for one request"}})
async def score(
    body: ScoreRequest, request: Request, tenant: TenantDep, scorer: ScorerDep, settings: SettingsDep
) -> ScoreResponse:
    """Score texts synchronously, in input order. For more than the configured maximum, submit an audit."""
    limit = settings.max_texts_per_request
    if len(body.texts) > limit:
        raise Problem(
            413,
            f"{len(body.texts)} texts in one request; the limit is {limit}. Send larger sets as an audit (POST /v1/audits)",
            limit=limit,
        )
    calibration = scorer.require_calibration()
    if not body.texts:
        return ScoreResponse(results=[], model=scorer.classifier.id, threshold=calibration.threshold)
    detected = await request.app.state.batcher.submit(body.texts)
    tenant_scorer = scorer.with_reference(settings.tenant_reference_location(tenant.id))
    # Duplicate lookups and building the answer are CPU work too: off the event loop, so other
    # requests keep being accepted and batched meanwhile.
    results = await asyncio.to_thread(_results, tenant_scorer, body.texts, detected)
    request.app.state.metrics.texts_scored.inc(len(body.texts))
    return ScoreResponse(results=results, model=scorer.classifier.id, threshold=calibration.threshold)


def _results(scorer: Scorer, texts: list, detected: pd.DataFrame) -> list[ScoreResult]:
    scored = scorer.decide(detected.join(scorer.near_duplicates(texts)))
    signal_columns = [k for k in scored.columns if k.startswith(SIGNAL_PREFIX)]
    results = []
    for row in scored.to_dict("records"):
        signals = {k.removeprefix(SIGNAL_PREFIX): _clean(row[k]) for k in signal_columns}
        signals.update({k: _clean(row[k]) for k in DUPLICATE_SIGNALS})
        signals["spans"] = row["spans"]
        results.append(
            ScoreResult(
                llm_probability=_clean(row[PROBABILITY]),
                flagged=bool(row[FLAGGED]),
                flag_reason=_clean(row[FLAG_REASON]),
                skip_reason=_clean(row[SKIP_REASON]),
                signals=signals,
            )
        )
    return results
