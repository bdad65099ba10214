"""The gate and the audit on a real dask.distributed LocalCluster (two worker processes on
loopback) give the same results as in one process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from auditor.auditing import AuditColumns, AuditOptions, run_audit
from auditor.config import Settings
from auditor.execution import DaskExecutor
from auditor.gate import GatePolicy, run_gate
from auditor.reader import write_table


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def shards(tmp_path_factory, mini_corpus):
    root = tmp_path_factory.mktemp("shards")
    test = mini_corpus[(mini_corpus.split == "test") & mini_corpus.text.str.len().between(80, 3000)]
    human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
    rng = np.random.default_rng(0)
    paths = []
    for i, share in enumerate([0.0, 0.05, 0.3]):
        k = int(share * 2000)
        docs = [human[j] for j in rng.choice(len(human), 2000 - k)] + [machine[j] for j in rng.choice(len(machine), k)]
        rng.shuffle(docs)
        path = root / f"shard-{i}.jsonl"
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        paths.append(str(path))
    return paths


def test_gate_on_dask_equals_single_process(client, shards):
    policy = GatePolicy(max_synthetic=0.05, max_scored=1500)
    local = run_gate(shards, policy)
    distributed = run_gate(shards, policy, executor=DaskExecutor(client))
    assert distributed.execution["mode"] == "dask.distributed" and distributed.execution["workers"] == 2
    ran_on = client.run(lambda: __import__("auditor.scoring").scoring.cached_scorer.cache_info().currsize)
    assert sum(ran_on.values()) >= 1  # the scorer was loaded inside the worker processes
    strip = lambda m: [s.model_dump(exclude={"seconds"}) for s in m.shards]  # noqa: E731
    assert strip(distributed) == strip(local)
    assert [s.decision for s in local.shards][0] == "pass" and local.shards[2].decision == "reject"


@pytest.mark.lm
def test_audit_on_dask_equals_single_process(client, tmp_path, mini_corpus, scorer):
    pool = mini_corpus[
        (mini_corpus.dataset == "l2r_rewrites")
        & (mini_corpus.split == "test")
        & mini_corpus.text.str.len().between(200, 600)
    ]
    texts = pool.sample(30, random_state=3).text.tolist()
    rows = [{"vendor": "v1" if i % 3 else "v2", "worker": f"w{i % 4}", "answer": t} for i, t in enumerate(texts)]
    rows += [{"vendor": "v1", "worker": "w9", "answer": texts[0]}]  # a repeat across chunks
    delivery = write_table(pd.DataFrame(rows), tmp_path / "delivery.csv")
    columns = AuditColumns(text="answer", vendor="vendor", worker="worker")
    settings = Settings(chunk_rows=8)
    options = AuditOptions(columns=columns, resume=False)
    local = run_audit([delivery], options, tmp_path / "local", scorer, settings, embeddings=False)
    remote = run_audit(
        [delivery], options, tmp_path / "dask", scorer, settings, embeddings=False, executor=DaskExecutor(client)
    )
    assert "dask.distributed" in remote.configuration["scoring"]
    local_items = pd.read_parquet(tmp_path / "local" / "items.parquet")
    remote_items = pd.read_parquet(tmp_path / "dask" / "items.parquet")
    assert local_items["item_id"].tolist() == remote_items["item_id"].tolist()
    assert local_items["flagged"].tolist() == remote_items["flagged"].tolist()
    np.testing.assert_allclose(local_items["llm_probability"], remote_items["llm_probability"], rtol=0, atol=1e-6)
    for mine, theirs in zip(local.vendors, remote.vendors, strict=True):
        assert mine.prevalence == theirs.prevalence and mine.n_flagged == theirs.n_flagged
