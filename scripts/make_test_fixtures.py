"""Regenerate the test suite's mini corpus, ``tests/fixtures/datasets``, from the public corpus.

    python scripts/make_test_fixtures.py [--source ../shared/datasets] [--out tests/fixtures/datasets]

Only permissively licensed sets are taken (MIT, Apache-2.0, BSD-3-Clause, CC BY; see
``tests/fixtures/README.md`` for sources, licences and attribution). Each keeps the public
corpus's layout (``<set>/<set>.jsonl``, its ``PROVENANCE.txt`` with a note of the selection
appended) and its rows verbatim, in their original order, so that ``auditor.corpus.load_corpus``
reads the folder like the full corpus.

Selection, deterministic (no random state: groups are ordered by a salted SHA-256 of their
pairing group):

* only rows whose pairing group does not depend on the row's line in the file (the paired rows:
  seed ids, pair ids, ...): their split is then the same in the mini corpus as in the full one,
  so a fixture text of the ``test`` split was never trained on by the shipped models;
* a fixed number of pairing groups per split and set (more from ``test``, which the tests read
  most), whole groups where the loader cuts a shared opening (continuations) and a few rows per
  group elsewhere;
* a few groups always, for what the tests look for in real text: CJK characters, non-ASCII
  capitals in long texts, human texts of fewer than eight words.

The script checks what it wrote: every fixture row loads with the same text, label, group and
split as in the full corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import _group_key, load_corpus, split_of  # noqa: E402

SALT = "test-fixtures-v1"
CJK = re.compile("[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")
WORD = re.compile(r"[^\W_]+")

Row = tuple[int, dict]  # (line in the source file, record)


def _words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _non_ascii_capitals(text: str) -> bool:
    return any(ord(c) > 127 and c.casefold() != c for c in unicodedata.normalize("NFKC", text))


def _ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


# ------------------------------------------------------------------ per-group rules
def whole_group(rows: list[Row]) -> list[Row]:
    return rows


def human_and_one_per_generator(rows: list[Row]) -> list[Row]:
    """The human text(s) of the group and, per generator, the machine text first in salted order."""
    kept = [r for r in rows if r[1]["label"] == "human"]
    by_generator: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row[1]["label"] == "machine":
            by_generator[row[1]["generator"]].append(row)
    for generator in sorted(by_generator):
        kept.append(min(by_generator[generator], key=lambda r: _rank(f"{generator}:{r[0]}")))
    return sorted(kept, key=lambda r: r[0])


def human_and_one_machine(rows: list[Row]) -> list[Row]:
    """The human text(s) of the group and one of its machine texts (first in salted order): more
    human texts for the same size, the generators taking turns over the groups."""
    machines = [r for r in rows if r[1]["label"] == "machine"]
    kept = [r for r in rows if r[1]["label"] == "human"] + [min(machines, key=lambda r: _rank(str(r[0])))][
        : len(machines)
    ]
    return sorted(kept, key=lambda r: r[0])


def has_cjk(rows: list[Row]) -> bool:
    return any(CJK.search(r[1]["text"]) for r in rows)


def long_human_with_non_ascii_capitals(rows: list[Row]) -> bool:
    return any(
        r[1]["label"] == "human" and len(_words(r[1]["text"])) >= 30 and _non_ascii_capitals(r[1]["text"]) for r in rows
    )


def short_human(rows: list[Row]) -> bool:
    return any(r[1]["label"] == "human" and len(_words(r[1]["text"])) < 8 for r in rows)


def continuation_copies_the_human_text(rows: list[Row]) -> bool:
    """A machine "continuation" holding half or more of its human text's 13-grams is a copy, not a
    continuation (one group in the public corpus): kept out, the shared opening is what the tests read."""
    humans = [_ngrams(r[1]["text"]) for r in rows if r[1]["label"] == "human"]
    machines = [_ngrams(r[1]["text"]) for r in rows if r[1]["label"] == "machine"]
    return any(h and len(h & m) >= len(h) / 2 for h in humans for m in machines)


@dataclass
class Plan:
    """How many pairing groups to take per split, which rows of a group, and which groups always."""

    groups: dict[str, int]
    rows_of_group: Callable[[list[Row]], list[Row]] = whole_group
    keep_row: Callable[[dict], bool] = lambda row: True
    always: list[tuple[Callable[[list[Row]], bool], int]] = field(default_factory=list)
    never: Callable[[list[Row]], bool] = lambda rows: False


PLANS: dict[str, Plan] = {
    # crowd-labelled social-media texts and the GPT-4 / Llama-2 texts written from them (English)
    "worker_vs_gpt": Plan(
        {"test": 90, "calibration": 60, "train": 60},
        human_and_one_per_generator,
        keep_row=lambda row: row.get("language") == "en",
        always=[(has_cjk, 1)],
    ),
    # human texts of 20 domains and a rewrite of each by GPT-3.5-turbo, GPT-4o or Llama-3-70B
    # (Gemini's rewrites are not index-aligned with the human texts: unpaired, left out)
    "l2r_rewrites": Plan(
        {"test": 140, "calibration": 60, "train": 60}, human_and_one_machine, always=[(short_human, 2)]
    ),
    # essays and abstracts, human (TOEFL: non-native) and GPT-polished or GPT-written
    "liang_detector_bias": Plan({"test": 30, "calibration": 15, "train": 20}, always=[(has_cjk, 1)]),
    # continuations of human openings by open and API models (whole groups: the loader cuts the opening)
    "fastdetect_glimpse": Plan(
        {"test": 25, "calibration": 12, "train": 15},
        always=[(has_cjk, 6), (long_human_with_non_ascii_capitals, 14)],
        never=continuation_copies_the_human_text,
    ),
    # the out-of-distribution documents (paired; the document-level subset has no pairing)
    "seqxgpt_doc_ood": Plan({"test": 10, "calibration": 5, "train": 5}),
    # IEEE abstracts fusing human and ChatGPT sentences (machine only)
    "cheat_fusion": Plan({"test": 60, "calibration": 40, "train": 50}),
    # PubMed articles and Falcon-7B continuations
    "binoculars_pubmed_falcon7b": Plan({"test": 8, "calibration": 6, "train": 6}),
}


def _rank(key: str) -> str:
    return hashlib.sha256(f"{SALT}:{key}".encode()).hexdigest()


def select(dataset: str, path: Path, plan: Plan) -> list[Row]:
    groups: dict[str, list[Row]] = defaultdict(list)
    with path.open(encoding="utf-8") as handle:
        for line, raw in enumerate(handle):
            if not raw.strip():
                continue
            row = json.loads(raw)
            group = _group_key(dataset, row, line)
            if group == f"{dataset}:{dataset}:{line}" or not plan.keep_row(row):
                continue  # unpaired: its group (and split) would change with its line in the fixture
            groups[group].append((line, row))
    order = sorted((g for g in groups if not plan.never(groups[g])), key=_rank)
    chosen: list[str] = []
    for wanted, count in plan.always:
        chosen += [g for g in order if g not in chosen and wanted(groups[g])][:count]
    taken = Counter(split_of(g) for g in chosen)
    for group in order:
        split = split_of(group)
        if group not in chosen and taken[split] < plan.groups.get(split, 0):
            chosen.append(group)
            taken[split] += 1
    return sorted((row for g in chosen for row in plan.rows_of_group(groups[g])), key=lambda r: r[0])


def write(dataset: str, source: Path, out: Path, rows: list[Row], total: int) -> None:
    folder = out / dataset
    folder.mkdir(parents=True)
    name = f"{dataset}.jsonl"
    with (folder / name).open("w", encoding="utf-8") as handle:
        for _, row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    labels = Counter(row["label"] for _, row in rows)
    provenance = (source / dataset / "PROVENANCE.txt").read_text(encoding="utf-8").rstrip("\n")
    provenance += (
        f"\n\nTest fixture: {len(rows)} of the {total} rows above ({labels['human']} human, {labels['machine']} "
        f"machine), verbatim and in their order, selected by scripts/make_test_fixtures.py (whole or partial "
        "pairing groups, chosen by split; see tests/fixtures/README.md for licence and attribution).\n"
    )
    (folder / "PROVENANCE.txt").write_text(provenance, encoding="utf-8")


def check(source: Path, out: Path, lines: dict[str, list[int]]) -> None:
    """Every fixture row loads as in the full corpus: same text, labels, group and split."""
    mini, full = load_corpus(out), load_corpus(source)
    full = full[full["dataset"].isin(list(lines))].set_index("id")
    original = [f"{d}:{lines[d][int(i.split(':')[1])]}" for d, i in zip(mini["dataset"], mini["id"], strict=True)]
    columns = ["text", "label", "train_label", "group", "split", "domain", "generator"]
    same = mini[columns].reset_index(drop=True).fillna(-1) == full.loc[original, columns].reset_index(drop=True).fillna(
        -1
    )
    if not same.all().all():
        bad = same[~same.all(axis=1)]
        raise SystemExit(f"{len(bad)} fixture rows load differently from the full corpus: {bad.head()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "datasets")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    lines: dict[str, list[int]] = {}
    for dataset, plan in PLANS.items():
        path = args.source / dataset / f"{dataset}.jsonl"
        with path.open(encoding="utf-8") as handle:
            total = sum(1 for raw in handle if raw.strip())
        rows = select(dataset, path, plan)
        write(dataset, args.source, args.out, rows, total)
        lines[dataset] = [line for line, _ in rows]
        size = (args.out / dataset / f"{dataset}.jsonl").stat().st_size
        labels = Counter(row["label"] for _, row in rows)
        splits = Counter(split_of(_group_key(dataset, row, line)) for line, row in rows)
        print(f"{dataset}: {len(rows)} rows ({dict(labels)}; {dict(splits)}), {size / 1024:.0f} KiB")
    check(args.source, args.out, lines)
    print(f"-> {args.out}: every row loads as in the full corpus")


if __name__ == "__main__":
    main()
