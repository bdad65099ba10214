"""The REST service over HTTP: scoring, audits through workers, tenants, bad uploads, restarts."""

from __future__ import annotations

import http.client
import io
import signal
import time

import pandas as pd
import pytest

from auditor.reader import write_table

pytestmark = pytest.mark.lm


@pytest.fixture(scope="module")
def texts(mini_corpus):
    pool = mini_corpus[
        # Short texts keep the LM work (and the suite) small on slow CPUs; the plumbing is the same.
        (mini_corpus.dataset == "l2r_rewrites")
        & (mini_corpus.split == "test")
        & mini_corpus.text.str.len().between(150, 500)
    ]
    return {
        "human": pool[pool.label == 0].sample(40, random_state=4).text.tolist(),
        "machine": pool[pool.label == 1].sample(41, random_state=4).text.tolist(),
    }


@pytest.fixture(scope="module")
def delivery_csv(texts) -> bytes:
    rows = [
        {"answer": t, "vendor": "acme-labels", "worker": f"w{i % 7}"}
        for i, t in enumerate(texts["human"][:30] + texts["machine"][:30])
    ]
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.fixture(scope="module")
def tenants(service):
    return {"a": service.new_key("tenant-a"), "b": service.new_key("tenant-b")}


def wait_for(client, audit_id: str, timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/v1/audits/{audit_id}").json()
        if status["status"] in ("succeeded", "failed"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"audit {audit_id} did not finish: {status}")


def submit(client, data: bytes, name: str = "delivery.csv", **columns):
    fields = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", **columns}
    return client.post("/v1/audits", files={"file": (name, data)}, data=fields)


def test_score_answers_in_order_with_signals(service, tenants, texts):
    with service.client(tenants["a"]) as client:
        one = client.post("/v1/score", json={"texts": [texts["machine"][0]]})
        assert one.status_code == 200
        body = one.json()
        assert len(body["results"]) == 1 and 0 <= body["results"][0]["llm_probability"] <= 1
        assert body["tier"] == "lm" and body["model"] == "classifier-v3"  # the default tier: today's model
        assert {"fast_detectgpt", "binoculars", "ll_mean", "spans"} <= set(body["results"][0]["signals"])
        batch = texts["human"][:5] + [None, ""] + texts["machine"][:5]
        results = client.post("/v1/score", json={"texts": batch}).json()["results"]
        assert [r["skip_reason"] for r in results[5:7]] == ["missing", "empty"]
        human, machine = [r["llm_probability"] for r in results[:5]], [r["llm_probability"] for r in results[7:]]
        assert sum(machine) / 5 > sum(human) / 5
        # order is kept: the same text alone scores the same as inside the batch
        alone = client.post("/v1/score", json={"texts": [batch[8]]}).json()["results"][0]["llm_probability"]
        assert alone == pytest.approx(results[8]["llm_probability"], abs=0.02)


def test_too_many_texts_is_413_naming_the_limit_and_errors_are_problem_json(service, tenants):
    with service.client(tenants["a"]) as client:
        response = client.post("/v1/score", json={"texts": ["a text"] * 33})
        assert response.status_code == 413 and response.headers["content-type"].startswith("application/problem+json")
        assert "32" in response.json()["detail"] and response.json()["limit"] == 32
        invalid = client.post("/v1/score", json={"text": "wrong field"})
        assert invalid.status_code == 422 and "texts" in invalid.json()["detail"]
    with service.client() as anonymous:
        assert anonymous.post("/v1/score", json={"texts": ["x"]}).status_code == 401
    with service.client("aud_not-a-real-key") as stranger:
        assert stranger.get("/v1/vendors").status_code == 401


def test_audit_runs_in_a_worker_and_serves_the_same_report_as_the_cli(service, tenants, delivery_csv):
    with service.client(tenants["a"]) as client:
        response = submit(client, delivery_csv)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        assert location == f"/v1/audits/{response.json()['id']}" and response.json()["status"] == "queued"
        audit_id = response.json()["id"]
        assert client.get(f"{location}/report").status_code == 409  # not finished yet
        service.start_worker()
        status = wait_for(client, audit_id)
        assert status["status"] == "succeeded" and status["progress"] == 1.0, status
        report = client.get(f"{location}/report", params={"format": "json"}).json()
        vendor = report["vendors"][0]
        assert vendor["vendor"] == "acme-labels" and vendor["n_scored"] == 60
        assert 0.2 < vendor["prevalence"]["estimate"] < 0.85
        html = client.get(f"{location}/report", params={"format": "html"})
        assert html.headers["content-type"].startswith("text/html") and "acme-labels" in html.text
        assert "| acme-labels |" in client.get(f"{location}/report", params={"format": "md"}).text
        assert client.get(f"{location}/report", params={"format": "pdf"}).status_code == 422
        vendors = client.get("/v1/vendors").json()
        assert [v["vendor"] for v in vendors] == ["acme-labels"]
        history = client.get("/v1/vendors/acme-labels/history").json()["history"]
        assert history[-1]["audit_id"] == audit_id and history[-1]["prevalence"] == vendor["prevalence"]["estimate"]
    service.stop_workers()


def test_json_rows_submission(service, tenants, texts):
    rows = [{"t": t, "v": "rows-vendor"} for t in texts["human"][:10]]
    with service.client(tenants["a"]) as client:
        response = client.post("/v1/audits", json={"rows": rows, "text_col": "t", "vendor_col": "v"})
        assert response.status_code == 202, response.text
        wrong = client.post("/v1/audits", json={"rows": rows, "text_col": "text", "vendor_col": "v"})
        assert wrong.status_code == 422 and "'t'" in wrong.json()["detail"]


def test_tenants_see_only_their_own_audits_and_vendors(service, tenants, delivery_csv):
    with service.client(tenants["a"]) as a, service.client(tenants["b"]) as b:
        audit_id = submit(a, delivery_csv).json()["id"]
        for path in (f"/v1/audits/{audit_id}", f"/v1/audits/{audit_id}/report"):
            response = b.get(path)
            assert response.status_code == 404 and audit_id in response.json()["detail"]
        assert b.get("/v1/vendors").json() == []
        assert b.get("/v1/vendors/acme-labels/history").status_code == 404
        assert all(job["id"] != audit_id for job in b.get("/v1/audits").json())
        assert any(job["id"] == audit_id for job in a.get("/v1/audits").json())


def test_malformed_uploads_get_a_clear_4xx_and_lose_nothing_else(service, tenants, delivery_csv, tmp_path):
    with service.client(tenants["a"]) as client:
        before = {job["id"] for job in client.get("/v1/audits").json()}
        utf16 = "answer,vendor\nhello there,acme\n".encode("utf-16")
        response = submit(client, utf16)
        assert response.status_code == 422 and "UTF-16" in response.json()["detail"]
        response = submit(client, delivery_csv, text_col="text")
        assert (
            response.status_code == 422
            and "--text-col 'text'" in response.json()["detail"]
            and "'answer'" in response.json()["detail"]
        )
        parquet = write_table(
            pd.DataFrame({"answer": ["a b c"] * 50, "vendor": "v", "worker": "w"}), tmp_path / "d.parquet"
        ).read_bytes()
        response = submit(client, parquet[: len(parquet) // 2], name="d.parquet")
        assert response.status_code == 422 and "Parquet" in response.json()["detail"]
        response = submit(client, delivery_csv, name="delivery.xlsx")
        assert response.status_code == 415 and ".csv" in response.json()["detail"]
        response = submit(client, b"answer,vendor\n" + b"x" * (3 * 1024 * 1024))
        assert response.status_code == 413 and "limit" in response.json()["detail"]
        after = {job["id"] for job in client.get("/v1/audits").json()}
        assert after == before  # nothing half-created
        assert submit(client, delivery_csv).status_code == 202  # and the service still takes good uploads


def test_a_job_whose_worker_is_killed_is_taken_over_and_finishes(service, tenants, texts):
    rows = [
        {"answer": t, "vendor": "big-vendor", "worker": f"w{i % 9}"}
        for i, t in enumerate((texts["human"][:40] + texts["machine"][:40]) * 2)
    ]
    with service.client(tenants["a"]) as client:
        audit_id = client.post(
            "/v1/audits", json={"rows": rows, "text_col": "answer", "vendor_col": "vendor", "worker_col": "worker"}
        ).json()["id"]
        # Drain anything queued earlier so that the worker we kill is on this job.
        first = service.start_worker()
        deadline = time.time() + 600
        while time.time() < deadline:
            status = client.get(f"/v1/audits/{audit_id}").json()
            if status["status"] == "running" and status["rows_done"] > 0:
                break
            time.sleep(0.2)
        assert status["status"] == "running", status
        first.send_signal(signal.SIGKILL)
        first.wait()
        service.start_worker()
        final = wait_for(client, audit_id)
        assert final["status"] == "succeeded" and final["attempts"] == 2, final
        report = client.get(f"/v1/audits/{audit_id}/report").json()
        assert report["vendors"][0]["n_scored"] == len(rows)
    service.stop_workers()


def test_reference_texts_are_matched_by_score(service, tenants, texts):
    known = texts["machine"][40]
    with service.client(tenants["b"]) as client:
        added = client.post(
            "/v1/reference", json={"texts": [{"text": known, "id": "known-1", "label": "machine", "source": "test"}]}
        ).json()
        assert added["added"] == 1 and added["entries"] >= 1
        again = client.post("/v1/reference", json={"texts": [{"text": known, "id": "known-1"}]}).json()
        assert again["added"] == 0 and again["already_present"] == 1
        result = client.post("/v1/score", json={"texts": [known.replace(".", "!")]}).json()["results"][0]
        assert (
            result["flagged"]
            and result["signals"]["ref_key"] == "known-1"
            and "known LLM output" in result["flag_reason"]
        )
    with service.client(tenants["a"]) as other:  # another tenant's reference index is not shared
        result = other.post("/v1/score", json={"texts": [known.replace(".", "!")]}).json()["results"][0]
        assert result["signals"]["ref_key"] is None


def test_restart_loses_no_job_and_no_report(service, tenants, delivery_csv):
    with service.client(tenants["a"]) as client:
        finished = [j for j in client.get("/v1/audits").json() if j["status"] == "succeeded"][0]["id"]
        pending = submit(client, delivery_csv).json()["id"]
    service.stop_web()
    service.start_web()
    with service.client(tenants["a"]) as client:
        assert client.get(f"/v1/audits/{finished}/report").status_code == 200
        assert client.get(f"/v1/audits/{pending}").json()["status"] == "queued"
        service.start_worker()
        assert wait_for(client, pending)["status"] == "succeeded"
    service.stop_workers()


def test_health_readiness_and_metrics(service, tenants):
    with service.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["model_loaded"] and ready["database"]
        metrics = client.get("/metrics").text
        assert "auditor_http_requests_total" in metrics and "auditor_texts_scored_total" in metrics
        assert 'auditor_audit_jobs{state="succeeded"}' in metrics
        spec = client.get("/openapi.json").json()
        assert {"/v1/score", "/v1/audits", "/v1/audits/{audit_id}/report", "/v1/vendors", "/v1/reference"} <= set(
            spec["paths"]
        )
        assert client.get("/docs").status_code == 200


def test_keys_are_stored_hashed_and_can_be_revoked(service):
    key = service.new_key("tenant-revoke")
    with service.client(key) as client:
        assert client.get("/v1/vendors").status_code == 200
    listing = service.cli("keys", "list").stdout
    assert key not in listing and key[:12] in listing
    service.cli("keys", "revoke", key[:12])
    with service.client(key) as client:
        assert client.get("/v1/vendors").status_code == 401


def test_a_client_retrying_after_retry_after_finds_its_connection_open(service):
    """A 503 says Retry-After: 5; a client that waits that long and sends its retry on the same
    keep-alive connection must find it open (uvicorn closes idle connections after 5 s by default,
    which raced such retries under load: benchmarks/load.py saw HTTPConnectionClosed)."""
    from api.outages import RETRY_AFTER_S

    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    connection.request("GET", "/healthz")
    first = connection.getresponse()
    assert first.status == 200 and first.read()
    socket_used = connection.sock
    time.sleep(RETRY_AFTER_S + 1)
    connection.request("GET", "/healthz")  # closed by the server meanwhile: RemoteDisconnected here
    again = connection.getresponse()
    assert again.status == 200 and again.read() and connection.sock is socket_used
    connection.close()
