"""Synchronous scoring of a few texts."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, Request

from api.batcher import Batched
from api.deps import SettingsDep, TenantDep, get_scorer
from api.problems import Problem, problem_responses
from api.schemas import ScoreRequest, ScoreResponse, ScoreResult
from api.tiers import FastTier
from auditor.scoring import SCORED, SIGNAL_PREFIX, Scorer

router = APIRouter(tags=["score"])


def _clean(value):
    """A JSON-safe scalar: numpy scalars unwrapped, NaN/NA/None as null."""
    if isinstance(value, list | dict):
        return value
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


_EXAMPLES = {
    "a few texts": {
        "summary": "texts in order; a null or empty text is answered with a skip_reason",
        "value": {
            "texts": [
                "Certainly! Here is a concise summary of the article's main points.",
                "we went to the lake on sunday, water was freezing lol",
                None,
            ]
        },
    },
    "the fast tier": {
        "summary": "the n-gram model: tens of milliseconds a text, answers while the LM loads; weaker than the LM",
        "value": {"texts": ["Certainly! Here is a concise summary of the article's main points."], "tier": "fast"},
    },
}


@router.post(
    "/score",
    operation_id="scoreTexts",
    response_model=ScoreResponse,
    responses=problem_responses((413, "too many texts for one request (`limit`): submit an audit"), 422, 503),
)
async def score(
    body: Annotated[ScoreRequest, Body(openapi_examples=_EXAMPLES)],
    request: Request,
    tenant: TenantDep,
    settings: SettingsDep,
) -> ScoreResponse:
    """Score texts synchronously, in input order, with the requested tier's model (`lm` by default;
    `fast`: the n-gram model, which answers while the LM loads). For more than the configured
    maximum, submit an audit."""
    limit = settings.max_texts_per_request
    if len(body.texts) > limit:
        raise Problem(
            413,
            f"{len(body.texts)} texts in one request; the limit is {limit}. Send larger sets as an audit (POST /v1/audits)",
            limit=limit,
        )
    state = request.app.state
    scorer: Scorer
    if body.tier == "fast":
        fast: FastTier = state.fast
        # Loaded at start-up in the background; a request arriving first loads it (off the loop).
        scorer = fast.scorer if fast.scorer is not None else await asyncio.to_thread(fast.get)
        batcher = state.fast_batcher
    else:
        scorer, batcher = get_scorer(request), state.batcher  # 503 with Retry-After while the LM loads
    calibration = scorer.require_calibration()
    answer = {
        "tier": body.tier,
        "model": scorer.classifier.id,
        "model_version": scorer.classifier.version,
        "model_created_at": getattr(scorer.classifier, "manifest_", {}).get("created_at"),
        "threshold": calibration.threshold,
    }
    if not body.texts:
        return ScoreResponse(results=[], **answer)
    # The tenant's reference index is part of the request: near-copies of its known LLM outputs.
    results = await batcher.submit(body.texts, settings.tenant_reference_location(tenant.id))
    state.metrics.texts_scored.inc(len(body.texts))
    return ScoreResponse(results=results, **answer)


def answer_requests(scorer: Scorer, requests: list[Batched]) -> list[list[ScoreResult]]:
    """The answers of concurrent requests, scored in one pass: the model over all their texts
    at once, the near-duplicate evidence and the decision once per tenant's reference index."""
    texts = [text for request_texts, _ in requests for text in request_texts]
    detected = scorer.detect(texts)
    starts = np.cumsum([0, *(len(request_texts) for request_texts, _ in requests)])
    answers: list[list[ScoreResult]] = [[] for _ in requests]
    for location in dict.fromkeys(location for _, location in requests):
        mine = [i for i, (_, where) in enumerate(requests) if where == location]
        rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in mine])
        tables = scorer.with_reference(location).score_requests([requests[i][0] for i in mine], detected.iloc[rows])
        for i, table in zip(mine, tables, strict=True):
            answers[i] = _results(table)
    return answers


def _results(scored: pd.DataFrame) -> list[ScoreResult]:
    """The rows of the scored-items table (the SCORED schema): its decision columns as fields,
    every other column in ``signals`` (``ppl_`` dropped from the names, spans as a list)."""
    decision = SCORED.role("decision")
    results = []
    for row in scored.to_dict("records"):
        signals = {k.removeprefix(SIGNAL_PREFIX): _clean(row[k]) for k in scored.columns if k not in decision}
        signals["spans"] = json.loads(row["spans"]) if isinstance(row["spans"], str) else []
        results.append(ScoreResult(**{k: _clean(row[k]) for k in decision}, signals=signals))
    return results
