"""Load on the REST service: a real server on loopback, real texts, the embedded model warm.

    python benchmarks/api_load.py [--requests 96] [--audit-rows 1000] [--out benchmarks/results/api_load.md]

* ``POST /v1/score`` with 1 text and with 32 texts per request, at concurrency 1, 8 and 32
  (that many clients, each sending its next request when the last one answered): p50/p95
  latency, texts/s and errors. Every text is sent once only, so no answer comes from
  the scorer's memo of texts it has seen.
* ``POST /v1/audits`` of ``--audit-rows`` rows (JSON rows), timed from submission to
  ``succeeded`` with the one worker ``auditor serve`` starts: rows per minute.

The server runs as ``auditor serve`` in its own process with a fresh SQLite database;
texts are the test split of ../shared/datasets (answers, summaries, essays as they come).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import load_corpus  # noqa: E402

SCENARIOS = [(1, 1), (1, 8), (1, 32), (32, 1), (32, 8), (32, 32)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "auditor.cli", "serve", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become ready")


async def load(url: str, key: str, texts: list[str], per_request: int, concurrency: int, n_requests: int) -> dict:
    """``concurrency`` clients send ``n_requests`` requests of ``per_request`` distinct texts."""
    batches = [texts[i * per_request : (i + 1) * per_request] for i in range(n_requests)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            batch = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post("/v1/score", json={"texts": batch})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200 or len(response.json()["results"]) != len(batch)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "texts/request": per_request,
        "concurrency": concurrency,
        "requests": len(batches),
        "p50 ms": float(np.percentile(ms, 50)),
        "p95 ms": float(np.percentile(ms, 95)),
        "texts/s": len(batches) * per_request / wall,
        "errors": errors,
    }


def audit_rate(url: str, key: str, texts: list[str]) -> dict:
    rows = [{"text": t, "vendor": f"vendor-{i % 3}", "worker": f"w{i % 40}"} for i, t in enumerate(texts)]
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300) as client:
        started = time.perf_counter()
        response = client.post(
            "/v1/audits", json={"rows": rows, "text_col": "text", "vendor_col": "vendor", "worker_col": "worker"}
        )
        response.raise_for_status()
        location = response.headers["location"]
        while (status := client.get(location).json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.5)
        wall = time.perf_counter() - started
        report_ok = client.get(f"{location}/report").status_code == 200
    return {
        "rows": len(rows),
        "status": status["status"],
        "seconds": wall,
        "rows/min": len(rows) / wall * 60,
        "report": report_ok,
    }


def markdown(results: list[dict], audit: dict, lengths: np.ndarray) -> str:
    lines = [
        "| texts per request | concurrency | requests | p50 latency (ms) | p95 latency (ms) | texts/s | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['texts/request']} | {r['concurrency']} | {r['requests']} | {r['p50 ms']:.0f} | {r['p95 ms']:.0f} | "
            f"{r['texts/s']:.1f} | {r['errors']} |"
        )
    lines += [
        "",
        f"Audit of {audit['rows']} rows submitted as JSON, one worker: {audit['status']} in {audit['seconds']:.0f} s "
        f"= **{audit['rows/min']:.0f} rows/min** (report served: {audit['report']}).",
        "",
        f"Texts: median {np.median(lengths):.0f} characters (p90 {np.percentile(lengths, 90):.0f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=96, help="requests per one-text scenario")
    parser.add_argument("--batched-requests", type=int, default=8, help="requests per 32-text scenario")
    parser.add_argument("--audit-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "api_load.md")
    args = parser.parse_args()

    corpus = load_corpus()
    pool = corpus[(corpus["split"] == "test") & corpus["text"].str.strip().str.len().ge(20)]
    pool = pool.drop_duplicates("text").sample(frac=1.0, random_state=args.seed)["text"].tolist()
    needed = 3 * args.requests + 3 * 32 * args.batched_requests + 16 + args.audit_rows
    if len(pool) < needed:
        raise SystemExit(f"only {len(pool)} distinct test texts; {needed} needed")

    tmp = Path(tempfile.mkdtemp(prefix="auditor-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_") or k == "AUDITOR_CACHE_DIR"}
    env.update(
        {
            "AUDITOR_DATABASE_URL": f"sqlite:///{tmp / 'auditor.db'}",
            "AUDITOR_REFERENCE_INDEX": str(tmp / "reference.sqlite"),
        }
    )
    key_command = [sys.executable, "-m", "auditor.cli", "keys", "create", "--tenant", "load"]
    key = (
        subprocess.run(key_command, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(env, port, tmp / "server.log")
    try:
        used = 0

        def take(n: int) -> list[str]:
            nonlocal used
            used += n
            return pool[used - n : used]

        asyncio.run(load(url, key, take(16), 1, 1, 16))  # warm-up: compiled kernels, first allocations
        results = []
        for per_request, concurrency in SCENARIOS:
            n = args.requests if per_request == 1 else args.batched_requests
            results.append(asyncio.run(load(url, key, take(n * per_request), per_request, concurrency, n)))
            print(results[-1], flush=True)
        audit = audit_rate(url, key, take(args.audit_rows))
        print(audit, flush=True)
        lengths = np.array([len(t) for t in pool[:used]])
    finally:
        server.terminate()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
    text = markdown(results, audit, lengths)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
