"""Selecting the human-reference-only lower bound (issue 21): candidate one-sided bounds on a
vendor's LLM share from its scores and 100 human texts of its task, compared on vendors drawn
from the *calibration* split's tasks (selection), then the chosen one on the test split.

    python benchmarks/lower_bound_selection.py [--split calibration] [--replicates 4]

Every candidate rests on the same identity: at any cut-off t, the LLM share is at least
(S_vendor(t) - S_human(t)) / (1 - S_human(t)) >= S_vendor(t) - S_human(t), S = share above t.
They differ in how the two shares' sampling error and the choice among cut-offs are paid for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prevalence import LEVEL, task_pool, vendors_of  # noqa: E402

from auditor.stats import _clopper_pearson  # noqa: E402

LOWER_BOUND_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)  # the bound before this selection


def bonferroni_clopper_pearson(scores, human, level):
    """One-sided Clopper-Pearson bounds on both shares at 8 fixed cut-offs, Bonferroni over
    cut-offs and samples (the bound shipped before; DKW replaced it)."""
    alpha_each = (1 - level) / (2 * len(LOWER_BOUND_THRESHOLDS))
    best = 0.0
    for t in LOWER_BOUND_THRESHOLDS:
        vendor_low = _clopper_pearson(int((scores > t).sum()), len(scores), alpha_each)[0]
        human_high = _clopper_pearson(int((human > t).sum()), len(human), alpha_each)[1]
        if human_high < 1:
            best = max(best, (vendor_low - human_high) / (1 - human_high))
    return best


def dkw(scores, human, level):
    """Simultaneous over every cut-off (Dvoretzky-Kiefer-Wolfowitz, one-sided, alpha split in two)."""
    alpha = (1 - level) / 2
    eps_v, eps_h = (np.sqrt(np.log(1 / alpha) / (2 * len(x))) for x in (scores, human))
    cuts = np.unique(np.concatenate([scores, human]))
    s_v = 1 - np.searchsorted(np.sort(scores), cuts, side="right") / len(scores)
    s_h = 1 - np.searchsorted(np.sort(human), cuts, side="right") / len(human)
    high_h = np.minimum(s_h + eps_h, 1 - 1e-9)
    return float(max(0.0, ((s_v - eps_v - high_h) / (1 - high_h)).max()))


def newcombe(thresholds):
    """Per cut-off a one-sided Newcombe (hybrid score) bound on S_vendor - S_human, Bonferroni
    over the cut-offs."""

    def bound(scores, human, level):
        alpha_each = (1 - level) / len(thresholds)
        best = 0.0
        for t in thresholds:
            low, _ = confint_proportions_2indep(
                int((scores > t).sum()),
                len(scores),
                int((human > t).sum()),
                len(human),
                method="newcomb",
                compare="diff",
                alpha=2 * alpha_each,
            )
            best = max(best, float(low))
        return best

    return bound


def bootstrap_max(thresholds, draws=400):
    """Studentised-max bootstrap: simultaneous bounds on S_vendor(t) - S_human(t) over the
    cut-offs, with the correlation between cut-offs paid for once."""

    def bound(scores, human, level):
        rng = np.random.default_rng(0)
        t = np.asarray(thresholds)

        def diff(v, h):
            s_v = (v[:, None] > t).mean(axis=0)
            s_h = (h[:, None] > t).mean(axis=0)
            n_v, n_h = len(v), len(h)
            # Jeffreys-smoothed variances: a zero count still has sampling error
            p_v, p_h = (s_v * n_v + 0.5) / (n_v + 1), (s_h * n_h + 0.5) / (n_h + 1)
            return s_v - s_h, np.sqrt(p_v * (1 - p_v) / n_v + p_h * (1 - p_h) / n_h)

        observed, se = diff(scores, human)
        maxima = np.empty(draws)
        for b in range(draws):
            d, s = diff(rng.choice(scores, len(scores)), rng.choice(human, len(human)))
            maxima[b] = ((d - observed) / s).max()
        c = np.quantile(maxima, level)
        return float(max(0.0, (observed - c * se).max()))

    return bound


CANDIDATES = {
    "Clopper-Pearson, Bonferroni over 8 cut-offs and 2 samples (today)": bonferroni_clopper_pearson,
    "DKW bands, every cut-off (chosen)": dkw,
    "Newcombe difference, Bonferroni over 8 cut-offs": newcombe(LOWER_BOUND_THRESHOLDS),
    "Newcombe difference, Bonferroni over 3 cut-offs (0.5, 0.9, 0.98)": newcombe((0.5, 0.9, 0.98)),
    "Newcombe difference, 2 cut-offs (0.8, 0.98)": newcombe((0.8, 0.98)),
    "studentised-max bootstrap over 8 cut-offs": bootstrap_max(LOWER_BOUND_THRESHOLDS),
}


def run(pool: pd.DataFrame, replicates: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for task, part in pool[pool["kind"] == "task"].groupby("task"):
        for replicate, share, size, references, vendor in vendors_of(part, replicates, rng):
            scores = vendor["llm_probability"].to_numpy(dtype=float)
            human = references[0]["llm_probability"].to_numpy(dtype=float)
            for name, candidate in CANDIDATES.items():
                bound = candidate(scores, human, LEVEL)
                rows.append(dict(task=task, replicate=replicate, share=share, size=size, method=name, bound=bound))
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame, split: str) -> str:
    lines = [
        f"_Vendors from the {split} split's tasks: {results.task.nunique()} tasks, "
        f"{len(results) // results.method.nunique()} vendors per method; 100 human reference texts; level {LEVEL}._\n",
        "| method | bound ≤ truth | worst share's bound ≤ truth | recovered share (mean of bound / truth) | "
        "at 10% | at 25% | at 50% |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, part in results.groupby("method", sort=False):
        held = part.bound <= part.share + 1e-9
        worst = held.groupby(part.share).mean().min()
        positive = part[part.share > 0]
        by_share = (positive.bound / positive.share).groupby(positive.share).mean()
        lines.append(
            f"| {method} | {held.mean():.0%} | {worst:.0%} | {(positive.bound / positive.share).mean():.0%} | "
            f"{by_share.get(0.10, np.nan):.0%} | {by_share.get(0.25, np.nan):.0%} | {by_share.get(0.5, np.nan):.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    results = run(task_pool(work, args.split), args.replicates, args.seed)
    text = markdown(results, args.split)
    out = args.out or ROOT / "benchmarks" / "results" / f"lower_bound_selection_{args.split}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
