"""MinHash signatures and within-batch near-duplicate clustering, on real short texts."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest

from detectors.duplicates import NearDuplicateDetector
from detectors.minhash import MinHasher, cluster_near_duplicates, jaccard
from detectors.minhash import lsh_params as _lsh_params

EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
CJK = re.compile("[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")

EDGE_CASES = [
    "",
    "ok",  # shorter than every n below
    "?!... --- !!!",  # nothing left after alnum normalisation
    "😀😂🙏",  # emoji only: empty after alnum, three characters raw
    "東京",
    "日本語のテキストです。これはテストです。",
    "  double  spaces, and a trailing space ",
    "line one\nline two\ttabbed",
    "ﬁne Straße İstanbul ÇA VA",  # NFKC and case folding change these
]

SIGNATURE_CONFIGS = [
    ("char", 5, "alnum"),
    ("char", 3, "lower"),
    ("char", 7, "raw"),
    ("word", 1, "alnum"),
    ("word", 2, "lower"),
    ("word", 3, "raw"),
]


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def one_per_group(rows: list[dict], group) -> list[dict]:
    """The first row of each pairing group: no two of the rows are rewrites of one text."""
    seen: set = set()
    return [row for row in rows if not (group(row) in seen or seen.add(group(row)))]


@pytest.fixture(scope="module")
def worker_rows(mini_datasets) -> list[dict]:
    """Crowd-written social-media texts and the GPT-4 / Llama-2 texts written from them."""
    return read_jsonl(mini_datasets / "worker_vs_gpt" / "worker_vs_gpt.jsonl")


@pytest.fixture(scope="module")
def worker_texts(worker_rows) -> list[str]:
    return [row["text"] for row in worker_rows]


@pytest.fixture(scope="module")
def rewrite_rows(mini_datasets) -> list[dict]:
    """Web texts of 20 domains and their rewrites by GPT-3.5, GPT-4o and Llama-3."""
    return read_jsonl(mini_datasets / "l2r_rewrites" / "l2r_rewrites.jsonl")


@pytest.fixture(scope="module")
def real_texts(mini_datasets, worker_texts, rewrite_rows) -> list[str]:
    """About 300 real texts: social-media posts, web texts, posts with emoji, and CJK texts."""
    rng = random.Random(0)
    rewrites = [row["text"] for row in rewrite_rows]
    with_emoji = [t for t in worker_texts if EMOJI.search(t)]
    every_text = [row["text"] for path in sorted(mini_datasets.glob("*/*.jsonl")) for row in read_jsonl(path)]
    with_cjk = [t for t in every_text if CJK.search(t)]
    assert len(with_emoji) >= 30 and len(with_cjk) >= 5
    return rng.sample(worker_texts, 120) + rng.sample(rewrites, 120) + rng.sample(with_emoji, 30) + with_cjk[:30]


@pytest.fixture(scope="module")
def short_answers(rewrite_rows) -> list[str]:
    """Real 1-3 sentence texts (80-300 characters), one per pairing group, in a fixed random order."""
    rows = one_per_group(rewrite_rows, lambda row: (row["domain"], row["pair_idx"]))
    answers = [row["text"] for row in rows if 80 <= len(row["text"]) <= 300 and row["text"].count(". ") <= 2]
    random.Random(1).shuffle(answers)
    return answers


@pytest.fixture(scope="module")
def known_answer(short_answers) -> str:
    return short_answers[0]


@pytest.fixture(scope="module")
def unrelated_texts(short_answers, worker_rows) -> list[str]:
    posts = [row["text"] for row in one_per_group(worker_rows, lambda row: row["seed_id"])]
    return short_answers[1:21] + random.Random(2).sample(posts, 20)


def change_one_word(text: str) -> str:
    words = text.split(" ")
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    words[longest] = "something"
    return " ".join(words)


def worker_pastes(answer: str) -> list[str]:
    """The same answer as several workers would hand it in, each with a light edit."""
    return [
        answer,
        answer.upper(),
        "  ".join(answer.split(" ")) + "\n",
        re.sub(r"[.,;:!?]", "", answer).replace(" ", " , ", 2),
        change_one_word(answer),
        "Answer: " + answer,
    ]


@pytest.mark.parametrize("shingle,n,normalisation", SIGNATURE_CONFIGS)
def test_vectorised_signatures_equal_datasketch(real_texts, shingle, n, normalisation):
    hasher = MinHasher(shingle=shingle, n=n, normalisation=normalisation)
    texts = real_texts + EDGE_CASES
    batch = hasher.signatures(texts)
    for i, text in enumerate(texts):
        assert np.array_equal(batch.hashvalues[i], hasher.datasketch_minhash(text).hashvalues), text
    # Many small chunks must give the same signatures as the default chunking.
    assert np.array_equal(hasher.signatures(texts, chunk_shingles=97).hashvalues, batch.hashvalues)


@pytest.mark.parametrize("shingle,n,normalisation", SIGNATURE_CONFIGS)
def test_shingle_hashes_are_one_per_distinct_shingle(real_texts, shingle, n, normalisation):
    hasher = MinHasher(shingle=shingle, n=n, normalisation=normalisation)
    texts = real_texts + EDGE_CASES
    for text, hashes in zip(texts, hasher.shingle_hashes(texts), strict=True):
        assert len(hashes) == len(hasher.shingle_strings(text)), text
        assert np.all(np.diff(hashes.astype(np.int64)) > 0), "shingle hashes must be sorted and unique"


def test_text_shorter_than_n_is_one_shingle_and_empty_text_has_the_empty_signature():
    hasher = MinHasher(n=5)
    batch = hasher.signatures(["", "?!... --- !!!", "😀😂🙏", "ok", "東京"])
    assert [len(s) for s in batch.shingles] == [0, 0, 0, 1, 1]
    assert np.all(batch.hashvalues[:3] == np.iinfo(np.uint32).max)
    emoji_raw = MinHasher(n=5, normalisation="raw").signatures(["😀😂🙏"])
    assert len(emoji_raw.shingles[0]) == 1


@pytest.mark.parametrize("shingle,n,normalisation", SIGNATURE_CONFIGS)
def test_signature_of_a_text_does_not_depend_on_its_batch(real_texts, shingle, n, normalisation):
    hasher = MinHasher(shingle=shingle, n=n, normalisation=normalisation)
    texts = real_texts[::29] + EDGE_CASES
    batch = hasher.signatures(texts)
    for i, text in enumerate(texts):
        alone = hasher.signatures([text])  # a batch of one short text is shorter than n
        assert np.array_equal(alone.hashvalues[0], batch.hashvalues[i]), text
        assert np.array_equal(alone.shingles[0], batch.shingles[i]), text


def test_batch_of_one_short_answer_is_scored():
    frame = NearDuplicateDetector().detect(["Yes"])
    assert frame.loc[0, "dup_cluster"] == -1
    assert frame.loc[0, "score"] == 0


def test_pasted_answer_with_light_edits_forms_one_cluster(known_answer, unrelated_texts):
    pastes = worker_pastes(known_answer)
    rng = random.Random(3)
    texts = unrelated_texts + pastes
    rng.shuffle(texts)
    paste_rows = [i for i, t in enumerate(texts) if t in pastes]

    frame = NearDuplicateDetector().detect(texts)

    clusters = frame["dup_cluster"].to_numpy()
    assert clusters[paste_rows[0]] >= 0
    assert set(clusters[paste_rows]) == {clusters[paste_rows[0]]}
    assert (frame.loc[paste_rows, "dup_cluster_size"] == len(pastes)).all()
    others = frame.drop(index=paste_rows)
    assert (others["dup_cluster"] == -1).all(), texts
    assert (others["dup_nearest"] == -1).all()
    assert (others["dup_jaccard"] == 0).all()


def test_cluster_members_are_verified_above_threshold(known_answer, unrelated_texts):
    hasher = MinHasher()
    pastes = worker_pastes(known_answer)
    signatures = hasher.signatures(pastes + unrelated_texts)
    clusters = cluster_near_duplicates(signatures, 0.5, *_lsh_params(0.5, hasher.num_perm))
    for i in range(len(pastes)):
        nearest = clusters.nearest[i]
        assert nearest in range(len(pastes)) and nearest != i
        assert clusters.nearest_jaccard[i] == pytest.approx(
            jaccard(signatures.shingles[i], signatures.shingles[nearest])
        )
        assert clusters.nearest_jaccard[i] >= 0.5
    assert (clusters.cluster[len(pastes) :] == -1).all()


def test_dup_nearest_indexes_input_rows_when_invalid_rows_are_interleaved(known_answer, unrelated_texts):
    edited = change_one_word(known_answer)
    texts = [
        None,
        known_answer,
        "",
        unrelated_texts[0],
        float("nan"),
        known_answer,
        "   ",
        edited,
        "ok",
        unrelated_texts[1],
    ]
    invalid_rows = [0, 2, 4, 6, 8]

    frame = NearDuplicateDetector().detect(texts)

    assert frame.loc[1, "dup_nearest"] == 5
    assert frame.loc[5, "dup_nearest"] == 1
    assert frame.loc[7, "dup_nearest"] in (1, 5)
    hasher = MinHasher()
    answer_vs_edited = jaccard(*hasher.signatures([known_answer, edited]).shingles)
    assert frame.loc[7, "dup_jaccard"] == pytest.approx(answer_vs_edited)
    assert 0.5 <= answer_vs_edited < 1
    assert frame.loc[[3, 9], "dup_nearest"].tolist() == [-1, -1]
    assert frame.loc[invalid_rows, "skip_reason"].notna().all()
    assert frame.loc[invalid_rows, "dup_nearest"].isna().all()
    assert frame.loc[invalid_rows, "dup_jaccard"].isna().all()


def test_batch_of_only_invalid_texts_scores_nothing():
    frame = NearDuplicateDetector().detect([None, "", "ok"])
    assert len(frame) == 3
    assert frame["skip_reason"].notna().all()
    assert pd.isna(frame["dup_nearest"]).all()


def test_groups_are_detected_as_if_each_were_alone(known_answer, unrelated_texts):
    """Independent requests scored together: copies across groups are not near-duplicates,
    and each group's clusters and nearest rows are what detecting it alone gives."""
    pastes = worker_pastes(known_answer)
    requests = [
        [unrelated_texts[0], None, pastes[0], pastes[1], ""],
        [pastes[2]],  # a copy of the first group's answer, alone in its own request
        [unrelated_texts[1], pastes[3], unrelated_texts[2], pastes[4], pastes[5]],
        [None],
        [unrelated_texts[3], unrelated_texts[4]],
    ]
    detector = NearDuplicateDetector()
    groups = np.repeat(np.arange(len(requests)), [len(r) for r in requests])

    together = detector.detect([t for r in requests for t in r], groups)

    alone = pd.concat([detector.detect(r) for r in requests], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone, check_dtype=False)  # a request of only None has float columns
    assert together["dup_cluster"].tolist()[:5] == [-1, pd.NA, 0, 0, pd.NA]
    assert together.loc[5, "dup_cluster_size"] == 1 and together.loc[5, "dup_nearest"] == -1
    assert together["dup_cluster"].tolist()[6:11] == [-1, 0, -1, 0, 0]
    assert together["dup_nearest"].tolist()[2:4] == [3, 2]
