"""`auditor gate` on shards built from held-out real texts: decisions, leakage, bad shards, quarantine."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.gate import GateManifest, GatePolicy, judge_shard, load_scorer
from auditor.gate.judge import _Reservoir

runner = CliRunner()


@pytest.fixture(scope="module")
def pools(mini_corpus):
    """Held-out (test split) human and LLM-written texts, never seen by the fast model in training."""
    test = mini_corpus[(mini_corpus.split == "test") & mini_corpus.text.str.len().between(80, 3000)]
    return test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()


def write_shard(path, texts, field="text"):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": i, field: text}) + "\n")
    return path


def mixed(pools, n, share, seed):
    human, machine = pools
    rng = np.random.default_rng(seed)
    k = int(round(share * n))
    docs = [human[i] for i in rng.choice(len(human), n - k)] + [machine[i] for i in rng.choice(len(machine), k)]
    rng.shuffle(docs)
    return docs


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, mini_corpus):
    """Evaluation items: long web texts and rewrites (calibration split, so not in the shards by chance), as JSONL."""
    items = mini_corpus[
        (mini_corpus.dataset == "l2r_rewrites")
        & (mini_corpus.split == "calibration")
        & (mini_corpus.text.str.split().str.len() > 40)
    ]
    items = items.sample(40, random_state=1)
    path = tmp_path_factory.mktemp("bench") / "bench.jsonl"
    with path.open("w") as out:
        for i, text in enumerate(items.text):
            out.write(json.dumps({"id": f"qa-{i}", "text": text}) + "\n")
    return path, items.text.tolist()


def manifest_of(path) -> GateManifest:
    return GateManifest.model_validate_json(path.read_text())


def test_clean_shard_passes_and_contaminated_shard_is_rejected_after_a_sample(tmp_path, pools):
    clean = write_shard(tmp_path / "clean.jsonl", mixed(pools, 4000, 0.0, 1))
    dirty = write_shard(tmp_path / "dirty.jsonl.gz", mixed(pools, 4000, 0.30, 2))
    out = tmp_path / "manifest.json"
    result = runner.invoke(app, ["gate", str(clean), str(dirty), "--max-synthetic", "0.05", "--manifest", str(out)])
    assert result.exit_code == 1, result.output
    raw = json.loads(out.read_text())
    by_shard = {s["shard"]: s for s in raw["shards"]}
    ok, bad = by_shard[str(clean)], by_shard[str(dirty)]
    assert ok["decision"] == "pass" and bad["decision"] == "reject"
    for entry in (ok, bad):
        assert set(entry["synthetic"]) == {"estimate", "ci_low", "ci_high"}
        assert entry["documents_read"] == 4000
        assert entry["synthetic"]["ci_low"] <= entry["synthetic"]["estimate"] <= entry["synthetic"]["ci_high"]
    assert ok["synthetic"]["ci_high"] <= 0.05 and bad["synthetic"]["ci_low"] > 0.05
    # The sequential test stops early on clear cases instead of scoring everything.
    assert bad["documents_scored"] < 1000 and ok["documents_scored"] < 4000
    assert bad["rejected_for"] == ["synthetic_share"] and any("above --max-synthetic" in r for r in bad["reasons"])
    assert ok["rejected_for"] == [] and "within --max-synthetic" in ok["reasons"][0]
    assert bad["examples"] and all(e["llm_probability"] > 0.5 for e in bad["examples"])


def test_all_clean_shards_exit_zero(tmp_path, pools):
    clean = write_shard(tmp_path / "clean.jsonl", mixed(pools, 2000, 0.0, 3))
    result = runner.invoke(app, ["gate", str(clean), "--max-synthetic", "0.2", "--manifest", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output


def test_same_seed_same_sample_and_decision(tmp_path, pools):
    shard = str(write_shard(tmp_path / "s.jsonl", mixed(pools, 3000, 0.05, 4)))
    scorer = load_scorer("fast")
    policy = GatePolicy(max_synthetic=0.05, max_scored=1500)
    first, second = judge_shard(shard, policy, scorer), judge_shard(shard, policy, scorer)
    assert first.model_dump(exclude={"seconds"}) == second.model_dump(exclude={"seconds"})
    other = judge_shard(shard, policy.model_copy(update={"seed": 7}), scorer)
    assert other.examples != first.examples or other.flagged != first.flagged


def test_reservoir_sample_is_uniform_over_the_stream():
    counts = np.zeros(1000)
    rng = np.random.default_rng(0)
    for _ in range(400):
        reservoir = _Reservoir(50, rng, 100)
        for start in range(0, 1000, 170):  # uneven batches
            ids = list(range(start, min(start + 170, 1000)))
            reservoir.offer([str(i) for i in ids], ids)
        assert len(set(reservoir.positions)) == 50
        counts[reservoir.positions] += 1
    # Each document is kept with probability 50/1000: early and late ones alike.
    assert abs(counts[:500].mean() - counts[500:].mean()) < 2.5
    assert 15 < counts.mean() < 25 and counts.std() < 8


def test_leakage_rejects_shard_with_embedded_items_and_quarantines_them(tmp_path, pools, benchmark):
    bench_path, items = benchmark
    docs = mixed(pools, 1500, 0.0, 5)
    planted = {100: 3, 900: 17}  # line (1-based) -> benchmark item
    for line, item in planted.items():
        docs[line - 1] = f"{docs[line - 1]}\n\nQ&A from the web:\n{items[item]}\n\nThat is all. {docs[line]}"
    shard = write_shard(tmp_path / "leaky.jsonl", docs)
    clean = write_shard(tmp_path / "clean.jsonl", mixed(pools, 1500, 0.0, 6))
    out, quarantine = tmp_path / "m.json", tmp_path / "quarantine"
    args = ["gate", str(shard), str(clean), "--max-synthetic", "0.5", "--manifest", str(out)]
    result = runner.invoke(app, [*args, "--benchmark-index", str(bench_path), "--quarantine", str(quarantine)])
    assert result.exit_code == 1, result.output
    shards = {s.shard: s for s in manifest_of(out).shards}
    leaky = shards[str(shard)]
    assert leaky.decision == "reject" and shards[str(clean)].decision == "pass"
    assert leaky.documents_with_benchmark_items == 2
    assert {h.item_id for h in leaky.benchmark_hits} == {"qa-3", "qa-17"}
    assert sorted(p for h in leaky.benchmark_hits for p in h.positions) == [100, 900]
    assert leaky.rejected_for == ["evaluation_items"] and any("evaluation items" in r for r in leaky.reasons)
    lines = [json.loads(x) for x in (quarantine / leaky.quarantine.split("/")[-1]).read_text().splitlines()]
    assert lines[0]["decision"] == "reject"
    quarantined = {e["position"]: e for e in lines[1:]}
    assert set(quarantined) == {100, 900}
    assert quarantined[900]["record"]["text"] == docs[899] and "qa-17" in quarantined[900]["reasons"][0]
    # Tolerating two hits lets the shard through.
    tolerant = runner.invoke(app, [*args, "--benchmark-index", str(bench_path), "--max-benchmark-hits", "2"])
    assert tolerant.exit_code == 0, tolerant.output


def test_bad_shards_are_reported_and_the_others_still_judged(tmp_path, pools):
    docs = mixed(pools, 600, 0.0, 7)
    good = write_shard(tmp_path / "good.jsonl", docs)
    bad_lines = tmp_path / "badlines.jsonl"
    lines = [json.dumps({"text": t}) for t in docs]
    lines[9] = '{"text": "unterminated'
    lines[19] = json.dumps({"body": "no text field"})
    bad_lines.write_text("\n".join(lines) + "\n")
    full = gzip.compress("\n".join(json.dumps({"text": t}) for t in docs).encode())
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(full[: len(full) // 2])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_column = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"content": docs[:50]}), no_column)
    missing = tmp_path / "missing.jsonl"
    out = tmp_path / "m.json"
    shards = [good, bad_lines, truncated, empty, no_column, missing]
    result = runner.invoke(app, ["gate", *map(str, shards), "--max-synthetic", "0.2", "--manifest", str(out)])
    assert result.exit_code == 3, result.output
    by_shard = {s.shard: s for s in manifest_of(out).shards}
    assert by_shard[str(good)].decision == "pass"
    lines_result = by_shard[str(bad_lines)]
    assert lines_result.decision == "pass" and lines_result.documents_read == 598
    assert any("line 10" in p for p in lines_result.problems) and any("line 20" in p for p in lines_result.problems)
    cut = by_shard[str(truncated)]
    assert cut.decision == "error" and 0 < cut.documents_read < 600 and "damaged" in cut.reasons[0]
    assert by_shard[str(empty)].decision == "error"
    assert by_shard[str(no_column)].decision == "error" and "content" in by_shard[str(no_column)].reasons[0]
    assert by_shard[str(missing)].decision == "error" and "missing.jsonl" in by_shard[str(missing)].reasons[0]
    unknown = by_shard[str(missing)].synthetic
    assert unknown.estimate is None and (unknown.ci_low, unknown.ci_high) == (0.0, 1.0)


def test_damage_after_many_bad_lines_is_still_an_error(tmp_path, pools):
    docs = mixed(pools, 400, 0.0, 10)
    lines = [json.dumps({"text": t}) if i % 10 else "not json" for i, t in enumerate(docs)]  # 40 bad lines
    full = gzip.compress("\n".join(lines).encode())
    shard = tmp_path / "late-damage.jsonl.gz"
    shard.write_bytes(full[: int(len(full) * 0.9)])
    result = judge_shard(str(shard), GatePolicy(max_synthetic=0.2), load_scorer("fast"))
    assert result.decision == "error" and "damaged" in result.reasons[0]
    assert result.problem_counts["bad_json"] >= 30 and result.problem_counts["truncated"] == 1
    assert len(result.problems) == 20  # examples are capped; counts are not


def test_text_field_and_parquet_shards(tmp_path, pools):
    docs = mixed(pools, 800, 0.0, 8)
    shard = tmp_path / "s.parquet"
    pq.write_table(pa.table({"content": docs}), shard, row_group_size=300)
    out = tmp_path / "m.json"
    args = ["gate", str(shard), "--max-synthetic", "0.2", "--manifest", str(out), "--text-field", "content"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert manifest_of(out).shards[0].documents_read == 800


def test_usage_errors_exit_two(tmp_path, pools):
    shard = write_shard(tmp_path / "s.jsonl", mixed(pools, 50, 0.0, 9))
    out = str(tmp_path / "m.json")
    assert runner.invoke(app, ["gate", str(shard), "--manifest", out]).exit_code == 2  # no --max-synthetic
    assert runner.invoke(app, ["gate", str(shard), "--max-synthetic", "1.5", "--manifest", out]).exit_code == 2
    missing_index = runner.invoke(
        app, ["gate", str(shard), "--max-synthetic", "0.1", "--manifest", out, "--benchmark-index", "nope.jsonl"]
    )
    assert missing_index.exit_code == 2 and "nope.jsonl" in missing_index.output
    assert (
        runner.invoke(app, ["gate", str(shard), "--max-synthetic", "0.1", "--manifest", out, "--scorer", "x"]).exit_code
        == 2
    )


@pytest.mark.corpus  # 3,000 texts and 1,000 references of one weakly detected kind
def test_references_of_the_corpus_kind_correct_a_weakly_detected_source(tmp_path, corpus):
    """HC3-Plus LLM text is caught far less often than the calibration's average, so a 12% shard
    reads as ~3% with the pooled rates and passes; references of that kind of text re-measure
    the rates and the same shard is rejected."""
    source = corpus[corpus.dataset == "hc3_plus_si"]
    test, calibration = source[source.split == "test"], source[source.split == "calibration"]
    human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
    docs = mixed((human, machine), 3000, 0.12, 11)
    shard = write_shard(tmp_path / "hc3plus.jsonl", docs)
    refs = {}
    for label, name in ((0, "human"), (1, "machine")):
        texts = calibration[calibration.label == label].text.sample(500, random_state=0)
        refs[name] = tmp_path / f"{name}.csv"
        texts.to_frame("answer").to_csv(refs[name], index=False)
    out = tmp_path / "m.json"
    args = ["gate", str(shard), "--max-synthetic", "0.05", "--manifest", str(out), "--max-scored", "3000"]
    pooled = runner.invoke(app, args)
    assert pooled.exit_code == 0, pooled.output
    assert manifest_of(out).shards[0].synthetic.estimate < 0.05
    refs_args = ["--human-reference", str(refs["human"]), "--machine-reference", str(refs["machine"])]
    measured = runner.invoke(app, [*args, *refs_args, "--reference-text-col", "answer"])
    assert measured.exit_code == 1, measured.output
    manifest = manifest_of(out)
    assert 0.06 < manifest.shards[0].synthetic.estimate < 0.25
    assert manifest.scorer["rates"]["tpr"]["n"] == 500 and "reference" in manifest.scorer["rates"]["source"]
