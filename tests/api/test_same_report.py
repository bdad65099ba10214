"""One execution seam: the same audit through `auditor audit` and through `POST /v1/audits` (a job
run by the service's worker) gives the same report.json, field by field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_service import wait_for  # tests/api is on the path: pytest's default "prepend" import mode

pytestmark = pytest.mark.lm

# Where each run keeps its files and its reference index: these name a deployment, not a result.
_DEPLOYMENT_KEYS = {"created_at", "location", "backend", "reference"}
_DIRECTORIES = re.compile(r"/(?:[^/\s;]+/)+([^/\s;]+)")  # an absolute path -> its file name


@pytest.fixture(scope="module")
def files(tmp_path_factory, mini_corpus) -> dict[str, Path]:
    """A small delivery (two vendors, workers, ids, one answer pasted by two workers) and
    domain-matched human and LLM references from another split of the same dataset."""
    root = tmp_path_factory.mktemp("same-report")
    pool = mini_corpus[(mini_corpus.dataset == "l2r_rewrites") & mini_corpus.text.str.len().between(150, 450)]
    test, calibration = pool[pool.split == "test"], pool[pool.split == "calibration"]
    human = test[test.label == 0].text.sample(12, random_state=7).tolist()
    machine = test[test.label == 1].text.sample(12, random_state=7).tolist()
    rows = [
        {"id": f"r{i}", "answer": t, "vendor": "acme" if i % 3 else "beta", "worker": f"w{i % 4}"}
        for i, t in enumerate(human + machine)
    ]
    rows.append({"id": "copy", "answer": machine[0], "vendor": "beta", "worker": "w9"})
    paths = {"delivery": root / "delivery.csv", "human": root / "human.csv", "machine": root / "machine.csv"}
    pd.DataFrame(rows).to_csv(paths["delivery"], index=False)
    for label, name in ((0, "human"), (1, "machine")):
        texts = calibration[calibration.label == label].text.sample(15, random_state=7)
        texts.to_frame("answer").to_csv(paths[name], index=False)
    return paths


def normalised(report: dict) -> dict:
    """The report without what names the run rather than the result: timestamps, where the
    files and the reference index live (paths, also inside texts, are compared by file name)."""

    def walk(value, key=""):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items() if k not in _DEPLOYMENT_KEYS}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            return _DIRECTORIES.sub(r"\1", value)
        return value

    return walk(report)


def differences(a, b, where="report") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            found += differences(a[k], b[k], f"{where}.{k}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        found = [f"{where}: {len(a)} vs {len(b)} entries"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found += differences(x, y, f"{where}[{i}]")
        return found
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_cli_and_rest_audits_write_the_same_report(service, files, tmp_path):
    out = tmp_path / "cli"
    env = {**service.env, "AUDITOR_REFERENCE_INDEX": str(tmp_path / "reference.sqlite")}
    options = ["--text-col", "answer", "--vendor-col", "vendor", "--worker-col", "worker", "--id-col", "id"]
    references = ["--human-reference", str(files["human"]), "--machine-reference", str(files["machine"])]
    command = [sys.executable, "-m", "auditor.cli", "audit", str(files["delivery"]), *options, *references]
    command += ["--reference-text-col", "answer", "--level", "0.8", "--tolerance", "0.2", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    cli = json.loads((out / "report.json").read_text())
    decisions = {v["vendor"]: v["verdict"]["decision"] for v in cli["vendors"]}
    assert done.returncode == (3 if "above" in decisions.values() else 0), done.stderr[-3000:]

    key = service.new_key("tenant-same-report")
    with service.client(key) as client:
        upload = {name: (path.name, path.read_bytes()) for name, path in (("file", files["delivery"]),)}
        upload |= {f"{role}_reference": (files[role].name, files[role].read_bytes()) for role in ("human", "machine")}
        fields = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "id_col": "id"}
        fields |= {"reference_text_col": "answer", "level": "0.8", "tolerance": "0.2"}
        response = client.post("/v1/audits", files=upload, data=fields)
        assert response.status_code == 202, response.text
        service.start_worker()
        status = wait_for(client, response.json()["id"])
        assert status["status"] == "succeeded", status
        rest = client.get(f"/v1/audits/{status['id']}/report").json()
    service.stop_workers()

    assert (
        rest["methods"]["primary"] == "score_mixture"
        and "measured on 15 texts" in rest["methods"]["error_rates"]["source"]
    )
    assert rest["columns"]["worker"] == "worker" and rest["vendors"][0]["workers"]
    assert rest["configuration"]["tolerance"] == 0.2 and all(v["verdict"]["tolerance"] == 0.2 for v in rest["vendors"])
    assert differences(normalised(cli), normalised(rest)) == []  # verdicts and decisions included


def test_cli_and_rest_audits_with_a_task_write_the_same_report(service, files, tmp_path):
    """`auditor references add` + `auditor audit --task` against POST /v1/tasks/{task}/references +
    POST /v1/audits with `task`: references stored once, scored once, the same report."""
    # The command line's task store in a folder of its own (by default <cache>/tasks, where the
    # service keeps its tenants' stores in tenant-* folders).
    env = {**service.env, "AUDITOR_TASKS_DIR": str(tmp_path / "tasks")}
    env["AUDITOR_REFERENCE_INDEX"] = str(tmp_path / "reference.sqlite")
    cli = [sys.executable, "-m", "auditor.cli"]
    add = [*cli, "references", "add", "--task", "same-task", "--text-col", "answer"]
    add += ["--human", str(files["human"]), "--machine", str(files["machine"])]
    done = subprocess.run(add, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    options = ["--text-col", "answer", "--vendor-col", "vendor", "--worker-col", "worker", "--id-col", "id"]
    command = [*cli, "audit", str(files["delivery"]), *options, "--task", "same-task", "--level", "0.8"]
    done = subprocess.run([*command, "--out", str(tmp_path / "cli")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    from_cli = json.loads((tmp_path / "cli" / "report.json").read_text())

    key = service.new_key("tenant-same-task-report")
    with service.client(key) as client:
        upload = {role: (files[role].name, files[role].read_bytes()) for role in ("human", "machine")}
        added = client.post("/v1/tasks/same-task/references", files=upload, data={"text_col": "answer"})
        assert added.status_code == 201, added.text
        fields = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "id_col": "id"}
        fields |= {"task": "same-task", "level": "0.8"}
        delivery = {"file": (files["delivery"].name, files["delivery"].read_bytes())}
        response = client.post("/v1/audits", files=delivery, data=fields)
        assert response.status_code == 202, response.text
        service.start_worker()
        status = wait_for(client, response.json()["id"])
        assert status["status"] == "succeeded", status
        rest = client.get(f"/v1/audits/{status['id']}/report").json()
    service.stop_workers()

    assert rest["configuration"]["task"] == "same-task"
    assert rest["configuration"]["references"]["human"] == {
        "n_texts": 15,
        "origin": "task same-task",
        "generator": None,
    }
    assert rest["configuration"]["references"]["machine"]["n_texts"] == 15
    assert rest["vendors"][0]["calibration_fit"] is not None
    assert differences(normalised(from_cli), normalised(rest)) == []


def test_references_are_checked_before_the_job_is_queued(service, files):
    key = service.new_key("tenant-reference-check")
    with service.client(key) as client:
        fields = {"text_col": "answer", "vendor_col": "vendor", "reference_text_col": "nope"}
        upload = {"file": ("delivery.csv", files["delivery"].read_bytes())}
        upload["human_reference"] = ("human.csv", files["human"].read_bytes())
        response = client.post("/v1/audits", files=upload, data=fields)
        assert response.status_code == 422 and "'nope'" in response.json()["detail"]
        assert "human_reference" in response.json()["detail"] and "'answer'" in response.json()["detail"]
        rows = pd.read_csv(files["delivery"]).to_dict("records")
        body = {"rows": rows, "text_col": "answer", "vendor_col": "vendor", "human_reference": ["a human answer."]}
        queued = client.post("/v1/audits", json=body)
        assert queued.status_code == 202, queued.text
        assert queued.json()["params"]["options"]["columns"]["text"] == "answer"
        assert client.get("/v1/audits").json()[0]["id"] == queued.json()["id"]
