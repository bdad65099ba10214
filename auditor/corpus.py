"""The shared reference corpus (``../shared/datasets``): one table of human and LLM-written
texts with normalised generator names, pairing groups and deterministic splits.

Training, calibration, benchmarks and tests all read the data through here so that they
agree on which texts are held out. Splits are by *group* (a human text and the LLM texts
written from it share a group), so no pair straddles train and test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

DATASETS_ENV = "AUDITOR_DATASETS_DIR"
SPLITS = ("train", "calibration", "test")
_SPLIT_EDGES = (0.6, 0.8)

# Domains kept out of training and calibration entirely: they are the evaluation of
# known failure modes (non-native writers) and of the real crowd-work case.
EVALUATION_ONLY_DOMAINS = frozenset({"toefl_essay_nonnative", "gpturk_medical_summary"})

_GENERATOR_FAMILIES = [
    (re.compile(r"gpt-?4o", re.I), "gpt-4o"),
    (re.compile(r"gpt-4-1106|gpt-4-turbo", re.I), "gpt-4-turbo"),
    (re.compile(r"^gpt-4$", re.I), "gpt-4"),
    (re.compile(r"chatgpt|gpt-3\.5|gpt-3-turbo", re.I), "gpt-3.5-turbo"),
    (re.compile(r"llama-2", re.I), "llama-2-70b"),
    (re.compile(r"llama-3", re.I), "llama-3-70b"),
    (re.compile(r"gemini", re.I), "gemini-1.5-pro"),
    (re.compile(r"^human$", re.I), "human"),
]
_ENCLOSING_QUOTES = re.compile(r'^\s*"(.*)"\s*$', re.S)
_TITLE_HEADER = re.compile(r"^Title: [^\n]*\n+\s*")
_ABSTRACT_HEADER = re.compile(r"^Abstract:\s*\n+")


def datasets_dir() -> Path:
    """``$AUDITOR_DATASETS_DIR``, else ``shared/datasets`` beside the project (or beside the
    current directory), else the workplace's ``/work/shared/datasets`` (where CI clones run)."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]
    candidates = (
        here.parent / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
        Path("/work/shared/datasets"),
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"shared datasets not found (looked in {', '.join(map(str, candidates))}); set {DATASETS_ENV} to their folder"
    )


def normalise_generator(name: str) -> str:
    for pattern, family in _GENERATOR_FAMILIES:
        if pattern.search(name):
            return family
    return name.lower()


def strip_artefacts(text: str) -> str:
    """Remove collection artefacts that would let a model learn the source, not the writer:
    quotes around whole texts (Llama-2 tweets), ``Title:`` headers on human movie
    summaries and ``Abstract:`` headers on GPT-4 abstracts."""
    match = _ENCLOSING_QUOTES.match(text)
    if match and '"' not in match.group(1):
        text = match.group(1)
    text = _TITLE_HEADER.sub("", text)
    return _ABSTRACT_HEADER.sub("", text)


def split_of(group: str, salt: str = "v1") -> str:
    digest = hashlib.sha256(f"{salt}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < _SPLIT_EDGES[0]:
        return "train"
    return "calibration" if u < _SPLIT_EDGES[1] else "test"


def _group_key(dataset: str, row: dict, line: int) -> str:
    if dataset == "worker_vs_gpt" and row.get("seed_id"):
        return row["seed_id"]
    if dataset == "hc3_partial":
        return row["question_id"]
    if dataset == "l2r_rewrites" and row.get("pair_idx") not in (None, ""):
        return f"{row['domain']}:{row['pair_idx']}"
    if dataset == "ai_ai_bias_gpt4" and row.get("title"):
        return f"{row['domain']}:{row['title']}"
    if dataset == "liang_detector_bias":
        prefix = row["subset"].split("_")[0]
        pair = "gpt3" if "gpt3" in row["subset"] else "real"
        return f"{prefix}:{pair}:{row['index']}"
    return f"{dataset}:{line}"


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict]]:
    with path.open(encoding="utf-8") as handle:
        for line, raw in enumerate(handle):
            if raw.strip():
                yield line, json.loads(raw)


def _gpturk_rows(folder: Path) -> Iterable[dict]:
    """The GPTurk labelled summaries (train.json/test.json): real = MTurk 2018, synthetic = ChatGPT."""
    for name in ("train.json", "test.json"):
        for i, row in enumerate(json.loads((folder / name).read_text())):
            machine = row["labels"] == "synthetic"
            yield {
                "id": f"gpturk/{name}:{i}",
                "dataset": "gpturk",
                "text": row["text"],
                "label": int(machine),
                "generator": "gpt-3.5-turbo" if machine else "human",
                "domain": "gpturk_medical_summary",
                "group": f"gpturk:{row['HITId']}",
                "source_split": name.removesuffix(".json"),
            }


def load_corpus(root: Path | None = None, clean: bool = True) -> pd.DataFrame:
    """All labelled texts: columns id, dataset, text, label (1 = LLM), generator, domain,
    group, split. Evaluation-only domains get split ``eval``."""
    root = root or datasets_dir()
    records: list[dict] = []
    for path in sorted(root.glob("*/*.jsonl")):
        dataset = path.parent.name
        for line, row in _jsonl_rows(path):
            records.append(
                {
                    "id": f"{dataset}:{line}",
                    "dataset": dataset,
                    "text": row["text"],
                    "label": int(row["label"] == "machine"),
                    "generator": normalise_generator(row["generator"]),
                    "domain": _domain(dataset, row),
                    "group": f"{dataset}:{_group_key(dataset, row, line)}",
                    "source_split": "",
                }
            )
    if (root / "gpturk").is_dir():
        records.extend(_gpturk_rows(root / "gpturk"))
    frame = pd.DataFrame.from_records(records)
    if clean:
        frame["text"] = frame["text"].map(strip_artefacts)
    frame["split"] = frame["group"].map(split_of)
    frame.loc[frame["domain"].isin(EVALUATION_ONLY_DOMAINS), "split"] = "eval"
    return frame


def _domain(dataset: str, row: dict) -> str:
    if dataset == "hc3_plus_si":
        return "hc3_plus_si_mixed"
    return row["domain"]


def stratified_sample(
    corpus: pd.DataFrame, cap: int = 500, large_cells: dict[str, int] | None = None, seed: int = 0
) -> pd.DataFrame:
    """At most ``cap`` rows per (dataset, domain, generator) cell, so that no single source
    dominates training; evaluation-only domains are kept whole. ``large_cells`` raises
    the cap for datasets that have a single domain (default: hc3_plus_si 2000)."""
    large_cells = {"hc3_plus_si": 2000} if large_cells is None else large_cells
    parts = []
    for (dataset, _, _), cell in corpus.groupby(["dataset", "domain", "generator"], sort=True):
        limit = len(cell) if (cell["split"] == "eval").all() else large_cells.get(dataset, cap)
        parts.append(cell.sample(n=min(limit, len(cell)), random_state=seed))
    return pd.concat(parts).sort_values("id").reset_index(drop=True)
