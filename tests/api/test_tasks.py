"""Task references over HTTP: uploads (JSON and files), listing, reading and deleting a tenant's
tasks, tenants kept apart, bad input answered with Problems, and audits that use a task."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from test_service import wait_for  # tests/api is on the path: pytest's default "prepend" import mode

pytestmark = pytest.mark.lm  # the service loads the LM before it answers


@pytest.fixture(scope="module")
def answers(mini_corpus) -> dict[str, list[str]]:
    """Short texts of one task: references from the calibration split, a delivery from the test split."""
    pool = mini_corpus[(mini_corpus.dataset == "l2r_rewrites") & mini_corpus.text.str.len().between(150, 450)]
    calibration, test = pool[pool.split == "calibration"], pool[pool.split == "test"]
    return {
        "human": calibration[calibration.label == 0].text.sample(15, random_state=11).tolist(),
        "machine": calibration[calibration.label == 1].text.sample(15, random_state=11).tolist(),
        "delivery": test[test.label == 0].text.sample(10, random_state=11).tolist()
        + test[test.label == 1].text.sample(10, random_state=11).tolist(),
    }


@pytest.fixture(scope="module")
def keys(service) -> dict[str, str]:
    return {"a": service.new_key("tasks-tenant-a"), "b": service.new_key("tasks-tenant-b")}


def csv_bytes(texts: list[str], column: str = "answer") -> bytes:
    buffer = io.StringIO()
    pd.DataFrame({column: texts, "id": range(len(texts))}).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def is_problem(response, status: int) -> bool:
    return response.status_code == status and response.headers["content-type"].startswith("application/problem+json")


def test_upload_list_show_and_delete_a_task(service, keys, answers):
    human, machine = answers["human"], answers["machine"]
    with service.client(keys["a"]) as client:
        # JSON: plain texts and objects holding the text under text_col; a repeated text is kept once
        body = {"human": [human[0], {"answer": human[1], "id": 7}, *human[2:6], human[0]], "text_col": "answer"}
        body["machine"] = [{"answer": t} for t in machine[:5]]
        added = client.post("/v1/tasks/json-task/references", json=body)
        assert added.status_code == 201, added.text
        assert added.headers["location"] == "/v1/tasks/json-task"
        summary = added.json()
        assert (summary["task"], summary["human"], summary["machine"]) == ("json-task", 6, 5)
        assert summary["stored"] == {"human": 6, "machine": 5} and summary["created_at"]

        # files: a CSV upload with its own text column
        upload = {"human": ("human.csv", csv_bytes(human))}
        added = client.post("/v1/tasks/csv-task/references", files=upload, data={"text_col": "answer"})
        assert added.status_code == 201, added.text
        assert (added.json()["human"], added.json()["machine"], added.json()["stored"]["human"]) == (15, 0, 15)

        # more texts are added to the role's stored ones (those already there are kept once) ...
        more = client.post("/v1/tasks/json-task/references", json={"human": human[5:8]})
        assert (
            more.status_code == 201
            and more.json()["human"] == 8
            and more.json()["stored"] == {"human": 2, "machine": 0}
        )
        # ... or replace them
        lines = "".join(json.dumps({"text": t}) + "\n" for t in machine[5:8])
        files = {"machine": ("machine.jsonl", lines.encode())}
        replaced = client.post("/v1/tasks/json-task/references", files=files, data={"replace": "true"})
        assert replaced.status_code == 201, replaced.text
        assert (replaced.json()["human"], replaced.json()["machine"]) == (8, 3)

        listed = {t["task"]: t for t in client.get("/v1/tasks").json()}
        assert {"json-task", "csv-task"} <= set(listed)
        assert (listed["json-task"]["human"], listed["json-task"]["machine"]) == (8, 3)
        assert (listed["csv-task"]["human"], listed["csv-task"]["machine"]) == (15, 0)

        shown = client.get("/v1/tasks/csv-task").json()
        assert shown["name"] == "csv-task" and shown["machine"] is None
        assert shown["human"]["n_texts"] == 15 and shown["human"]["origins"] == ["upload human.csv"]
        assert shown["human"]["scored_with"] == "unscored"  # scored by the first audit that uses it
        assert client.get("/v1/tasks/json-task").json()["machine"]["origins"] == ["upload machine.jsonl"]

        assert client.delete("/v1/tasks/csv-task").status_code == 204
        gone = client.get("/v1/tasks/csv-task")
        assert is_problem(gone, 404) and "no task 'csv-task' for this tenant" in gone.json()["detail"]
        assert "POST /v1/tasks/csv-task/references" in gone.json()["detail"]
        assert is_problem(client.delete("/v1/tasks/csv-task"), 404)
        assert "csv-task" not in {t["task"] for t in client.get("/v1/tasks").json()}
        assert client.get("/v1/tasks/json-task").status_code == 200  # the other task is untouched


def test_tenants_never_see_or_use_each_others_tasks(service, keys, answers):
    with service.client(keys["a"]) as a, service.client(keys["b"]) as b:
        assert a.post("/v1/tasks/private/references", json={"human": answers["human"][:4]}).status_code == 201
        assert "private" not in {t["task"] for t in b.get("/v1/tasks").json()}
        for response in (b.get("/v1/tasks/private"), b.delete("/v1/tasks/private")):
            assert is_problem(response, 404) and "'private'" in response.json()["detail"]
        before = [job["id"] for job in b.get("/v1/audits").json()]
        rows = [{"answer": t, "vendor": "v"} for t in answers["delivery"][:4]]
        audit = b.post(
            "/v1/audits", json={"rows": rows, "text_col": "answer", "vendor_col": "vendor", "task": "private"}
        )
        assert is_problem(audit, 404)
        assert audit.json()["detail"] == "no task 'private' for this tenant; POST /v1/tasks/private/references first"
        assert [job["id"] for job in b.get("/v1/audits").json()] == before  # nothing queued
        # the same name is B's own task, apart from A's
        assert b.post("/v1/tasks/private/references", json={"machine": answers["machine"][:3]}).status_code == 201
        assert (b.get("/v1/tasks/private").json()["human"], a.get("/v1/tasks/private").json()["machine"]) == (
            None,
            None,
        )
        assert a.get("/v1/tasks/private").json()["human"]["n_texts"] == 4


def test_bad_references_are_answered_with_clear_problems(service, keys, answers):
    human = answers["human"]
    with service.client(keys["a"]) as client:
        before = client.get("/v1/tasks").json()

        wrong_column = client.post(
            "/v1/tasks/bad-input/references",
            files={"human": ("human.csv", csv_bytes(human))},
            data={"text_col": "nope"},
        )
        detail = wrong_column.json()["detail"]
        assert is_problem(wrong_column, 422)
        assert "'nope'" in detail and "human" in detail and "human.csv" in detail and "'answer'" in detail

        missing_field = client.post("/v1/tasks/bad-input/references", json={"machine": [{"answer": human[0]}]})
        detail = missing_field.json()["detail"]
        assert is_problem(missing_field, 422) and "machine[0]" in detail and "'text'" in detail and "'answer'" in detail

        empty = client.post("/v1/tasks/bad-input/references", json={"human": []})
        assert (
            is_problem(empty, 422)
            and "'bad-input'" in empty.json()["detail"]
            and "no human texts" in empty.json()["detail"]
        )
        blank = client.post("/v1/tasks/bad-input/references", files={"machine": ("m.csv", b"text\n \n")})
        assert is_problem(blank, 422) and "no non-blank text" in blank.json()["detail"]

        one = client.post("/v1/tasks/bad-input/references", json={"human": human[:2], "machine": [human[3]]})
        detail = one.json()["detail"]
        assert is_problem(one, 422) and "'bad-input'" in detail and "machine reference would hold 1" in detail

        for name in ("-starts-badly", "has space", "x" * 65):
            bad_name = client.post(f"/v1/tasks/{name}/references", json={"human": human[:3]})
            assert is_problem(bad_name, 422) and "is not allowed" in bad_name.json()["detail"]
        assert is_problem(client.get("/v1/tasks/-starts-badly"), 422)

        wrong_type = client.post("/v1/tasks/bad-input/references", json={"human": [3, "a text"]})
        assert is_problem(wrong_type, 422) and "human.0" in wrong_type.json()["detail"]
        nothing = client.post("/v1/tasks/bad-input/references", json={"text_col": "answer"})
        assert is_problem(nothing, 422) and "'human'" in nothing.json()["detail"]
        not_a_flag = client.post(
            "/v1/tasks/bad-input/references",
            files={"human": ("h.csv", csv_bytes(human, "text"))},
            data={"replace": "maybe"},
        )
        assert is_problem(not_a_flag, 422) and "replace" in not_a_flag.json()["detail"]

        utf16 = client.post(
            "/v1/tasks/bad-input/references", files={"human": ("h.csv", "text\nhello\nthere\n".encode("utf-16"))}
        )
        assert is_problem(utf16, 422) and "UTF-16" in utf16.json()["detail"]
        spreadsheet = client.post("/v1/tasks/bad-input/references", files={"human": ("h.xlsx", csv_bytes(human))})
        assert is_problem(spreadsheet, 415) and ".csv" in spreadsheet.json()["detail"]
        huge = client.post(
            "/v1/tasks/bad-input/references", files={"human": ("h.csv", b"text\n" + b"x" * (3 * 1024 * 1024))}
        )
        assert is_problem(huge, 413) and huge.json()["limit"] == 2 * 1024 * 1024
        plain = client.post("/v1/tasks/bad-input/references", content=b"a text", headers={"content-type": "text/plain"})
        assert is_problem(plain, 415)

        rows = [{"answer": t, "vendor": "v"} for t in answers["delivery"][:4]]
        audit = {"rows": rows, "text_col": "answer", "vendor_col": "vendor", "task": "has space"}
        assert is_problem(client.post("/v1/audits", json=audit), 422)
        form = {"text_col": "answer", "vendor_col": "vendor", "task": "never-added"}
        unknown = client.post("/v1/audits", files={"file": ("d.csv", csv_bytes(answers["delivery"]))}, data=form)
        assert is_problem(unknown, 404) and "no task 'never-added' for this tenant" in unknown.json()["detail"]

        assert client.get("/v1/tasks").json() == before  # nothing half-created


def test_an_audit_with_a_task_uses_the_tenants_references(service, keys, answers):
    rows = [{"answer": t, "vendor": "acme", "worker": f"w{i % 4}"} for i, t in enumerate(answers["delivery"])]
    with service.client(keys["a"]) as client:
        body = {"human": answers["human"], "machine": answers["machine"], "replace": True}
        assert client.post("/v1/tasks/audited/references", json=body).status_code == 201
        form = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "task": "audited"}
        submitted = client.post(
            "/v1/audits", files={"file": ("delivery.csv", pd.DataFrame(rows).to_csv(index=False))}, data=form
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["params"]["options"]["task"] == "audited"
        service.start_worker()
        status = wait_for(client, submitted.json()["id"])
        assert status["status"] == "succeeded", status
        report = client.get(f"/v1/audits/{status['id']}/report").json()
        configuration = report["configuration"]
        assert configuration["task"] == "audited"
        assert configuration["references"]["human"]["n_texts"] == 15
        assert configuration["references"]["machine"]["n_texts"] == 15
        assert configuration["references"]["human"]["origin"] == "task audited"
        assert report["vendors"][0]["calibration_fit"] is not None
        # the worker scored the references once and stored their scores for the next audit
        stored = client.get("/v1/tasks/audited").json()
        assert stored["human"]["scored_with"] != "unscored" and stored["machine"]["scored_with"] != "unscored"
        service.stop_workers()

        # a task deleted while its audit waits fails that audit with a message, not a crash
        json_rows = {"rows": rows[:4], "text_col": "answer", "vendor_col": "vendor", "task": "audited"}
        queued = client.post("/v1/audits", json=json_rows)
        assert queued.status_code == 202, queued.text
        assert client.delete("/v1/tasks/audited").status_code == 204
        service.start_worker()
        failed = wait_for(client, queued.json()["id"])
        assert failed["status"] == "failed" and "no task 'audited' for this tenant" in failed["error"], failed
    service.stop_workers()
