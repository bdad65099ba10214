"""The fast tier of POST /v1/score (`"tier": "fast"`): the shipped n-gram model, its own calibrated
threshold, the tier and model named in every answer, and no wait for the LM.

In-process on an app that never loads the LM (so `"tier": "lm"` answers 503 throughout); the
fast model loads on the first request that needs it. The same tier on a real server whose LM is
still loading is in test_readiness.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.ngram import default_fast_dir


@pytest.fixture(scope="module")
def texts(mini_corpus):
    """Human and LLM-written answers of one task from the test split (never trained on)."""
    pool = mini_corpus[(mini_corpus.dataset == "l2r_rewrites") & (mini_corpus.split == "test")]
    return {
        "human": pool[pool.label == 0].sample(12, random_state=7).text.tolist(),
        "machine": pool[pool.label == 1].sample(12, random_state=7).text.tolist(),
    }


def fast_threshold() -> float:
    return json.loads((default_fast_dir() / "calibration.json").read_text())["threshold"]


def test_the_fast_tier_scores_with_the_ngram_model_and_its_own_threshold(client, texts):
    batch = texts["human"] + [None, ""] + texts["machine"]
    response = client.post("/v1/score", json={"texts": batch, "tier": "fast"})
    assert response.status_code == 200, response.text
    body = response.json()
    manifest = json.loads((default_fast_dir() / "ngram.json").read_text())
    assert body["tier"] == "fast"
    assert body["model"] == manifest["detector"]["id"] == "ngram-classifier-v1"
    assert body["model_version"] == manifest["detector"]["version"]
    assert body["model_created_at"] == manifest["created_at"]
    assert body["threshold"] == pytest.approx(fast_threshold())

    results = body["results"]
    assert len(results) == len(batch)
    assert [r["skip_reason"] for r in results[12:14]] == ["missing", "empty"]
    assert all(r["llm_probability"] is None and not r["flagged"] for r in results[12:14])
    human = np.array([r["llm_probability"] for r in results[:12]])
    machine = np.array([r["llm_probability"] for r in results[14:]])
    assert np.all((human >= 0) & (human <= 1)) and np.all((machine >= 0) & (machine <= 1))
    # Ordered correctly: the LLM-written answers score higher, on average and pair by pair
    # (the n-gram model's held-out AUC on this task is about 0.9).
    assert machine.mean() > human.mean() + 0.2
    assert (machine[:, None] > human[None, :]).mean() > 0.75
    # flagged is the fast model's calibration (no reference index here): above its threshold
    for r in results[:12] + results[14:]:
        assert r["flagged"] == (r["llm_probability"] > body["threshold"]), r
        if r["flagged"]:
            assert f"threshold {body['threshold']:.3f}" in r["flag_reason"]


def test_the_fast_tier_answers_while_the_lm_is_not_loaded(client, texts):
    """The app never loads the LM: the LM tier (the default) is 503 with Retry-After, the fast
    tier answers, the same text the same way each time (the second from the memo)."""
    lm = client.post("/v1/score", json={"texts": [texts["machine"][0]]})
    assert lm.status_code == 503 and lm.headers["Retry-After"] == "5" and "loading" in lm.json()["detail"]
    assert client.post("/v1/score", json={"texts": [texts["machine"][0]], "tier": "lm"}).status_code == 503
    first = client.post("/v1/score", json={"texts": [texts["machine"][0]], "tier": "fast"})
    again = client.post("/v1/score", json={"texts": [texts["machine"][0]], "tier": "fast"})
    assert first.status_code == again.status_code == 200
    assert first.json()["results"] == again.json()["results"]
    empty = client.post("/v1/score", json={"texts": [], "tier": "fast"}).json()
    assert empty["results"] == [] and empty["tier"] == "fast" and empty["model"] == "ngram-classifier-v1"


def test_the_fast_tier_scores_in_a_process_that_is_replaced_when_it_dies(client, app, texts):
    """The fast model scores in a child process; killed, it is replaced and the next request
    (here the one in flight when it died is the same case: its batch is scored again) answers."""
    import os
    import signal

    first = client.post("/v1/score", json={"texts": [texts["human"][2]], "tier": "fast"})
    assert first.status_code == 200
    (child,) = app.state.fast_process._pool._processes
    assert child != os.getpid()
    os.kill(child, signal.SIGKILL)

    after = client.post("/v1/score", json={"texts": [texts["human"][3], texts["human"][2]], "tier": "fast"})

    assert after.status_code == 200, after.text
    assert after.json()["results"][1] == first.json()["results"][0]
    assert list(app.state.fast_process._pool._processes) != [child]


def test_the_fast_tier_keeps_the_limit_on_texts_per_request(client, app):
    limit = app.state.settings.max_texts_per_request
    response = client.post("/v1/score", json={"texts": ["a text"] * (limit + 1), "tier": "fast"})
    assert response.status_code == 413 and response.json()["limit"] == limit


@pytest.mark.parametrize("tier", ["gpu", "FAST", "", 1, None])
def test_an_unknown_tier_is_422_naming_the_field(client, tier):
    response = client.post("/v1/score", json={"texts": ["a text"], "tier": tier})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["location"] for e in problem["errors"]] == ["body.tier"]
    assert "'lm' or 'fast'" in problem["detail"]


def test_the_openapi_document_lists_both_tiers(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    tier = schemas["ScoreRequest"]["properties"]["tier"]
    assert tier["enum"] == ["lm", "fast"] and tier["default"] == "lm"
    assert "n-gram" in tier["description"] and "LM" in tier["description"]
    response = schemas["ScoreResponse"]
    assert {"tier", "model", "model_version", "threshold"} <= set(response["required"])
    assert response["properties"]["tier"]["enum"] == ["lm", "fast"]
    examples = document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {example["value"].get("tier") for example in examples.values()} >= {"fast"}


def test_readiness_reports_each_tier(client):
    """The app loads no LM: /readyz stays 503, and says the fast tier is loaded (by now)."""
    client.post("/v1/score", json={"texts": ["a text"], "tier": "fast"})
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["tiers"] == {"lm": "not loaded", "fast": "loaded"}


def test_concurrent_requests_scored_together_get_what_each_gets_alone(tmp_path, texts):
    """The micro-batch: several tenants' requests in one pass of the fast model. Each answer
    is the one its request gets alone: near-copies count within a request and against its own
    tenant's reference index, never across requests or tenants."""
    from api.routes.score import answer_requests
    from auditor.config import get_settings
    from auditor.scoring import Scorer
    from detectors.reference import ReferenceEntry, open_reference_index

    scorer = Scorer(get_settings(), reference=False, kind="fast").setup()
    known = texts["machine"][0]
    tenant_index = str(tmp_path / "tenant-a.sqlite")
    open_reference_index(tenant_index).add([ReferenceEntry("known-1", known, label="machine")])
    requests = [
        ([known, texts["human"][0], known], None),  # a copy within the request
        ([known], tenant_index),  # a known LLM output for this tenant only
        ([texts["human"][1], None, texts["machine"][1]], tenant_index),
        ([known], None),  # the same text, another tenant: no match, no cross-request copy
    ]

    together = answer_requests(scorer, requests)
    alone = [answer_requests(scorer, [request])[0] for request in requests]

    assert [[r.model_dump() for r in answer] for answer in together] == [
        [r.model_dump() for r in answer] for answer in alone
    ]
    assert [r.signals["dup_cluster"] for r in together[0]] == [0, -1, 0]
    assert together[1][0].signals["ref_key"] == "known-1" and together[1][0].flagged
    assert "known LLM output known-1" in together[1][0].flag_reason
    assert together[3][0].signals["ref_key"] is None and together[3][0].signals["dup_cluster"] == -1
