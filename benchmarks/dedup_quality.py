"""Which normalisation and shingling find pasted short crowd answers.

Positives are real short texts (1-3 sentences, 40-400 characters, from worker_vs_gpt and
hc3_plus_si) paired with a copy carrying one kind of light edit, as a worker pasting an
LLM answer would hand it in. Hard negatives are two different texts written from the same
seed in worker_vs_gpt (paraphrases, not copies); random negatives are unrelated texts.
Every config is scored on the exact Jaccard similarity of its shingle sets, at 0.5 and at
the lowest threshold that keeps hard negatives at <= 1% false positives, and end to end
through LSH clustering (``cluster_near_duplicates`` with the bands/rows datasketch picks).

Texts first go through ``clean_text``, as they do inside the detector, so "raw" means
"as the detector receives it" (NFC, zero-width characters dropped, runs of spaces collapsed).

    python benchmarks/dedup_quality.py [--n-pairs N] [--out benchmarks/results/dedup_quality.md]

``--lsh-pairs`` caps how many pairs per edit type go through LSH clustering (the slow part);
the defaults run in about a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from auditor.corpus import datasets_dir
from detectors.minhash import MinHasher, candidate_pairs, cluster_near_duplicates, jaccard, normalise
from detectors.minhash import lsh_params as datasketch_lsh_params
from detectors.text import clean_text

SEED = 20240601
MIN_CHARS, MAX_CHARS = 40, 400
MAX_SENTENCES = 3
MAX_HARD_FPR = 0.01
LSH_BATCH_PAIRS = 100  # positive pairs per clustered batch
SHORT_CHARS = 80  # "short" bases for the extra recall column
BACKGROUND_TEXTS = 2000
SWEEP_THRESHOLDS = (0.4, 0.45, 0.5, 0.55)
SWEEP_CONFIGS = [("alnum", "char", n) for n in (3, 4, 5, 6)] + [("alnum", "word", 1)]
NORMALISATIONS = ("raw", "lower", "alnum")
SHINGLINGS = [("char", n) for n in (3, 4, 5, 6, 7)] + [("word", n) for n in (1, 2, 3)]
DEFAULT_CONFIG = ("alnum", "char", 5)

PREFIXES = ("Answer: ", "My answer: ", "Response: ", "A: ", "Summary: ", "Here is my answer: ")
SUFFIXES = (" Hope this helps!", " Thanks.", " :)", " (my own words)", " That is my answer.")


# --- edits a worker makes to a pasted answer ---------------------------------------------


def exact_copy(text: str, rng: random.Random) -> str:
    return text


def change_case(text: str, rng: random.Random) -> str:
    return rng.choice([str.lower, str.lower, str.upper, lambda t: t[:1].swapcase() + t[1:]])(text)


def respace(text: str, rng: random.Random) -> str:
    gaps = [rng.choices([" ", "  ", "\n", " \n"], weights=[6, 2, 1, 1])[0] for _ in range(text.count(" "))]
    pieces = text.split(" ")
    spaced = pieces[0] + "".join(gap + piece for gap, piece in zip(gaps, pieces[1:], strict=True))
    return rng.choice(["", " ", "\n"]) + spaced + rng.choice(["", " ", "\n"])


def repunctuate(text: str, rng: random.Random) -> str:
    variants = [
        lambda t: re.sub(r"[^\w\s]", "", t),  # all punctuation dropped
        lambda t: re.sub(r"[.!?]+(\s|$)", lambda m: rng.choice(["!", "...", " .", ";"]) + m.group(1), t),
        lambda t: re.sub(r",\s*", " - ", t).rstrip(".!?"),
    ]
    return rng.choice(variants)(text)


def reformat(text: str, rng: random.Random) -> str:
    """Case, spacing and punctuation changes: a random non-empty subset of the three."""
    edits = [edit for edit in (change_case, respace, repunctuate) if rng.random() < 0.5]
    for edit in edits or [rng.choice((change_case, respace, repunctuate))]:
        text = edit(text, rng)
    return text


def substitute_words(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    spans = [m.span() for m in re.finditer(r"[^\W\d_]{3,}", text)]
    for start, end in sorted(rng.sample(spans, min(len(spans), rng.randint(1, 2))), reverse=True):
        text = text[:start] + rng.choice(vocabulary) + text[end:]
    return text


def add_typos(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(2, 4)):
        letters = [i for i, c in enumerate(chars[:-1]) if c.isalpha()]
        if not letters:
            break
        i = rng.choice(letters)
        kind = rng.choice(("swap", "drop", "double", "replace"))
        if kind == "swap":
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == "drop":
            del chars[i]
        elif kind == "double":
            chars.insert(i, chars[i])
        else:
            chars[i] = rng.choice(string.ascii_lowercase)
    return "".join(chars)


def add_affix(text: str, rng: random.Random) -> str:
    return rng.choice(PREFIXES) + text if rng.random() < 0.5 else text + rng.choice(SUFFIXES)


def truncate(text: str, rng: random.Random) -> str:
    return text[: round(len(text) * rng.uniform(0.82, 0.88))]


def edit_types(vocabulary: list[str]) -> dict[str, Callable[[str, random.Random], str]]:
    return {
        "exact": exact_copy,
        "format": reformat,
        "words": lambda text, rng: substitute_words(text, rng, vocabulary),
        "typos": add_typos,
        "affix": add_affix,
        "truncate": truncate,
    }


# --- data ---------------------------------------------------------------------------------


@dataclass
class ShortText:
    text: str
    dataset: str
    seed_id: str | None


@dataclass
class PairSet:
    positives: dict[str, list[tuple[str, str]]]
    hard: list[tuple[str, str]]
    random: list[tuple[str, str]]
    background: list[str]  # random pool texts: how many LSH candidates a batch produces
    notes: dict[str, int] = field(default_factory=dict)


def is_short_answer(text: str) -> bool:
    sentences = len(re.findall(r"[.!?]+(?:\s|$)", text)) or 1
    return MIN_CHARS <= len(text) <= MAX_CHARS and sentences <= MAX_SENTENCES


def load_short_texts(root: Path) -> list[ShortText]:
    sources = [
        ("worker_vs_gpt", root / "worker_vs_gpt" / "worker_vs_gpt.jsonl"),
        ("hc3_plus_si", root / "hc3_plus_si" / "hc3_plus_si_en_val.jsonl"),
    ]
    texts, seen = [], set()
    for dataset, path in sources:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                text = clean_text(row["text"])
                if is_short_answer(text) and text not in seen:
                    seen.add(text)
                    texts.append(ShortText(text, dataset, row.get("seed_id")))
    return texts


def pick_bases(texts: list[ShortText], n: int, rng: random.Random) -> list[str]:
    """Half from each data set, at most one text per worker_vs_gpt seed, so that no two
    bases are paraphrases of each other (which would link clusters through a third text)."""
    by_seed: dict[str, ShortText] = {}
    for t in rng.sample(texts, len(texts)):
        if t.dataset == "worker_vs_gpt":
            by_seed.setdefault(t.seed_id, t)
    worker = list(by_seed.values())
    hc3 = [t for t in texts if t.dataset == "hc3_plus_si"]
    n_worker = min(n // 2, len(worker))
    return [t.text for t in rng.sample(worker, n_worker) + rng.sample(hc3, n - n_worker)]


def same_after_alnum(a: str, b: str) -> bool:
    return normalise(a, "alnum") == normalise(b, "alnum")


def hard_negative_pairs(texts: list[ShortText], n: int, rng: random.Random) -> tuple[list[tuple[str, str]], int]:
    """Two different texts from one seed. Pairs equal up to case and punctuation are copies,
    not paraphrases, and are left out (their number is returned)."""
    groups: dict[str, list[str]] = {}
    for t in texts:
        if t.seed_id:
            groups.setdefault(t.seed_id, []).append(t.text)
    seeds = sorted(seed for seed, members in groups.items() if len(members) > 1)
    pairs: set[tuple[str, str]] = set()
    copies = 0
    while len(pairs) < n:
        a, b = sorted(rng.sample(groups[rng.choice(seeds)], 2))
        if same_after_alnum(a, b):
            copies += 1
            continue
        pairs.add((a, b))
    return sorted(pairs), copies


def random_negative_pairs(texts: list[ShortText], n: int, rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    while len(pairs) < n:
        a, b = rng.sample(texts, 2)
        if a.seed_id is None or a.seed_id != b.seed_id:
            pairs.append((a.text, b.text))
    return pairs


def word_vocabulary(texts: list[ShortText], rng: random.Random, size: int = 5000) -> list[str]:
    words = {w.lower() for t in rng.sample(texts, min(len(texts), 5000)) for w in re.findall(r"[A-Za-z]{3,10}", t.text)}
    return rng.sample(sorted(words), min(size, len(words)))


def build_pairs(texts: list[ShortText], n_pairs: int, seed: int) -> PairSet:
    rng = random.Random(seed)
    bases = pick_bases(texts, n_pairs, rng)
    edits = edit_types(word_vocabulary(texts, rng))
    positives = {name: [(base, clean_text(edit(base, rng))) for base in bases] for name, edit in edits.items()}
    hard, hard_copies = hard_negative_pairs(texts, n_pairs, rng)
    random_pairs = random_negative_pairs(texts, n_pairs, rng)
    background = [t.text for t in rng.sample(texts, BACKGROUND_TEXTS)]
    return PairSet(positives, hard, random_pairs, background, {"hard_copies_left_out": hard_copies})


# --- evaluation ---------------------------------------------------------------------------


@cache
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    return datasketch_lsh_params(threshold, num_perm)  # datasketch integrates numerically: slow


@dataclass
class OperatingPoint:
    threshold: float
    bands_rows: tuple[int, int]
    recall: dict[str, float]  # edit type -> share of positive pairs at or above the threshold
    short_recall: float  # over all edit types, pairs whose base has <= SHORT_CHARS characters
    fpr_hard: float
    fpr_random: float
    candidates_per_text: float  # LSH candidate pairs per text in the background batch
    lsh_recall: float | None = None
    exact_recall_same_pairs: float | None = None  # the pairs LSH was run on, exact Jaccard

    @property
    def mean_recall(self) -> float:
        return float(np.mean(list(self.recall.values())))


@dataclass
class ConfigResult:
    config: tuple[str, str, int]
    auroc: float
    fixed: OperatingPoint
    calibrated: OperatingPoint
    sweep: list[OperatingPoint]

    @property
    def name(self) -> str:
        normalisation, shingle, n = self.config
        label = f"{normalisation} / {shingle} {n}"
        return f"**{label}** (default)" if self.config == DEFAULT_CONFIG else label


@dataclass
class Scores:
    """Exact Jaccard of every pair under one config."""

    positive: dict[str, np.ndarray]
    short: np.ndarray  # mask over the concatenated positives
    hard: np.ndarray
    random: np.ndarray

    @property
    def all_positive(self) -> np.ndarray:
        return np.concatenate(list(self.positive.values()))


def pair_jaccards(hasher: MinHasher, pairs: list[tuple[str, str]]) -> np.ndarray:
    shingles = hasher.shingle_hashes([text for pair in pairs for text in pair])
    return np.array([jaccard(shingles[2 * i], shingles[2 * i + 1]) for i in range(len(pairs))])


def score_pairs(hasher: MinHasher, pairs: PairSet) -> Scores:
    return Scores(
        positive={name: pair_jaccards(hasher, p) for name, p in pairs.positives.items()},
        short=np.concatenate([[len(a) <= SHORT_CHARS for a, _ in p] for p in pairs.positives.values()]),
        hard=pair_jaccards(hasher, pairs.hard),
        random=pair_jaccards(hasher, pairs.random),
    )


def calibrated_threshold(hard_scores: np.ndarray, max_fpr: float = MAX_HARD_FPR) -> float:
    """Lowest multiple of 0.01 that at most ``max_fpr`` of hard negatives reach: just above
    the highest hard-negative score that must fall below it."""
    allowed = int(max_fpr * len(hard_scores))
    must_fall_below = np.sort(hard_scores)[::-1][allowed]
    # round() first so that 0.29 * 100 == 28.999... still steps up to 0.30.
    return min(1.0, (math.floor(round(must_fall_below * 100, 6)) + 1) / 100)


def lsh_recall(hasher: MinHasher, positives: list[list[tuple[str, str]]], threshold: float) -> float:
    """Share of positive pairs that ``cluster_near_duplicates`` puts in one cluster. Each
    edit type is clustered on its own, in batches of bases plus their edited copies, so a
    pair can only be joined through its own similarity."""
    bands, rows = _lsh_params(threshold, hasher.num_perm)
    found = total = 0
    for pairs in positives:
        for start in range(0, len(pairs), LSH_BATCH_PAIRS):
            batch = pairs[start : start + LSH_BATCH_PAIRS]
            k = len(batch)
            signatures = hasher.signatures([a for a, _ in batch] + [b for _, b in batch])
            cluster = cluster_near_duplicates(signatures, threshold, bands, rows).cluster
            found += int(np.sum((cluster[:k] >= 0) & (cluster[:k] == cluster[k:])))
            total += k
    return found / total


def operating_point(scores: Scores, threshold: float, background_hashvalues: np.ndarray) -> OperatingPoint:
    bands_rows = _lsh_params(threshold, background_hashvalues.shape[1])
    n_candidates = len(candidate_pairs(background_hashvalues, *bands_rows))
    return OperatingPoint(
        threshold,
        bands_rows,
        recall={name: float(np.mean(s >= threshold)) for name, s in scores.positive.items()},
        short_recall=float(np.mean(scores.all_positive[scores.short] >= threshold)),
        fpr_hard=float(np.mean(scores.hard >= threshold)),
        fpr_random=float(np.mean(scores.random >= threshold)),
        candidates_per_text=n_candidates / len(background_hashvalues),
    )


def with_lsh(
    point: OperatingPoint, hasher: MinHasher, pairs: PairSet, scores: Scores, lsh_pairs: int
) -> OperatingPoint:
    found = lsh_recall(hasher, [p[:lsh_pairs] for p in pairs.positives.values()], point.threshold)
    same_pairs = np.concatenate([s[:lsh_pairs] for s in scores.positive.values()])
    return replace(point, lsh_recall=found, exact_recall_same_pairs=float(np.mean(same_pairs >= point.threshold)))


def evaluate(config: tuple[str, str, int], pairs: PairSet, fixed: float, lsh_pairs: int) -> ConfigResult:
    normalisation, shingle, n = config
    hasher = MinHasher(shingle=shingle, n=n, normalisation=normalisation)
    scores = score_pairs(hasher, pairs)
    labels = np.r_[np.ones(len(scores.all_positive)), np.zeros(len(scores.hard))]
    auroc = roc_auc_score(labels, np.r_[scores.all_positive, scores.hard])
    background = hasher.signatures(pairs.background).hashvalues

    def measured(threshold: float) -> OperatingPoint:
        return with_lsh(operating_point(scores, threshold, background), hasher, pairs, scores, lsh_pairs)

    sweep = [measured(t) for t in SWEEP_THRESHOLDS] if config in SWEEP_CONFIGS else []
    return ConfigResult(config, auroc, measured(fixed), measured(calibrated_threshold(scores.hard)), sweep)


# --- report -------------------------------------------------------------------------------


def percent(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def operating_point_table(results: list[ConfigResult], edit_names: list[str], calibrated: bool) -> str:
    header = ["config", "AUROC", "threshold", "bands×rows", *edit_names, "mean recall",
              f"recall ≤{SHORT_CHARS} chars", "FPR hard", "FPR random", "LSH recall", "exact, same pairs",
              "cand./text"]  # fmt: skip
    rows = []
    for result in results:
        point = result.calibrated if calibrated else result.fixed
        rows.append([
            result.name, f"{result.auroc:.3f}", f"{point.threshold:.2f}", "{}×{}".format(*point.bands_rows),
            *(percent(point.recall[name]) for name in edit_names), percent(point.mean_recall),
            percent(point.short_recall), percent(point.fpr_hard, 2), percent(point.fpr_random, 2),
            percent(point.lsh_recall), percent(point.exact_recall_same_pairs),
            f"{point.candidates_per_text:.2f}",
        ])  # fmt: skip
    return markdown_table(header, rows)


def sweep_table(results: list[ConfigResult]) -> str:
    header = ["config", "threshold", "bands×rows", "mean recall", f"recall ≤{SHORT_CHARS} chars", "FPR hard",
              "FPR random", "LSH recall", "exact, same pairs", "cand./text"]  # fmt: skip
    rows = [
        [result.name, f"{p.threshold:.2f}", "{}×{}".format(*p.bands_rows), percent(p.mean_recall),
         percent(p.short_recall), percent(p.fpr_hard, 2), percent(p.fpr_random, 2), percent(p.lsh_recall),
         percent(p.exact_recall_same_pairs), f"{p.candidates_per_text:.2f}"]
        for result in results
        for p in result.sweep
    ]  # fmt: skip
    return markdown_table(header, rows)


def describe_data(pairs: PairSet, n_texts: int, lsh_pairs: int) -> list[str]:
    edit_names = list(pairs.positives)
    bases = [a for a, _ in pairs.positives[edit_names[0]]]
    n_short = sum(len(b) <= SHORT_CHARS for b in bases)
    copies = pairs.notes["hard_copies_left_out"]
    return [
        f"Pool: {n_texts} distinct real texts of {MIN_CHARS}-{MAX_CHARS} characters and at most "
        f"{MAX_SENTENCES} sentences (worker_vs_gpt, "
        f"hc3_plus_si_en_val) after `clean_text`, as the detector sees them. Seed {SEED}, num_perm=128.",
        "",
        f"- Positives: {len(bases)} base texts ({n_short} of ≤{SHORT_CHARS} chars) × "
        f"{len(edit_names)} edit types ({', '.join(edit_names)}).",
        f"- Hard negatives: {len(pairs.hard)} pairs of different texts written from one worker_vs_gpt "
        f"seed ({copies} drawn pairs equal up to case/punctuation were left out as copies). "
        f"Random negatives: {len(pairs.random)} pairs.",
        "- AUROC: exact Jaccard, all positives vs hard negatives. Recall and FPR (in %): exact Jaccard ≥ threshold.",
        f"- LSH recall (%): of the first {min(lsh_pairs, len(bases))} pairs of each edit type, those "
        f"`cluster_near_duplicates` puts in one cluster (batches of {LSH_BATCH_PAIRS} bases + copies; "
        "bands×rows as datasketch picks them in `detectors.minhash.lsh_params`); "
        '"exact, same pairs" is the exact-Jaccard recall on those pairs.',
        f"- cand./text: LSH candidate pairs (each verified with exact Jaccard) per text in a batch of "
        f"{len(pairs.background)} random pool texts: the verification cost.",
    ]


def render_report(results: list[ConfigResult], pairs: PairSet, n_texts: int, args, seconds: float) -> str:
    edit_names = list(pairs.positives)
    lines = [
        "# Near-duplicate detection on short crowd answers: normalisation × shingling",
        "",
        *describe_data(pairs, n_texts, args.lsh_pairs),
        "",
        f"## At Jaccard ≥ {args.threshold}",
        "",
        operating_point_table(results, edit_names, calibrated=False),
        "",
        f"## At each config's lowest threshold with ≤ {MAX_HARD_FPR:.0%} FPR on hard negatives",
        "",
        operating_point_table(results, edit_names, calibrated=True),
        "",
        "## Threshold sweep (alnum)",
        "",
        sweep_table([r for r in results if r.sweep]),
        "",
        f"_{seconds:.0f} s._",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-pairs", type=int, default=2000, help="pairs per edit type and per negative kind")
    parser.add_argument("--lsh-pairs", type=int, default=300, help="pairs per edit type run through LSH")
    parser.add_argument("--threshold", type=float, default=0.5, help="fixed Jaccard threshold to report")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dedup_quality.md"))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    texts = load_short_texts(datasets_dir())
    pairs = build_pairs(texts, args.n_pairs, SEED)
    configs = [(normalisation, shingle, n) for normalisation in NORMALISATIONS for shingle, n in SHINGLINGS]
    results = [evaluate(config, pairs, args.threshold, args.lsh_pairs) for config in configs]
    report = render_report(results, pairs, len(texts), args, time.perf_counter() - started)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
