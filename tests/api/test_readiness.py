"""The server answers at once and loads the models in the background: /healthz is 200 while
they load, /readyz and the routes that need them 503 with Retry-After until they are loaded.

The server is real (uvicorn in a subprocess on loopback); a small launcher holds the model
loading until the test opens a gate, so that the loading window is observed, not raced."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

LAUNCHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import uvicorn

    import api.main

    port, gate = int(sys.argv[1]), Path(sys.argv[2])
    load = api.main._load_scorer

    def gated(settings):
        while not gate.exists():
            time.sleep(0.05)
        if gate.read_text() == "fail":
            raise RuntimeError("simulated: the model files are unreadable")
        return load(settings)

    api.main._load_scorer = gated
    if __name__ == "__main__":  # the fast tier's scoring process imports this module again (spawn)
        uvicorn.run(api.main.create_app(), host="127.0.0.1", port=port, log_level="warning")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUDITOR_") or k in ("AUDITOR_CACHE_DIR", "AUDITOR_MODEL_CACHE_DIR")
    }
    env["AUDITOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'auditor.db'}"
    (tmp_path / "launch.py").write_text(LAUNCHER)
    started: list[subprocess.Popen] = []

    def start() -> tuple[str, Path, str]:
        key = (
            subprocess.run(
                [sys.executable, "-m", "auditor.cli", "keys", "create", "--tenant", "readiness"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port, gate = _free_port(), tmp_path / f"gate-{len(started)}"
        log = (tmp_path / f"server-{len(started)}.log").open("w")
        server = subprocess.Popen(
            [sys.executable, str(tmp_path / "launch.py"), str(port), str(gate)],
            env=env,
            cwd=Path(__file__).parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(server)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first answer of /healthz, polled from the start
            assert server.poll() is None, (tmp_path / log.name).read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url, gate, key
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not answer /healthz")

    yield start
    for server in started:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.lm  # once the gate opens, the real models load
def test_answers_while_the_models_load_then_becomes_ready(launch):
    url, gate, key = launch()
    with httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": key}) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert ready.headers["content-type"] == "application/problem+json"
        body = ready.json()
        assert body["models"] == "loading" and body["checks"] == {"model_loaded": False, "database": True}
        assert "loading" in body["detail"]
        scored = client.post("/v1/score", json={"texts": ["a text to score"]})
        assert scored.status_code == 503 and scored.headers["Retry-After"] == "5"
        assert "loading" in scored.json()["detail"] and "retry" in scored.json()["detail"]
        assert client.get("/v1/vendors").status_code == 200  # what needs no model is served meanwhile

        gate.write_text("go")
        deadline = time.monotonic() + 600
        while (ready := client.get("/readyz")).status_code != 200:
            assert ready.json()["models"] == "loading" and time.monotonic() < deadline
            time.sleep(0.5)
        assert ready.json() == {
            "status": "ready",
            "model_loaded": True,
            "database": True,
            "tiers": {"lm": "loaded", "fast": "loaded"},
        }
        assert "Retry-After" not in ready.headers
        scored = client.post("/v1/score", json={"texts": ["a text to score"]})
        assert scored.status_code == 200 and len(scored.json()["results"]) == 1
        assert client.get("/healthz").json() == {"status": "ok"}


def test_the_fast_tier_answers_while_the_lm_loads(launch):
    """The LM never finishes loading here (the gate stays shut): /readyz is 503 throughout, the
    LM tier 503 with Retry-After, and the fast tier (its model loaded apart) answers."""
    url, _, key = launch()
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": key}) as client:
        deadline = time.monotonic() + 120
        while (ready := client.get("/readyz")).json()["tiers"]["fast"] != "loaded":
            assert ready.json()["tiers"]["fast"] == "loading" and time.monotonic() < deadline
            time.sleep(0.2)
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert ready.json()["models"] == "loading" and ready.json()["tiers"] == {"lm": "loading", "fast": "loaded"}
        texts = ["Certainly! Here is a concise summary of the article's main points.", "lol the lake was freezing"]
        scored = client.post("/v1/score", json={"texts": texts, "tier": "fast"})
        assert scored.status_code == 200, scored.text
        assert scored.json()["tier"] == "fast" and scored.json()["model"] == "ngram-classifier-v1"
        assert [0 <= r["llm_probability"] <= 1 for r in scored.json()["results"]] == [True, True]
        lm = client.post("/v1/score", json={"texts": texts})
        assert lm.status_code == 503 and lm.headers["Retry-After"] == "5"
        assert client.get("/readyz").json()["models"] == "loading"


def test_a_failed_load_fails_liveness(launch):
    url, gate, _ = launch()
    gate.write_text("fail")
    with httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while (health := client.get("/healthz")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health.status_code == 503 and "unreadable" in health.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["models"] == "failed" and "Retry-After" not in ready.headers
