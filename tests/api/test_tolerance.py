"""The tolerance over REST, in-process on an app without models (fast tier): `tolerance` in a JSON
or multipart submission is validated like `--tolerance`, stored with the job's options, and the
report the service serves carries the verdicts decided against it. The whole path through a worker
(the same run_audit, the same report as the CLI) is in test_same_report.py."""

from __future__ import annotations

import pytest

from auditor.report.models import Methods, Report, VendorReport
from auditor.report.verdict import verdict_for
from auditor.stats import Interval

ROWS = [{"answer": f"answer number {i} about the weather", "vendor": "acme" if i % 2 else "beta"} for i in range(12)]


def submit_json(client, **options):
    return client.post("/v1/audits", json={"rows": ROWS, "text_col": "answer", "vendor_col": "vendor", **options})


def submit_multipart(client, **fields):
    csv = "answer,vendor\n" + "".join(f"{r['answer']},{r['vendor']}\n" for r in ROWS)
    data = {"text_col": "answer", "vendor_col": "vendor", **fields}
    return client.post("/v1/audits", files={"file": ("delivery.csv", csv.encode())}, data=data)


@pytest.mark.parametrize("submit", [submit_json, submit_multipart])
def test_the_tolerance_is_stored_with_the_jobs_options(client, submit):
    from api.jobs import job_options

    response = submit(client, tolerance=0.1)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["options"]["tolerance"] == 0.1 and job_options(params).tolerance == 0.1
    without = submit(client)
    assert without.status_code == 202 and job_options(without.json()["params"]).tolerance is None


@pytest.mark.parametrize("submit", [submit_json, submit_multipart])
@pytest.mark.parametrize("bad", [-0.1, 1.5, "lots"])
def test_a_tolerance_outside_zero_to_one_is_422(client, submit, bad):
    response = submit(client, tolerance=bad)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "tolerance" in response.text


def test_the_openapi_document_offers_the_tolerance(client):
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/audits"]["post"]["requestBody"]["content"]
    assert "tolerance" in body["application/json"]["schema"]["properties"]
    assert "tolerance" in body["multipart/form-data"]["schema"]["properties"]


def _report(tolerance: float) -> Report:
    """What a worker's run_audit returns: vendors whose verdicts were decided against the job's tolerance."""

    def vendor(name: str, low: float, high: float) -> VendorReport:
        made = VendorReport(
            vendor=name,
            n_items=100,
            n_scored=100,
            n_skipped=0,
            n_flagged=10,
            flag_rate=Interval(estimate=0.1, ci_low=0.05, ci_high=0.15),
            prevalence=Interval(estimate=(low + high) / 2, ci_low=low, ci_high=high),
        )
        made.verdict = verdict_for(made, 0.9, tolerance)
        return made

    return Report(
        created_at="2026-12-06T00:00:00+00:00",
        inputs=[],
        columns={},
        configuration={"tolerance": tolerance},
        models={
            "classifier": {"id": "classifier-v2"},
            "perplexity": {"id": "smollm2-135m", "params": {"model": "SmolLM2-135M"}},
            "near_duplicates": {"id": "minhash-5gram"},
            "model_dir": "models/default",
        },
        methods=Methods(
            interval_level=0.9,
            primary="flags",
            flag_rate="Wilson score interval",
            prevalence="flags corrected for the error rates",
            prevalence_score_mixture="mixture of the reference score histograms",
            workers="beta-binomial shrinkage",
            error_rates={
                "threshold": 0.8,
                "false_positives": 12,
                "n_human": 1000,
                "true_positives": 700,
                "n_machine": 1000,
                "source": "held-out calibration texts",
            },
        ),
        totals={"rows": 200, "by_status": {"scored": 200}},
        vendors=[vendor("acme", 0.22, 0.87), vendor("beta", 0.02, 0.3)],
    )


def test_the_served_report_carries_the_decisions(app, client):
    from api.db import AuditJob
    from api.jobs import _finish, job_options

    response = submit_json(client, tolerance=0.1)
    assert response.status_code == 202
    audit_id = response.json()["id"]
    with app.state.sessions() as session:
        job = session.get(AuditJob, audit_id)
        tolerance = job_options(job.params).tolerance
    assert tolerance == 0.1
    _finish(app.state.sessions, job, _report(tolerance), 200)

    report = client.get(f"/v1/audits/{audit_id}/report").json()
    verdicts = {v["vendor"]: v["verdict"] for v in report["vendors"]}
    assert {name: v["decision"] for name, v in verdicts.items()} == {"acme": "above", "beta": "undetermined"}
    assert verdicts["acme"]["headline"] == "Above your 10% tolerance: at least 22% of items are LLM-written"
    assert verdicts["acme"]["tolerance"] == 0.1 and verdicts["acme"]["at_least"] == 0.22
    html = client.get(f"/v1/audits/{audit_id}/report", params={"format": "html"}).text
    assert 'data-decision="above"' in html and 'data-decision="undetermined"' in html
    assert "dashed line: your tolerance, 10.0%" in html  # the estimates chart draws it
    markdown = client.get(f"/v1/audits/{audit_id}/report", params={"format": "md"}).text
    assert "⚠ Above tolerance" in markdown and verdicts["beta"]["headline"] in markdown
