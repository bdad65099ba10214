"""Persistent reference index: SQLite file and Redis, shared between processes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from detectors.minhash import MinHasher, jaccard
from detectors.reference import (
    IndexMismatch,
    LocalReferenceIndex,
    RedisReferenceIndex,
    ReferenceEntry,
    open_reference_index,
)

THRESHOLD = 0.5
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: open the index at argv[1] with default settings, add the
# entries in the JSON file argv[2], print how many were new.
ADD_IN_NEW_PROCESS = """
import json, sys
from detectors.minhash import MinHasher
from detectors.reference import ReferenceEntry, open_reference_index
index = open_reference_index(sys.argv[1], MinHasher(), float(sys.argv[3]))
entries = [ReferenceEntry(**e) for e in json.loads(open(sys.argv[2], encoding="utf-8").read())]
print(index.add(entries))
"""


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def reference_entries(mini_datasets) -> list[ReferenceEntry]:
    """Forty real LLM-written social-media texts of 1-3 sentences (GPT-4 and Llama-2, one per
    crowd-written seed), as a reference set of known LLM outputs."""
    rows = read_jsonl(mini_datasets / "worker_vs_gpt" / "worker_vs_gpt.jsonl")
    picked, seeds = [], set()
    for line, row in enumerate(rows):
        if row["label"] == "machine" and 100 <= len(row["text"]) <= 350 and row["seed_id"] not in seeds:
            seeds.add(row["seed_id"])
            picked.append((line, row))
    picked = random.Random(0).sample(picked, 40)
    return [ReferenceEntry(f"wvg:{line}", row["text"], "machine", "worker_vs_gpt") for line, row in picked]


@pytest.fixture(scope="module")
def unrelated_texts(mini_datasets) -> list[str]:
    """Web texts and their LLM rewrites: another set, about other things."""
    rows = read_jsonl(mini_datasets / "l2r_rewrites" / "l2r_rewrites.jsonl")
    return [row["text"] for row in random.Random(1).sample(rows, 30)]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def location(request, tmp_path):
    """Where a fresh, empty index lives: a SQLite file, or a uniquely named Redis index."""
    if request.param == "sqlite":
        yield str(tmp_path / "reference.sqlite")
        return
    redis_url = request.getfixturevalue("redis_url")
    location = f"{redis_url}#test-{uuid.uuid4().hex}"
    yield location
    open_reference_index(location, MinHasher(), THRESHOLD).drop()


def add_in_new_process(location: str, entries: list[ReferenceEntry], tmp_path: Path) -> int:
    entries_file = tmp_path / f"entries-{uuid.uuid4().hex}.json"
    entries_file.write_text(json.dumps([asdict(e) for e in entries]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", ADD_IN_NEW_PROCESS, location, str(entries_file), str(THRESHOLD)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def lightly_edited(text: str) -> str:
    """What a worker pasting this answer might hand in."""
    return "Answer: " + text.lower().replace(",", "")


def with_words_replaced(text: str, fraction: float) -> str:
    words = text.split(" ")
    step = max(1, round(1 / fraction))
    return " ".join("zzz" if i % step == 0 else w for i, w in enumerate(words))


def matched_keys(index, texts: list[str]) -> list[str | None]:
    return [m.key if m else None for m in index.query(index.hasher.signatures(texts))]


def test_entries_added_by_another_process_are_found_after_reopening(
    location, reference_entries, unrelated_texts, tmp_path
):
    assert add_in_new_process(location, reference_entries, tmp_path) == len(reference_entries)

    index = open_reference_index(location, MinHasher(), THRESHOLD)

    assert len(index) == len(reference_entries)
    queries = [lightly_edited(e.text) for e in reference_entries]
    assert matched_keys(index, queries) == [e.key for e in reference_entries]
    assert matched_keys(index, unrelated_texts) == [None] * len(unrelated_texts)
    assert index.get(reference_entries[0].key) == reference_entries[0]


def test_entries_added_by_another_process_after_open_are_found(location, reference_entries, tmp_path):
    first, later = reference_entries[:20], reference_entries[20:]
    index = open_reference_index(location, MinHasher(), THRESHOLD)
    index.add(first)
    assert matched_keys(index, [later[0].text]) == [None]

    add_in_new_process(location, later, tmp_path)

    assert matched_keys(index, [lightly_edited(e.text) for e in later]) == [e.key for e in later]
    assert len(index) == len(reference_entries)


@pytest.mark.parametrize(
    "changed",
    [
        {"n": 4},
        {"shingle": "word", "n": 2},
        {"normalisation": "lower"},
        {"num_perm": 64},
        {"seed": 2},
        {"threshold": 0.7},
    ],
    ids=lambda changed: ",".join(f"{k}={v}" for k, v in changed.items()),
)
def test_refuses_to_open_with_other_minhash_settings(location, reference_entries, changed):
    open_reference_index(location, MinHasher(), THRESHOLD).add(reference_entries[:3])
    hasher_settings = {k: v for k, v in changed.items() if k != "threshold"}

    with pytest.raises(IndexMismatch):
        open_reference_index(location, MinHasher(**hasher_settings), changed.get("threshold", THRESHOLD))

    assert len(open_reference_index(location, MinHasher(), THRESHOLD)) == 3


def test_add_is_idempotent_on_keys(location, reference_entries):
    index = open_reference_index(location, MinHasher(), THRESHOLD)
    entries = reference_entries[:10]

    assert index.add(entries + entries[:3]) == 10
    assert index.add(entries) == 0
    rewritten = ReferenceEntry(entries[0].key, "an entirely different text under a known key", "human")
    assert index.add([rewritten, reference_entries[10]]) == 1

    assert len(index) == 11
    assert index.get(entries[0].key) == entries[0]
    matches = index.query(index.hasher.signatures([entries[0].text]))
    assert matches[0].key == entries[0].key and matches[0].jaccard == 1.0


def test_verified_matches_reach_the_threshold(location, reference_entries, unrelated_texts):
    index = open_reference_index(location, MinHasher(), THRESHOLD)
    index.add(reference_entries)
    # Replacing ever more words walks the similarity down through the threshold.
    queries = [with_words_replaced(e.text, fraction) for e in reference_entries for fraction in (0.1, 0.3, 0.5)]
    queries += unrelated_texts
    query_signatures = index.hasher.signatures(queries)
    reference_shingles = index.hasher.signatures([e.text for e in reference_entries]).shingles
    exact = np.array([[jaccard(q, r) for r in reference_shingles] for q in query_signatures.shingles])
    assert (exact.max(axis=1) < THRESHOLD).sum() >= 30, "the queries should include many below the threshold"

    matches = index.query(query_signatures)

    keys = [e.key for e in reference_entries]
    for i, match in enumerate(matches):
        best = exact[i].max()
        if match is None:
            # LSH may miss a pair near the threshold, never a clear copy.
            assert best < 0.8, queries[i]
            continue
        assert match.jaccard >= THRESHOLD
        assert match.jaccard == pytest.approx(exact[i, keys.index(match.key)], abs=1e-4)
        assert match.jaccard == pytest.approx(best, abs=1e-4)


@pytest.mark.redis
def test_index_type_follows_location(tmp_path, redis_url):
    assert isinstance(open_reference_index(tmp_path / "r.sqlite"), LocalReferenceIndex)
    redis_index = open_reference_index(f"{redis_url}#test-{uuid.uuid4().hex}")
    assert isinstance(redis_index, RedisReferenceIndex)
    redis_index.drop()


@pytest.mark.redis
def test_redis_drop_removes_the_index_and_nothing_else(redis_url, reference_entries):
    import redis

    name = f"test-{uuid.uuid4().hex}"
    index = RedisReferenceIndex(redis_url, name, MinHasher(), THRESHOLD)
    sibling = RedisReferenceIndex(redis_url, f"{name}:2", MinHasher(), THRESHOLD)
    index.add(reference_entries[:5])
    sibling.add(reference_entries[5:8])
    client = redis.Redis.from_url(redis_url)
    try:
        assert any(client.scan_iter(match=f"auditor:refindex:{name}:lsh*"))

        index.drop()

        leftover = [k for k in client.scan_iter(match=f"auditor:refindex:{name}:*") if b":2:" not in k]
        assert leftover == []
        assert len(index) == 0
        assert len(sibling) == 3
        assert matched_keys(sibling, [reference_entries[5].text]) == [reference_entries[5].key]
        # With its settings gone, the name can be reused with other settings.
        RedisReferenceIndex(redis_url, name, MinHasher(n=3), THRESHOLD).drop()
        sibling.drop()
        assert not any(client.scan_iter(match=f"auditor:refindex:{name}*"))
    finally:
        sibling.drop()
        client.close()
