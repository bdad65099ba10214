"""Are the audit's prevalence estimates right for a vendor doing one task? Vendors with known
LLM shares, audited three ways: with the embedded defaults, with task references, and with
a human reference only.

    python benchmarks/prevalence.py [--replicates 4] [--work out/prevalence-bench]

Tasks are the data set x domain cells of the *test* split of ../shared/datasets (texts never
used to train the shipped model or to set and measure its calibration) with at least 120
human and 150 LLM-written texts under the label policy; at most 300 human and 250 LLM texts
of each are scored once with ``auditor score`` (the product's scoring path, cached in
``--work``). For each task and replicate, 100 human + 100 LLM texts are drawn as the task's
references; vendors (true shares 0, 5, 10, 25, 50%; n = 200 and 500) are drawn from the
task's remaining texts (with replacement where a cell needs more texts than remain).
Each vendor is then estimated by the audit's own :class:`auditor.estimate.Estimator` (built as
``auditor audit`` builds it, its ``vendor()`` called as the audit calls it per vendor) in three
modes:

* defaults: the shipped calibration only;
* task references: 100 human + 100 LLM texts of the task (disjoint from the vendor's rows);
* human reference only: the 100 human texts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.calibration import load_calibration  # noqa: E402
from auditor.corpus import load_corpus  # noqa: E402
from auditor.estimate import Estimator  # noqa: E402
from detectors.bundle import default_bundle_dir  # noqa: E402

SHARES = (0.0, 0.05, 0.10, 0.25, 0.50)
SIZES = (200, 500)
REFERENCE_TEXTS = 100
MIN_HUMAN, MIN_MACHINE = 120, 150
CAP_HUMAN, CAP_MACHINE = 300, 250
MIN_CLEAN_HUMAN = 80
NON_NATIVE_ESSAYS = "toefl_essay_nonnative"
LEVEL = 0.9
HISTOGRAMS_ONLY = "task references, histograms only"


def task_pool(work: Path, split: str = "test") -> pd.DataFrame:
    """The scored texts of every task of ``split`` (scored once, then read from ``work``): the
    cells with enough human and LLM texts (``kind`` "task") and, for clean vendors, the cells
    with enough human texts only (``kind`` "clean"; for the test split also the non-native
    essays, an evaluation-only register)."""
    scored = work / "pool_scored.parquet"
    if not scored.exists():
        pool = _pool_texts(split)
        work.mkdir(parents=True, exist_ok=True)
        pool.to_parquet(work / "pool.parquet", index=False)
        command = [sys.executable, "-m", "auditor.cli", "score", str(work / "pool.parquet"), "--text-col", "text"]
        subprocess.run([*command, "--out", str(scored)], check=True)
    pool = pd.read_parquet(scored)
    return pool[pool["llm_probability"].notna()]


def _pool_texts(split: str) -> pd.DataFrame:
    corpus = load_corpus()
    usable = corpus["train_label"].notna() & (corpus["text"].str.strip().str.len() >= 3)
    cells = corpus[usable & (corpus["split"] == split)]
    counts = cells.groupby(["dataset", "domain", "train_label"]).size().unstack(fill_value=0)
    is_task = (counts[0.0] >= MIN_HUMAN) & (counts[1.0] >= MIN_MACHINE)
    is_clean = ~is_task & (counts[0.0] >= MIN_CLEAN_HUMAN)
    parts = []
    for (dataset, domain), task in is_task.items():
        if not (task or is_clean[(dataset, domain)]):
            continue
        cell = cells[(cells["dataset"] == dataset) & (cells["domain"] == domain)].sample(frac=1.0, random_state=0)
        human = cell[cell["train_label"] == 0].head(CAP_HUMAN).assign(kind="task" if task else "clean")
        parts += [human, cell[cell["train_label"] == 1].head(CAP_MACHINE).assign(kind="task")] if task else [human]
    if split == "test":
        essays = corpus[usable & (corpus["domain"] == NON_NATIVE_ESSAYS) & (corpus["train_label"] == 0)]
        parts.append(essays.assign(kind="clean"))
    pool = pd.concat(parts)[["id", "dataset", "domain", "text", "train_label", "generator", "kind"]]
    pool["task"] = pool["dataset"] + "/" + pool["domain"]
    pool["id"] = pool["id"].astype(str)
    return pool


def vendors_of(task: pd.DataFrame, replicates: int, rng: np.random.Generator):
    """(references, vendor) pairs: the references drawn first, the vendors from what is left."""
    for replicate in range(replicates):
        shuffled = task.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
        human, machine = shuffled[shuffled["train_label"] == 0], shuffled[shuffled["train_label"] == 1]
        references = (human.head(REFERENCE_TEXTS), machine.head(REFERENCE_TEXTS))
        rest_h, rest_m = human.iloc[REFERENCE_TEXTS:], machine.iloc[REFERENCE_TEXTS:]
        for share in SHARES:
            for size in SIZES:
                n_llm = int(round(share * size))
                rows = pd.concat([_draw(rest_m, n_llm, rng), _draw(rest_h, size - n_llm, rng)])
                yield replicate, share, size, references, rows


def _draw(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return frame.iloc[rng.choice(len(frame), n, replace=n > len(frame))]


def estimate_vendor(vendor: pd.DataFrame, references, calibration) -> dict:
    probabilities = vendor["llm_probability"].to_numpy(dtype=float)
    human = references[0]["llm_probability"].to_numpy(dtype=float)
    machine = references[1]["llm_probability"].to_numpy(dtype=float)
    origins = {"human": "task", "machine": "task"}
    modes = {
        "defaults": Estimator.build(calibration, LEVEL),
        "task references": Estimator.build(calibration, LEVEL, human, machine, origins),
        "human reference only": Estimator.build(calibration, LEVEL, human, None, origins),
    }
    out = {mode: estimator.vendor(probabilities) for mode, estimator in modes.items()}
    # The previous estimator, for comparison: the mixture on histograms alone.
    with_references = modes["task references"]
    assert with_references.reference is not None
    histograms = replace(
        with_references, reference=replace(with_references.reference, human_scores=None, machine_scores=None)
    )
    out[HISTOGRAMS_ONLY] = histograms.vendor(probabilities)
    return out


def run(pool: pd.DataFrame, replicates: int, seed: int) -> pd.DataFrame:
    calibration = load_calibration(default_bundle_dir())
    rng = np.random.default_rng(seed)
    rows = []
    for task, part in pool[pool["kind"] == "task"].groupby("task"):
        for replicate, share, size, references, vendor in vendors_of(part, replicates, rng):
            for mode, est in estimate_vendor(vendor, references, calibration).items():
                headline = est.prevalence
                rows.append(
                    {
                        "task": task,
                        "replicate": replicate,
                        "share": share,
                        "size": size,
                        "mode": mode,
                        "estimate": headline.estimate,
                        "ci_low": headline.ci_low,
                        "ci_high": headline.ci_high,
                        "covers": headline.ci_low <= share <= headline.ci_high,
                        "error": abs(headline.estimate - share),
                        "consistent": est.fit.consistent if est.fit else None,
                        "p_value": est.fit.p_value if est.fit else None,
                        "lower_bound": est.lower_bound.bound if est.lower_bound else None,
                    }
                )
        print(f"{task}: done", flush=True)
    return pd.DataFrame(rows)


def _cpu() -> str:
    """Which CPU ran the estimation (the scores in ``--work`` may come from another session)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{name}, {'with' if 'avx512_bf16' in info else 'without'} AVX-512-BF16"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def markdown(results: pd.DataFrame, seconds: float, n_texts: int) -> str:
    lines = [
        f"_{results.task.nunique()} tasks, {int(results.groupby('mode').size().iloc[0])} vendors per mode, "
        f"{n_texts} scored texts; estimation {seconds:.0f} s; {_cpu()}._\n"
    ]
    defaults = results[results["mode"] == "defaults"]
    refs = results[results["mode"] == "task references"]
    human = results[results["mode"] == "human reference only"]

    lines += ["#### Defaults (no references): does the report know when its error rates do not hold?\n"]
    lines += [
        "| true share | n | interval covers | fit says inconsistent | covers or inconsistent | mean estimate |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for (share, size), part in defaults.groupby(["share", "size"]):
        flagged_unfit = part["consistent"].eq(False)
        lines.append(
            f"| {share:.0%} | {size} | {_pct(part.covers.mean())} | {_pct(flagged_unfit.mean())} | "
            f"{_pct((part.covers | flagged_unfit).mean())} | {part.estimate.mean():.3f} |"
        )
    unfit = defaults["consistent"].eq(False)
    lines.append(
        f"\nAll default vendors: interval covers the truth **{_pct(defaults.covers.mean())}**, fit verdict "
        f"inconsistent **{_pct(unfit.mean())}**, covers or inconsistent **{_pct((defaults.covers | unfit).mean())}** "
        f"(target ≥ 90%); of vendors judged consistent, {_pct(defaults[~unfit].covers.mean())} covered.\n"
    )
    lines.append(
        "| task | covers | inconsistent | covers or inconsistent |\n|---|---:|---:|---:|\n"
        + "\n".join(
            f"| {task} | {_pct(p.covers.mean())} | {_pct(p.consistent.eq(False).mean())} | "
            f"{_pct((p.covers | p.consistent.eq(False)).mean())} |"
            for task, p in defaults.groupby("task")
        )
        + "\n"
    )

    lines += ["#### Task references (100 human + 100 LLM texts of the task)\n"]
    lines += [
        "| true share | n | mean estimate | MAE | 90% coverage | fit inconsistent |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for (share, size), part in refs.groupby(["share", "size"]):
        lines.append(
            f"| {share:.0%} | {size} | {part.estimate.mean():.3f} | {part.error.mean():.3f} | "
            f"{_pct(part.covers.mean())} | {_pct(part.consistent.eq(False).mean())} |"
        )
    big, zero = refs[refs["size"] >= 500], refs[refs["share"] == 0]
    lines.append(
        f"\nTargets: MAE at n ≥ 500 **{big.error.mean():.3f}** (≤ 0.03); 90% coverage **{_pct(refs.covers.mean())}** "
        f"(≥ 85%); estimate at a true share of 0: mean **{zero.estimate.mean():.3f}**, max {zero.estimate.max():.3f} "
        "(≤ 0.02).\n"
    )
    previous = results[results["mode"] == HISTOGRAMS_ONLY]
    old_big = previous[previous["size"] >= 500]
    lines.append(
        f"The mixture on histograms alone (the previous estimator) on the same vendors: MAE at n ≥ 500 "
        f"{old_big.error.mean():.3f}, 90% coverage {_pct(previous.covers.mean())}, mean estimate at a share of 0 "
        f"{previous[previous['share'] == 0].estimate.mean():.3f}.\n"
    )
    by_task = previous[previous["size"] == 500].groupby("task").error.mean()
    lines.append(
        "| task | MAE (n = 500) | histograms alone | coverage |\n|---|---:|---:|---:|\n"
        + "\n".join(
            f"| {task} | {p[p['size'] == 500].error.mean():.3f} | {by_task[task]:.3f} | {_pct(p.covers.mean())} |"
            for task, p in refs.groupby("task")
        )
        + "\n"
    )

    lines += ["#### Human reference only (100 human texts of the task): the one-sided 90% lower bound\n"]
    lines += [
        "| true share | n | bound ≤ truth | mean bound | mean headline estimate |",
        "|---:|---:|---:|---:|---:|",
    ]
    for (share, size), part in human.groupby(["share", "size"]):
        lines.append(
            f"| {share:.0%} | {size} | {_pct((part.lower_bound <= part.share + 1e-9).mean())} | "
            f"{part.lower_bound.mean():.3f} | {part.estimate.mean():.3f} |"
        )
    held = (human.lower_bound <= human.share + 1e-9).mean()
    positive = human[human.share > 0]
    lines.append(
        f"\nThe bound is at or below the truth for **{_pct(held)}** of vendors (target ≥ 90%); where LLM text is "
        f"present it recovers on average {(positive.lower_bound / positive.share).mean():.0%} of the true share "
        f"({(positive.lower_bound > 0).mean():.0%} of those vendors get a bound above 0).\n"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "prevalence-bench")
    parser.add_argument("--split", default="test", help="the corpus split whose tasks are audited")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prevalence.md")
    args = parser.parse_args()
    pool = task_pool(args.work, args.split)
    started = time.time()
    results = run(pool, args.replicates, args.seed)
    results.to_csv(args.work / "results.csv", index=False)
    text = markdown(results, time.time() - started, len(pool))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
