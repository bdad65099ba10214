"""The image as shipped, built and running: ``make test-container`` (scripts/container/test.sh)
builds the Dockerfile with podman and runs these tests against it, with AUDITOR_TEST_IMAGE naming
the image. One container, started the way ``docker run -p 8000:8000 llm-auditor`` starts it (its
own CMD and non-root user, nothing mounted, no network needed), and real HTTP requests to it:
readiness, scoring, an audit of the example delivery with its report, and the health check.

Without AUDITOR_TEST_IMAGE the module is skipped (``make test`` does not build images)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("AUDITOR_TEST_IMAGE", "")
if not IMAGE:
    pytest.skip("the image tests run through `make test-container` (AUDITOR_TEST_IMAGE)", allow_module_level=True)

PODMAN = shutil.which("podman") or "podman"
READY_TIMEOUT = float(os.environ.get("AUDITOR_TEST_READY_TIMEOUT", "600"))
AUDIT_TIMEOUT = float(os.environ.get("AUDITOR_TEST_AUDIT_TIMEOUT", "1200"))
SERVICE_UID = 10001
TEXTS = [
    "The mitochondria is the powerhouse of the cell, and it produces ATP through oxidative phosphorylation.",
    "lol i went to the store and forgot my wallet again, typical monday",
    "In conclusion, it is important to note that climate change poses significant challenges for all of us.",
]
TIMINGS: dict[str, float] = {}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(client: httpx.Client, name: str) -> None:
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < READY_TIMEOUT:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            pytest.fail(f"the container stopped ({state}):\n{podman('logs', name, check=False).stderr[-3000:]}")
        try:
            answer = client.get("/readyz", timeout=5)
            if answer.status_code == 200:
                TIMINGS["ready (s)"] = round(time.monotonic() - started, 1)
                return
            last = f"{answer.status_code} {answer.text[:500]}"
            if answer.status_code == 503 and answer.json().get("models") == "failed":  # for ever: say why now
                why = client.get("/healthz", timeout=5).text
                pytest.fail(
                    f"the service could not load its models: {why}\n{podman('logs', name, check=False).stderr[-3000:]}"
                )
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(2)
    logs = podman("logs", name, check=False)
    pytest.fail(f"/readyz not 200 after {READY_TIMEOUT:.0f} s (last: {last}):\n{(logs.stdout + logs.stderr)[-3000:]}")


@pytest.fixture(scope="module")
def container() -> Iterator[dict]:
    """The image started as shipped, on a free loopback port; ready (or the module fails with its logs)."""
    name = f"auditor-test-{os.getpid()}"
    port = _free_port()
    podman("rm", "--force", name, check=False)
    podman("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000", IMAGE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            _wait_ready(client, name)
            key = podman("exec", name, "auditor", "keys", "create", "--tenant", "acme").stdout.split()[-1]
            client.headers["X-API-Key"] = key
            yield {"name": name, "client": client}
    finally:
        for _ in range(3):  # runc sometimes reports the stop as failed although the container did stop
            if podman("rm", "--force", "--time", "10", name, check=False).returncode == 0:
                break
        print(f"\ncontainer timings: {json.dumps(TIMINGS)}")


def test_image_runs_as_its_own_non_root_user(container):
    user = podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
    assert user.split(":")[0] == str(SERVICE_UID)
    # the server itself (PID 1 of the container) runs as that user, not only `podman exec`
    status = podman("exec", container["name"], "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {str(SERVICE_UID)}, status


def test_service_user_reads_every_model_file():
    """The defect this image had: the LM's weights were written 0600 by root at build time, so
    the service user could not load them and /readyz stayed 503 for ever. Checked in a container
    of its own (the image's user, no server), so that it names the file even where the service
    cannot start."""
    script = (
        "import json, os, pathlib, sys\n"
        "files = [p for root in sys.argv[1:] for p in pathlib.Path(root).rglob('*') if p.is_file()]\n"
        "unreadable = [str(p) for p in files if not os.access(p, os.R_OK)]\n"
        "weights = pathlib.Path(sys.argv[1], 'models/smollm2-135m-instruct/model.safetensors')\n"
        "size = len(weights.read_bytes()) if weights.exists() and not unreadable else None\n"
        "print(json.dumps({'unreadable': unreadable, 'files': len(files), 'weights_bytes': size}))\n"
    )
    found = json.loads(podman("run", "--rm", IMAGE, "python", "-c", script, "/var/lib/auditor", "/opt/auditor").stdout)
    assert not found["unreadable"], f"the service user cannot read {found['unreadable'][:20]}"
    assert found["weights_bytes"] > 50_000_000, found


def test_torch_is_the_cpu_build(container):
    version = podman("exec", container["name"], "python", "-c", "import torch; print(torch.__version__)").stdout
    assert version.strip().endswith("+cpu"), version


def test_ready_and_alive(container):
    client = container["client"]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text


def test_score_answers_with_probabilities(container):
    client = container["client"]
    started = time.monotonic()
    answer = client.post("/v1/score", json={"texts": TEXTS})
    TIMINGS["score 3 texts (s)"] = round(time.monotonic() - started, 1)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(TEXTS)
    for result in results:
        assert 0.0 <= result["llm_probability"] <= 1.0
        assert isinstance(result["flagged"], bool)
    # a key is required
    refused = httpx.post(f"{client.base_url}/v1/score", json={"texts": TEXTS[:1]})
    assert refused.status_code == 401, refused.text


def test_audit_of_the_example_delivery_end_to_end(container):
    """examples/delivery.csv uploaded as `make demo` audits it, the job followed to the end, and
    its report fetched in each format."""
    client = container["client"]
    delivery = REPO / "examples" / "delivery.csv"
    frame = pd.read_csv(delivery)
    started = time.monotonic()
    with delivery.open("rb") as upload:
        submitted = client.post(
            "/v1/audits",
            files={"file": ("delivery.csv", upload, "text/csv")},
            data={"text_col": "text", "vendor_col": "vendor", "worker_col": "worker_id", "id_col": "item_id"},
        )
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["Location"]
    assert submitted.json()["rows_expected"] == len(frame)
    status = submitted.json()
    while status["status"] in ("queued", "running"):
        assert time.monotonic() - started < AUDIT_TIMEOUT, (
            f"the audit did not finish in {AUDIT_TIMEOUT:.0f} s: {status}"
        )
        time.sleep(3)
        status = client.get(location).json()
    TIMINGS[f"audit {len(frame)} rows (s)"] = round(time.monotonic() - started, 1)
    assert status["status"] == "succeeded", status
    assert status["rows_done"] == len(frame)

    report = client.get(f"{location}/report", params={"format": "json"})
    assert report.status_code == 200, report.text
    vendors = {vendor["vendor"]: vendor for vendor in report.json()["vendors"]}
    expected = frame.groupby("vendor").size().to_dict()
    assert {name: vendor["n_items"] for name, vendor in vendors.items()} == expected
    for name, vendor in vendors.items():
        assert vendor["n_scored"] + vendor["n_skipped"] == expected[name]
        assert 0.0 <= vendor["prevalence"]["estimate"] <= 1.0
        workers = set(frame.loc[frame["vendor"] == name, "worker_id"])
        assert {worker["worker"] for worker in vendor["workers"]} == workers
    html = client.get(f"{location}/report", params={"format": "html"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    markdown = client.get(f"{location}/report", params={"format": "md"})
    assert markdown.status_code == 200
    for name in expected:
        assert name in html.text and name in markdown.text


def test_health_check_is_in_the_image_and_passes(container):
    """The HEALTHCHECK survives the build (the OCI format would drop it) and passes on the running service."""
    check = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE).stdout)
    assert check and "/healthz" in " ".join(check["Test"]), check
    ran = podman("healthcheck", "run", container["name"], check=False)
    assert ran.returncode == 0, f"health check failed ({ran.returncode}): {ran.stdout} {ran.stderr}"
    health = podman("inspect", "--format", "{{json .State.Health}}", container["name"]).stdout
    assert json.loads(health)["Status"] == "healthy", health
