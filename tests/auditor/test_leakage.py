"""Evaluation-set leakage index on real texts of the shipped mini corpus: the Learning-to-Rewrite
texts (human and rewritten) and Fast-DetectGPT's human texts play the benchmark, the other public
sets (essays, abstracts, PubMed articles, web documents, social-media posts) the documents."""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import zstandard

from auditor.gate.leakage import LeakageIndex, LeakageIndexError, LeakageMatch, _tokenise

WORD = re.compile(r"[^\W_]+")
N = 13


def words(text: str) -> list[str]:
    """The normalisation the index promises, written the slow, obvious way."""
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def ngrams(text: str, n: int = N) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def containment(item: str, document: str) -> tuple[float, int]:
    mine = ngrams(item)
    shared = len(mine & ngrams(document))
    return shared / len(mine), shared


MINI_CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
UNRELATED_SETS = ("liang_detector_bias", "cheat_fusion", "binoculars_pubmed_falcon7b", "seqxgpt_doc_ood")


def read(name: str, root: Path = MINI_CORPUS) -> list[dict]:
    with (root / name / f"{name}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def items() -> dict[str, str]:
    """The benchmark: web texts of 20 domains and their LLM rewrites (some of fewer than 8 words),
    and human news, Wikipedia, story and PubMed texts."""
    rows = [(f"l2r_rewrites/{line}", r) for line, r in enumerate(read("l2r_rewrites"))]
    rows += [
        (f"fastdetect_glimpse/{line}", r) for line, r in enumerate(read("fastdetect_glimpse")) if r["label"] == "human"
    ]
    return {key: r["text"] for key, r in rows}


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, items) -> Path:
    path = tmp_path_factory.mktemp("benchmark") / "benchmark.jsonl"
    return write_jsonl(path, [{"id": k, "text": v} for k, v in items.items()])


@pytest.fixture(scope="module")
def index(benchmark) -> LeakageIndex:
    return LeakageIndex.build(benchmark)


@pytest.fixture(scope="module")
def unrelated() -> list[str]:
    """Real texts from sets that share no benchmark item: student essays and CS224N abstracts,
    human and GPT-written; IEEE abstracts; PubMed articles; web documents."""
    return [r["text"] for name in UNRELATED_SETS for r in read(name)]


@pytest.fixture(scope="module")
def solo(index, items) -> tuple[str, str]:
    """A long item with distinct 13-grams that matches only itself."""
    for item_id, text in items.items():
        w = words(text)
        distinct = 80 <= len(w) <= 200 and len(ngrams(text)) == len(w) - N + 1
        if distinct and [m.item_id for m in index.scan([text])[0]] == [item_id]:
            return item_id, text
    raise AssertionError("no suitable benchmark item")


def test_fast_tokeniser_agrees_with_the_regex_definition_on_real_non_ascii_text(unrelated, items):
    texts = [t for t in list(items.values()) + unrelated if not t.isascii()][:3000]
    texts += ["İstanbul ΣΟΦΙΑ Straße ﬁnal ＡＢＣ①２ x_y émoji😀ok 𝐁𝐨𝐥𝐝 a\u0301b — “quoted” 東京タワー", "", "..."]
    fast = _tokenise(texts).by_text(len(texts))
    slow = _tokenise([" ".join(words(t)) for t in texts]).by_text(len(texts))  # normalised, plain spaces
    assert [len(h) for h in fast] == [len(words(t)) for t in texts]
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert len(np.unique(np.concatenate(fast))) == len({w for t in texts for w in words(t)})


def test_item_pasted_into_the_middle_of_a_long_document_is_found(index, solo, unrelated):
    item_id, text = solo
    document = f"{unrelated[0]}\n\n{text}\n\n{unrelated[1]} {unrelated[2]}"
    batch = unrelated[10:510]
    batch[250] = document
    results = index.scan(batch)
    assert results[250] == [LeakageMatch(item_id, 1.0, len(ngrams(text)))]
    assert sum(map(len, results)) == 1


def test_recased_repunctuated_copy_is_still_found(index, solo, unrelated):
    item_id, text = solo
    variant = text.upper().replace(", ", " ;; ").replace(". ", "!\n\n  ").replace(" ", "  \t")
    variant = variant.replace("FI", "ﬁ")  # a ligature NFKC folds back
    variant = "".join(chr(ord(c) + 0xFEE0) if "A" <= c <= "Z" and i % 3 == 0 else c for i, c in enumerate(variant))
    assert variant != text and words(variant) == words(text)
    found = index.scan([unrelated[3] + " — " + variant + " “" + unrelated[4] + "”"])[0]
    assert [(m.item_id, m.containment) for m in found] == [(item_id, 1.0)]


def test_items_with_non_ascii_capitals_are_found_in_any_case(index, items, unrelated):
    def needs_casefold(text: str) -> bool:
        return any(ord(c) > 127 and c.casefold() != c for c in unicodedata.normalize("NFKC", text))

    variants = (str.upper, str.lower, str.casefold)
    # Texts whose words a change of case alters (Turkish dotless ı: "ı".upper() is "I") are not the same text
    # in another case: no index can promise to find them.
    same_words = {k: t for k, t in items.items() if all(words(v(t)) == words(t) for v in variants)}
    assert len(same_words) >= len(items) - 5
    chosen = {k: t for k, t in same_words.items() if needs_casefold(t) and len(words(t)) >= 30}
    assert len(chosen) >= 10
    for variant in variants:
        documents = [f"{unrelated[i]} {variant(text)}" for i, text in enumerate(chosen.values())]
        for item_id, found in zip(chosen, index.scan(documents), strict=True):
            assert (item_id, 1.0) in {(m.item_id, m.containment) for m in found}


def test_one_shared_13_gram_is_not_leakage_but_is_counted(index, solo, unrelated):
    item_id, text = solo
    document = f"{unrelated[5]} {' '.join(words(text)[30:43])} {unrelated[6]}"
    assert index.scan([document]) == [[]]
    found = {m.item_id: m for m in index.scan([document], min_containment=1e-6)[0]}
    assert found[item_id].matched_ngrams == 1
    assert found[item_id].containment == pytest.approx(1 / len(ngrams(text)))


def test_containment_is_the_exact_share_of_item_n_grams(index, solo, unrelated):
    item_id, text = solo
    w = text.split()
    documents = [
        " ".join(w[: int(len(w) * 0.75)]),  # the first three quarters
        unrelated[7] + " " + " ".join(w[int(len(w) * 0.6) :]),  # the last 40%
        " ".join(w[: len(w) // 3]) + " " + unrelated[8] + " " + " ".join(w[len(w) // 3 :]),  # cut in two
    ]
    for document, found in zip(documents, index.scan(documents, min_containment=0.01), strict=True):
        expected, shared = containment(text, document)
        assert {m.item_id: (m.containment, m.matched_ngrams) for m in found}[item_id] == (expected, shared)
    assert [[m.item_id for m in f] for f in index.scan(documents)] == [[item_id], [], [item_id]]


def test_real_partial_overlaps_have_exact_containment(index, items):
    """Fast-DetectGPT's LLM continuations begin with the opening of a human text the benchmark holds in full."""
    documents = [r["text"] for r in read("fastdetect_glimpse") if r["label"] == "machine"]
    results = index.scan(documents, min_containment=0.01)
    pairs = [(d, m) for d, found in enumerate(results) for m in found]
    assert len(pairs) >= 3
    for d, match in pairs:
        assert (match.containment, match.matched_ngrams) == containment(items[match.item_id], documents[d])
    assert not any(index.scan(documents))  # none of them is >= 0.5 of an item


@pytest.mark.parametrize("which", ["mini", pytest.param("full", marks=pytest.mark.corpus)])
def test_no_false_positives_on_thousands_of_unrelated_real_texts(index, unrelated, which, request):
    if which == "mini":
        documents, at_least = unrelated + [r["text"] for r in read("worker_vs_gpt")], 1_000
    else:  # the whole of the unrelated public sets, and 5,000 social-media texts
        root = request.getfixturevalue("shared_datasets")
        sets = ("ai_ai_bias_gpt4", *UNRELATED_SETS, "argugpt_machine", "tweepfake")
        documents = [r["text"] for name in sets for r in read(name, root)]
        documents += [r["text"] for r in read("worker_vs_gpt", root)[:5000]]
        at_least = 10_000
    results = index.scan(documents)
    assert len(results) == len(documents) > at_least
    assert [found for found in results if found] == []


def test_every_indexed_item_is_found_in_its_own_text(index, items):
    results = index.scan(list(items.values()))
    missed = [
        k
        for (k, text), found in zip(items.items(), results, strict=True)
        if (k, 1.0) not in {(m.item_id, m.containment) for m in found}
    ]
    too_short = [k for k, text in items.items() if len(words(text)) < 8]
    assert sorted(missed) == sorted(too_short)
    assert index.describe()["too_short"] == len(too_short) > 0
    assert index.describe()["indexed_items"] == len(items) - len(too_short)


def test_windows_spanning_two_adjacent_documents_do_not_count(index, solo, unrelated):
    item_id, text = solo
    w = text.split()
    half = len(w) // 2
    first = unrelated[9] + " " + " ".join(w[:half])  # ends with the item's first half
    second = " ".join(w[half:]) + " " + unrelated[10]  # the next document starts with the rest
    batch = [unrelated[11], first, second, unrelated[12]]
    results = index.scan(batch, min_containment=1e-6)
    for document, found in zip(batch[1:3], results[1:3], strict=True):
        assert {m.item_id: m.matched_ngrams for m in found}[item_id] == containment(text, document)[1]
    matched = sum(m.matched_ngrams for found in results for m in found if m.item_id == item_id)
    assert matched == len(ngrams(text)) - (N - 1)  # exactly the 12 straddling windows are missing
    assert index.scan(batch) == [[], [], [], []]


def test_empty_and_missing_texts_give_no_matches(index):
    assert index.scan([None, "", "   ", float("nan"), "—"]) == [[], [], [], [], []]
    assert index.scan([]) == []


def test_save_load_round_trip_gives_identical_scans(index, items, unrelated, tmp_path):
    documents = unrelated[:300] + list(items.values())[:300] + [None]
    path = index.save(tmp_path / "benchmark.npz")
    with np.load(path, allow_pickle=False) as data:
        hashes = data["ngram_hashes"]
        assert hashes.dtype == np.uint64 and np.all(hashes[1:] >= hashes[:-1])
        assert data["item_ids"].dtype.kind == "U"
        assert json.loads(str(data["metadata"]))["n"] == N
    loaded = LeakageIndex.load(path)
    assert loaded.describe() == index.describe()
    assert loaded.scan(documents) == index.scan(documents)
    assert loaded.scan(documents, min_containment=0.05) == index.scan(documents, min_containment=0.05)


def test_open_builds_a_jsonl_benchmark_once_then_loads_the_cache(tmp_path, items, unrelated, monkeypatch):
    benchmark = write_jsonl(tmp_path / "bench.jsonl", [{"id": k, "text": v} for k, v in list(items.items())[:300]])
    cache = tmp_path / "cache"
    builds = []
    original = LeakageIndex.build.__func__

    def counting_build(cls, *args, **kwargs):
        builds.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LeakageIndex, "build", classmethod(counting_build))
    documents = list(items.values())[:300] + unrelated[:100]
    first = LeakageIndex.open(benchmark, cache)
    cached = list(cache.glob("*.npz"))
    assert len(builds) == 1 and len(cached) == 1
    second = LeakageIndex.open(benchmark, cache)
    assert len(builds) == 1
    assert second.scan(documents) == first.scan(documents) and sum(map(bool, first.scan(documents))) >= 290
    assert LeakageIndex.open(cached[0]).describe() == first.describe()
    with benchmark.open("a") as handle:  # a changed benchmark file is rebuilt
        handle.write(json.dumps({"id": "extra", "text": unrelated[0]}) + "\n")
    assert LeakageIndex.open(benchmark, cache).describe()["items"] == 301
    assert len(builds) == 2 and len(list(cache.glob("*.npz"))) == 2
    with pytest.raises(LeakageIndexError, match=r"bench\.txt: cannot tell the index format"):
        LeakageIndex.open(tmp_path / "bench.txt", cache)


def test_bad_benchmark_lines_are_reported_and_the_rest_indexed(tmp_path, solo, unrelated):
    item_id, text = solo
    lines = [
        json.dumps({"id": "a", "text": text}).encode(),
        b'{"text": "broken',
        b"[1, 2]",
        b'{"id": "x", "score": 3}',
        b'{"id": "y", "text": "  "}',
        b"",
        b'{"id": "latin1", "text": "caf\xe9 au lait"}',
        b'{"id": "z", "text": null}',
        json.dumps({"item_id": "b", "text": unrelated[0]}).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = LeakageIndex.build(path)
    assert [p.line for p in index.problems] == [2, 3, 4, 5, 7, 8]
    reasons = [p.reason for p in index.problems]
    assert reasons[0].startswith("not valid JSON") and "JSON object" in reasons[1] and "not valid UTF-8" in reasons[4]
    assert "no string fields" in reasons[2] and "empty" in reasons[3] and "not a string" in reasons[5]
    assert str(index.problems[0]).startswith(f"{path}, line 2:")
    assert index.describe() | {"files": None} == {
        "n": N,
        "min_words": 8,
        "items": 2,
        "indexed_items": 2,
        "too_short": 0,
        "ngrams": len(ngrams(text) | ngrams(unrelated[0])),
        "files": None,
        "problems": 6,
    }
    assert [[m.item_id for m in f] for f in index.scan([text, unrelated[0]])] == [["a"], ["b"]]


def test_unreadable_benchmark_files_raise_naming_the_file(tmp_path):
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(LeakageIndexError, match=re.escape(str(missing))) as error:
        LeakageIndex.build(missing)
    assert isinstance(error.value, ValueError)
    with pytest.raises(LeakageIndexError, match="missing.jsonl"):
        LeakageIndex.open(missing, tmp_path / "cache")
    fake_gzip = tmp_path / "fake.jsonl.gz"
    fake_gzip.write_text('{"text": "not compressed at all"}\n')
    with pytest.raises(LeakageIndexError, match=r"cannot read benchmark file .*fake\.jsonl\.gz"):
        LeakageIndex.build(fake_gzip)
    not_an_index = tmp_path / "x.npz"
    not_an_index.write_bytes(b"junk")
    with pytest.raises(LeakageIndexError, match="x.npz"):
        LeakageIndex.load(not_an_index)


def test_truncated_compressed_file_keeps_what_it_read_and_says_where_it_stopped(tmp_path, items):
    records = [{"id": k, "text": v} for k, v in list(items.items())[:200]]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    index = LeakageIndex.build(path)
    assert 0 < len(index) < 200 and index.item_ids == [r["id"] for r in records[: len(index)]]
    assert [(p.kind, p.line, "damaged after this line" in p.reason) for p in index.problems] == [
        ("truncated", len(index), True)
    ]


def test_compressed_files_fields_and_ids(tmp_path):
    by_title = {
        r["title"]: r for r in read("cheat_fusion") if len(words(r["title"])) >= 8 and len(words(r["text"])) >= 40
    }
    records = [{"qid": f"q{i}", "question": t, "answer": r["text"]} for i, (t, r) in enumerate(by_title.items())]
    records = records[:40]
    assert len(records) == 40
    lines = [(json.dumps(r) + "\n").encode() for r in records]
    gz, zst = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.zst"
    gz.write_bytes(gzip.compress(b"".join(lines[:20])))
    # two zstd frames, as parallel compressors write them
    zst.write_bytes(
        b"".join(zstandard.ZstdCompressor().compress(b"".join(part)) for part in (lines[20:30], lines[30:]))
    )
    both = [f"{r['question']}\n{r['answer']}" for r in records]
    # no text field: all string fields but the id, joined
    index = LeakageIndex.build([gz, zst], id_field="qid")
    assert index.item_ids == [r["qid"] for r in records]
    assert [[(m.item_id, m.containment) for m in f] for f in index.scan(both)] == [[(r["qid"], 1.0)] for r in records]
    # text_field picks one field; without an id field the id is "<file>:<line>"
    answers_only = LeakageIndex.build([gz, zst], text_field="answer")
    assert answers_only.item_ids[0] == "a.jsonl.gz:1" and answers_only.item_ids[-1] == "b.jsonl.zst:20"
    found = answers_only.scan([r["answer"] for r in records])
    assert all(f and f[0].containment == 1.0 for f in found)


def test_short_items_are_matched_whole(tmp_path, unrelated):
    tweets = list(dict.fromkeys(r["text"] for r in read("worker_vs_gpt")))
    short = [t for t in tweets if 9 <= len(words(t)) <= 12 and t.isascii()][:50]
    records = [{"id": f"s{i}", "text": t} for i, t in enumerate(short)]
    records.append({"id": "tiny", "text": "What is the capital of France?"})
    index = LeakageIndex.build(write_jsonl(tmp_path / "short.jsonl", records))
    assert index.describe()["too_short"] == 1 and index.describe()["indexed_items"] == 50
    target = short[7]
    w = words(target)
    documents = [
        f"{unrelated[0]} {target.upper()} {unrelated[1]}",  # whole item inside a document
        f"{unrelated[2]} {' '.join(w[:8])}",  # only its first eight words
        f"{unrelated[3]} {' '.join(w[:5])}",  # split across two adjacent documents
        f"{' '.join(w[5:])} {unrelated[4]}",
        "what is the capital of france",
    ]
    results = index.scan(documents)
    assert LeakageMatch("s7", 1.0, 1) in results[0]
    assert all(m.containment == 1.0 and m.matched_ngrams == 1 for m in results[0])
    assert results[1:] == [[], [], [], []]
    assert [[m.item_id for m in f] for f in index.scan(short)] == [[f"s{i}"] for i in range(50)]
