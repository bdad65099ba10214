"""Redis (the shared reference index) stopped and started while an audit job runs: clients get
503 + Retry-After meanwhile, the job interrupted by the outage is retried and recorded once with
every row, and the index answers again afterwards without a restart of the service."""

from __future__ import annotations

import pytest
from faults import assert_finished_once_with_every_row, assert_outage_answer, delivery, submit, wait_until

pytestmark = pytest.mark.reliability


def test_a_redis_outage_mid_job_is_retried_and_answered_with_503(deployment, redis_server, texts):
    key = deployment.new_key("redis")
    known = texts[300]
    rows = delivery(texts, 64, "redis")
    deployment.start_worker(RELIABILITY_CHUNK_SECONDS="0.2")
    with deployment.client(key) as client:
        added = client.post("/v1/reference", json={"texts": [{"text": known, "id": "known-1", "label": "machine"}]})
        assert added.status_code == 200 and added.json()["added"] == 1, added.text
        audit_id = submit(client, rows)
        wait_until(client, audit_id, lambda s: s["status"] == "running" and s["rows_done"] > 0)
        redis_server.stop()
        try:
            for response in (
                client.post("/v1/score", json={"texts": [known], "tier": "fast"}),
                client.post("/v1/reference", json={"texts": [{"text": "another text to index", "id": "x"}]}),
            ):
                assert_outage_answer(response)
                assert "Redis" in response.json()["detail"]
            # The job's near-duplicate step (after its last chunk) meets the outage: the job is
            # kept for another attempt, saying why.
            interrupted = wait_until(client, audit_id, lambda s: s["error"] or s["status"] != "running")
            assert interrupted["status"] == "running", interrupted
            assert "Redis was unavailable" in interrupted["error"] and "will be retried" in interrupted["error"]
        finally:
            redis_server.start()
        final = assert_finished_once_with_every_row(deployment, client, audit_id, rows)
        assert final["attempts"] == 2 and final["error"] is None
        scored = client.post("/v1/score", json={"texts": [known], "tier": "fast"})
        assert scored.status_code == 200 and scored.json()["results"][0]["signals"]["ref_key"] == "known-1"
