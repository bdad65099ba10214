"""The shared reference corpus (``../shared/datasets``, see ``datasets_dir``): one table of human and LLM-written
texts with normalised generator names, pairing groups, deterministic splits, a label policy
for edited text and the training weights that keep any one source from dominating.

Training, calibration, benchmarks and tests all read the data through here so that they
agree on which texts are held out. Splits are by *group*: a human text and every text an LLM
wrote from it (answers to the same question, rewrites, polishes, continuations) share a
group, so no pair straddles train and test. Sets that edit another set's texts (APT-Eval
polishes MixSet's human texts) share that set's groups and count as one *source*, the unit a
leave-one-source-out evaluation holds out.

Label policy for edited text (``train_label``; ``label`` keeps what the source says):

* written by an LLM, whatever came after (a human revised it, an LLM "humanised" it), or
  continuing a human opening (the opening is cut, see below): machine;
* human text polished by an LLM is machine once the edit is substantial: a normalised
  Levenshtein distance to the original of at least ``HEAVY_EDIT`` (APT-Eval records it), or an
  edit kind that rewrites by construction (MixSet's polishes, rewrites and completions);
* lighter polish (distance below ``HEAVY_EDIT``) is kept out of training in both directions:
  below ``LIGHT_EDIT`` the text is the human's in substance (a grammar pass), between the two
  it is neither. Evaluations report flag rates per edit kind instead (``edit``).

Continuation-style texts (Fast-DetectGPT, SeqXGPT OOD, MixSet completions) begin with a human
opening; it is cut from the machine text, and the same length is cut from the paired human
text, so that neither the opening nor its absence identifies the label.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS_ENV = "AUDITOR_DATASETS_DIR"
SPLITS = ("train", "calibration", "test")
_SPLIT_EDGES = (0.6, 0.8)

# Domains kept out of training and calibration entirely: they are the evaluation of
# known failure modes (non-native writers) and of the real crowd-work case.
EVALUATION_ONLY_DOMAINS = frozenset({"toefl_essay_nonnative", "gpturk_medical_summary"})

# Normalised Levenshtein distance of an LLM polish to the human original (see the module doc).
LIGHT_EDIT = 0.15
HEAVY_EDIT = 0.35
EDIT_TIERS = ("none", "light_polish", "moderate_polish", "machine_edit")

# Sets that hold edits of another set's texts belong to that set's source.
SOURCE_OF_DATASET = {"apt_eval_polish": "mixset"}

# Machine-only cells and the human texts of the same kind that balance them in training
# (and stand in as their humans when the source is held out): "which data set" must never
# be the signal. Keys: (dataset, domain or None for all); values: human (dataset, domain) cells.
COUNTERPARTS: dict[tuple[str, str | None], tuple[tuple[str, str], ...]] = {
    ("cheat_fusion", None): (
        ("m4_llama2_test", "scientific_abstract_arxiv"),
        ("liang_detector_bias", "cs224n_abstract"),
        ("ai_ai_bias_gpt4", "paper_abstract"),
        ("mixset", "paper_abstract"),
    ),
    ("argugpt_machine", None): (
        ("liang_detector_bias", "us_8th_grade_essay"),
        ("liang_detector_bias", "college_admission_essay"),
    ),
    ("mixset", "qa_truthfulqa"): (("hc3_partial", "hc3_open_qa"),),
    ("mixset", "qa_squad"): (("hc3_partial", "hc3_wiki_csai"),),
    ("mixset", "qa_narrativeqa_story"): (("fastdetect_glimpse", "creative_story_writingprompts"),),
}

_GENERATOR_FAMILIES = [
    (re.compile(r"gpt-?4o", re.I), "gpt-4o"),
    (re.compile(r"gpt-4-1106|gpt-4-turbo", re.I), "gpt-4-turbo"),
    (re.compile(r"^gpt-?4$", re.I), "gpt-4"),
    (re.compile(r"chatgpt|gpt-3\.5|gpt-3-turbo|gpt3re", re.I), "gpt-3.5-turbo"),
    (re.compile(r"llama-?2", re.I), "llama-2"),
    (re.compile(r"llama-?3\.1|llama3\.1", re.I), "llama-3.1"),
    (re.compile(r"llama-?3", re.I), "llama-3"),
    (re.compile(r"llama-7b", re.I), "llama-1"),
    (re.compile(r"gemini", re.I), "gemini-1.5-pro"),
    (re.compile(r"claude-3", re.I), "claude-3"),
    (re.compile(r"deepseek", re.I), "deepseek-v3"),
    (re.compile(r"gpt2", re.I), "gpt-2"),
    (re.compile(r"gpt-neo-|gpt-j-|gpt-neox", re.I), "gpt-neo/j/x"),
    (re.compile(r"opt-", re.I), "opt"),
    (re.compile(r"^human$", re.I), "human"),
]
_ENCLOSING_QUOTES = re.compile(r'^\s*"(.*)"\s*$', re.S)
_TITLE_HEADER = re.compile(r"^Title: [^\n]*\n+\s*")
_ABSTRACT_HEADER = re.compile(r"^Abstract:\s*\n+")


def datasets_dir() -> Path:
    """The folder of the public corpus: ``$AUDITOR_DATASETS_DIR`` when it is set, else
    ``shared/datasets`` beside the project checkout (``<project>/../shared/datasets``).

    A set variable is never second-guessed: set to an empty string, to a missing folder or to a
    folder without data sets, it means "no corpus here", not "look elsewhere". Raises
    ``FileNotFoundError`` naming what was looked for and the variable to set."""
    env = os.environ.get(DATASETS_ENV)
    advice = f"set {DATASETS_ENV} to the folder of the shared data sets (shared/datasets beside the project)"
    if env is not None:
        if not env.strip():
            raise FileNotFoundError(f"public corpus not found: {DATASETS_ENV} is set but empty; {advice}")
        folder = Path(env).expanduser()
        problem = _not_a_corpus(folder)
        if problem:
            raise FileNotFoundError(f"public corpus not found: {DATASETS_ENV}={env} {problem}; {advice}")
        return folder
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    problem = _not_a_corpus(beside)
    if problem:
        raise FileNotFoundError(
            f"public corpus not found: {DATASETS_ENV} is not set and {beside} (shared/datasets beside the "
            f"project checkout) {problem}; {advice}"
        )
    return beside


def _not_a_corpus(folder: Path) -> str | None:
    """Why ``folder`` holds no data sets (None when it holds some: ``<set>/*.jsonl`` or ``gpturk/``)."""
    if not folder.is_dir():
        return "does not exist"
    if next(folder.glob("*/*.jsonl"), None) is None and not (folder / "gpturk").is_dir():
        return "holds no data sets (<set>/*.jsonl)"
    return None


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


# ------------------------------------------------------------------ pairing groups
def _liang_group(row: dict) -> str:
    prefix = row["subset"].split("_")[0]
    pair = "gpt3" if "gpt3" in row["subset"] else "real"
    return f"{prefix}:{pair}:{row['index']}"


# Per data set: the row field(s) that tie a human text to the LLM texts made from it.
# Rows without the field (unpaired texts) are groups of their own.
_GROUP_KEYS: dict[str, Callable[[dict], str | None]] = {
    "worker_vs_gpt": lambda row: row.get("seed_id"),
    "hc3_partial": lambda row: row["question_id"],
    "l2r_rewrites": lambda row: f"{row['domain']}:{row['pair_idx']}" if row.get("pair_idx") not in (None, "") else None,
    "ai_ai_bias_gpt4": lambda row: f"{row['domain']}:{row['title']}" if row.get("title") else None,
    "liang_detector_bias": _liang_group,
    "fastdetect_glimpse": lambda row: row.get("pair_id"),
    "seqxgpt_doc_ood": lambda row: row.get("pair_id"),
    "mixset": lambda row: row.get("pair_id"),
    "apt_eval_polish": lambda row: row.get("pair_id"),  # hwt-N: the MixSet human text it polishes
    "m4_llama2_test": lambda row: row.get("pair_id"),
    "binoculars_pubmed_falcon7b": lambda row: row.get("pair_id"),
    "tweepfake": lambda row: row.get("screen_name"),  # one account's tweets are near-duplicates
    "cheat_fusion": lambda row: row.get("ieee_id"),
    "argugpt_machine": lambda row: row.get("prompt_id"),
}


def _group_key(dataset: str, row: dict, line: int) -> str:
    """``source:key``; unpaired rows ``dataset:dataset:line`` (the form earlier splits were drawn with)."""
    key = _GROUP_KEYS.get(dataset, lambda _: None)(row)
    if key in (None, ""):
        return f"{dataset}:{dataset}:{line}"
    return f"{SOURCE_OF_DATASET.get(dataset, dataset)}:{key}"


# ------------------------------------------------------------------ edit policy
def edit_tier(label: int, edit: str, levenshtein: float | None) -> str:
    """Where an edited text falls under the label policy (module doc)."""
    if edit in ("", "none") or label == 0:
        return "none"
    if edit.startswith("llm_polish") and levenshtein is not None and not np.isnan(levenshtein):
        if levenshtein < LIGHT_EDIT:
            return "light_polish"
        if levenshtein < HEAVY_EDIT:
            return "moderate_polish"
    return "machine_edit"


def _training_label(frame: pd.DataFrame) -> pd.Series:
    """``label`` where the policy trains on it, NaN where the text is kept out of training."""
    out = frame["label"].astype(float)
    out[frame["edit_tier"].isin(["light_polish", "moderate_polish"])] = np.nan
    out[frame["artefact"]] = np.nan
    return out


# ------------------------------------------------------------------ continuation openings
def _cut_at_word(text: str, chars: int) -> str:
    """``text`` without its first ``chars`` characters, moved forward to a word boundary."""
    if chars <= 0:
        return text
    while chars < len(text) and not text[chars - 1].isspace() and not text[chars].isspace():
        chars += 1
    return text[chars:].lstrip()


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _cut_openings(frame: pd.DataFrame, prefix_chars: pd.Series) -> list[str]:
    """Texts with the shared human opening of continuation-style pairs removed from both
    sides. ``prefix_chars``: the recorded opening length of machine continuations (NaN
    elsewhere); MixSet completions get theirs from the common prefix with the original."""
    texts = frame["text"].tolist()
    groups = frame["group"].tolist()
    prefix = prefix_chars.to_numpy(dtype=float).copy()
    machine = frame["label"].eq(1).to_numpy()
    mixset_humans = frame["dataset"].eq("mixset").to_numpy() & ~machine
    originals = {groups[i]: texts[i] for i in np.flatnonzero(mixset_humans)}
    for i in np.flatnonzero(frame["edit"].eq("llm_complete_of_human").to_numpy()):
        if groups[i] in originals:
            prefix[i] = _common_prefix(originals[groups[i]], texts[i])
    cut = machine & (np.nan_to_num(prefix) > 0)
    for i in np.flatnonzero(cut):
        texts[i] = _cut_at_word(texts[i], int(prefix[i]))
    # Paired human texts of continuation sets lose the same opening (the shortest cut of their
    # group), so that "starts at the beginning of a document" does not mean human.
    continuation = cut & frame["dataset"].isin(["fastdetect_glimpse", "seqxgpt_doc_ood"]).to_numpy()
    shortest: dict[str, float] = {}
    for i in np.flatnonzero(continuation):
        shortest[groups[i]] = min(shortest.get(groups[i], np.inf), prefix[i])
    for i in np.flatnonzero(~machine):
        if groups[i] in shortest:
            texts[i] = _cut_at_word(texts[i], int(shortest[groups[i]]))
    return texts


# ------------------------------------------------------------------ loading
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
                "raw_generator": "ChatGPT" if machine else "human",
                "domain": "gpturk_medical_summary",
                "group": f"gpturk:{row['HITId']}",
                "edit": "none",
                "source_split": name.removesuffix(".json"),
            }


def _record(dataset: str, line: int, row: dict) -> dict:
    return {
        "id": f"{dataset}:{line}",
        "dataset": dataset,
        "text": row["text"],
        "label": int(row["label"] == "machine"),
        "generator": normalise_generator(row["generator"]),
        "raw_generator": row["generator"],
        "domain": _domain(dataset, row),
        "group": _group_key(dataset, row, line),
        "edit": row.get("edit") or "none",
        "levenshtein": row.get("levenshtein_distance"),
        "prefix_chars": row.get("human_prefix_chars"),
        "artefact": bool(row.get("abstract_lowercased_tokenized")),
        "source_split": "",
    }


def load_corpus(root: Path | None = None, clean: bool = True) -> pd.DataFrame:
    """All labelled texts: columns id, dataset, source, text, label (1 = LLM), train_label
    (the label policy's training label, NaN = not trained on), generator, raw_generator,
    domain, group, edit, edit_tier, split. Evaluation-only domains get split ``eval``."""
    root = root or datasets_dir()
    records = [
        _record(path.parent.name, line, row)
        for path in sorted(root.glob("*/*.jsonl"))
        for line, row in _jsonl_rows(path)
    ]
    if (root / "gpturk").is_dir():
        records.extend(_gpturk_rows(root / "gpturk"))
    frame = pd.DataFrame.from_records(records)
    for column, default in (("levenshtein", np.nan), ("prefix_chars", np.nan), ("artefact", False)):
        frame[column] = frame[column].fillna(default) if column in frame else default
    frame["artefact"] = frame["artefact"].astype(bool)
    frame["source"] = frame["dataset"].map(lambda d: SOURCE_OF_DATASET.get(d, d))
    if clean:
        frame["text"] = [strip_artefacts(t) for t in _cut_openings(frame, frame["prefix_chars"].astype(float))]
    frame["edit_tier"] = [
        edit_tier(label, edit, lev)
        for label, edit, lev in zip(frame["label"], frame["edit"], frame["levenshtein"], strict=True)
    ]
    frame["train_label"] = _training_label(frame)
    frame["split"] = frame["group"].map(split_of)
    frame.loc[frame["domain"].isin(EVALUATION_ONLY_DOMAINS), "split"] = "eval"
    frame = frame[frame["text"].str.strip().str.len() > 0]
    return frame.drop(columns=["prefix_chars"]).reset_index(drop=True)


def _domain(dataset: str, row: dict) -> str:
    if dataset == "hc3_plus_si":
        return "hc3_plus_si_mixed"
    return row["domain"]


# ------------------------------------------------------------------ sampling and weights
CELL = ["dataset", "domain", "generator", "edit"]


def stratified_sample(
    corpus: pd.DataFrame,
    cap: int = 500,
    large_cells: dict[str, int] | None = None,
    human_factor: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """At most ``cap`` rows per (data set, domain, generator) cell, spread evenly over the
    cell's edit kinds, so that no single source dominates; evaluation-only domains are kept
    whole. ``large_cells`` sets the cap per data set where it differs (default: 4x for
    hc3_plus_si and tweepfake, single-cell sets). Human cells take ``human_factor`` times
    their cap: one human cell faces many generator cells, and false positives are measured
    on it."""
    large_cells = {"hc3_plus_si": 4 * cap, "tweepfake": 4 * cap} if large_cells is None else large_cells
    parts = []
    for (dataset, _, generator), cell in corpus.groupby(["dataset", "domain", "generator"], sort=True):
        limit = large_cells.get(str(dataset), cap) * (human_factor if generator == "human" else 1)
        if (cell["split"] == "eval").all():
            limit = len(cell)
        shuffled = cell.sample(frac=1.0, random_state=seed)
        turn = shuffled.groupby("edit", sort=False).cumcount()
        parts.append(shuffled.iloc[np.argsort(turn.to_numpy(), kind="stable")[:limit]])
    return pd.concat(parts).sort_values("id").reset_index(drop=True)


def training_sample(corpus: pd.DataFrame, cap: int = 30, seed: int = 0) -> pd.DataFrame:
    """The sample the default model is trained on and the detection benchmark measures: at most
    ``cap`` texts per cell (4x for the single-cell hc3_plus_si and tweepfake, half for the
    20-domain l2r_rewrites and its APT-Eval cousins), twice that for human cells."""
    large = {"hc3_plus_si": 4 * cap, "tweepfake": 4 * cap, "l2r_rewrites": cap // 2, "apt_eval_polish": cap // 2}
    return stratified_sample(corpus, cap, large_cells=large, human_factor=2, seed=seed)


def counterpart_humans(frame: pd.DataFrame, dataset: str, domain: str | None = None) -> pd.Series:
    """Mask of the human rows that stand in for a machine-only cell's missing humans."""
    cells = COUNTERPARTS.get((dataset, domain), ())
    mask = pd.Series(False, index=frame.index)
    for human_dataset, human_domain in cells:
        mask |= frame["dataset"].eq(human_dataset) & frame["domain"].eq(human_domain) & frame["label"].eq(0)
    return mask


def training_weights(frame: pd.DataFrame) -> np.ndarray:
    """Sample weights under which every source carries the same total weight, split evenly
    between its human and its LLM texts, and within each half evenly over its (data set,
    domain, generator, edit) cells. A machine-only cell's human half is made of its
    counterparts (``COUNTERPARTS``), so that no data set, domain or kind of text is all
    machine in the weighted data. Rows with a NaN ``train_label`` get weight 0."""
    usable = frame["train_label"].notna().to_numpy()
    weight = np.zeros(len(frame))
    strata: list[tuple[np.ndarray, np.ndarray]] = []  # (human rows, machine rows) per stratum
    for source, part in frame[usable].groupby("source"):
        in_source = frame["source"].eq(source).to_numpy() & usable
        machine = in_source & frame["train_label"].eq(1).to_numpy()
        human = in_source & frame["train_label"].eq(0).to_numpy()
        for (dataset, domain), _ in part.groupby(["dataset", "domain"]):
            for key in ((dataset, domain), (dataset, None)):
                if key in COUNTERPARTS:
                    human |= counterpart_humans(frame, *key).to_numpy() & usable
        strata.append((human, machine))
    for human, machine in strata:
        for rows in (human, machine):
            if not rows.any():
                continue
            cells = frame.loc[rows, CELL].astype(str).agg("|".join, axis=1)
            per_row = 1.0 / (2 * cells.nunique() * cells.map(cells.value_counts()))
            weight[np.flatnonzero(rows)] += per_row.to_numpy()
    total = weight.sum()
    return weight * (usable.sum() / total) if total else weight
