"""A lever measured and not kept: locate a default vendor's human register from its own low
scores, and read its FPR off the calibration's human reference shifted there, instead of
allowing every vendor the 99th-percentile register shift (``UNFAMILIAR_FPR_SPREAD``).

    python benchmarks/register_location.py [--split calibration] [--quantile 0.1]

The vendor's ``quantile``-th logit score (its 95% upper confidence order statistic: LLM text
can only push it up, so the FPR errs on the cautious side) minus the same quantile of the
calibration's human reference is the shift; the FPR is the share of that reference above the
threshold once shifted. Vendors as in ``benchmarks/decisions.py`` (single-task, without
references; clean registers), compared on the flag-count interval's lower end.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logit
from scipy.stats import binom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decisions import CLEAN_SIZE, TOLERANCES  # noqa: E402
from prevalence import LEVEL, task_pool, vendors_of  # noqa: E402

from auditor.calibration import Calibration, load_calibration  # noqa: E402
from auditor.estimate import Estimator  # noqa: E402
from auditor.stats import prevalence_from_flags  # noqa: E402
from detectors.bundle import default_bundle_dir  # noqa: E402


def located_fpr(scores: np.ndarray, calibration: Calibration, quantile: float) -> float:
    reference = calibration.reference()
    assert reference is not None
    edges = reference.edges
    centres = np.concatenate([[edges[1] - 0.5], (edges[1:-2] + edges[2:-1]) / 2, [edges[-2] + 0.5]])
    human = reference.human_counts / reference.human_counts.sum()
    z = np.sort(logit(np.clip(scores, 1e-6, 1 - 1e-6)))
    upper = z[min(int(binom.ppf(0.95, len(z), quantile)), len(z) - 1)]
    shift = upper - centres[np.searchsorted(np.cumsum(human), quantile)]
    return float(human[centres + shift > logit(calibration.threshold)].sum())


def lower_ends(scores: np.ndarray, estimator: Estimator, quantile: float) -> dict:
    calibration, rates = estimator.calibration, estimator.rates
    k, n = int(calibration.flags(scores).sum()), len(scores)
    fpr = max(located_fpr(scores, calibration, quantile), rates.fpr)
    located = replace(rates, false_positives=int(round(fpr * rates.n_human)), fpr_spread=0.0)
    return {
        "located FPR": fpr,
        "floor": prevalence_from_flags(k, n, rates, LEVEL).ci_low,
        "located": prevalence_from_flags(k, n, located, LEVEL).ci_low,
    }


def run(pool: pd.DataFrame, quantile: float, replicates: int = 4, seed: int = 0) -> pd.DataFrame:
    estimator = Estimator.build(load_calibration(default_bundle_dir()), LEVEL)
    rng = np.random.default_rng(seed)
    rows = []
    for task, part in pool[pool["kind"] == "task"].groupby("task"):
        for _, share, _, _, vendor in vendors_of(part, replicates, rng):
            scores = vendor["llm_probability"].to_numpy(dtype=float)
            rows.append({"kind": "single task", "task": task, "share": share} | lower_ends(scores, estimator, quantile))
    for register, part in pool[pool["kind"] == "clean"].groupby("task"):
        for _ in range(replicates):
            vendor = part.sample(min(CLEAN_SIZE, len(part)), random_state=int(rng.integers(1 << 31)))
            scores = vendor["llm_probability"].to_numpy(dtype=float)
            rows.append(
                {"kind": "clean register", "task": register, "share": 0.0} | lower_ends(scores, estimator, quantile)
            )
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame, split: str, quantile: float) -> str:
    single, clean = results[results.kind == "single task"], results[results.kind == "clean register"]
    lines = [
        f"_Split: {split}; quantile {quantile}; {len(results)} vendors; level {LEVEL}._\n",
        "| lower end from | tolerance | clean declared above | clean registers declared above "
        "| ≥ 25% declared above | lower end above the truth |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for column in ("floor", "located"):
        for tolerance in TOLERANCES:
            lines.append(
                f"| {column} | {tolerance:.0%} | {(single[single.share == 0][column] > tolerance).mean():.0%} | "
                f"{(clean[column] > tolerance).mean():.0%} | {(single[single.share >= 0.25][column] > tolerance).mean():.0%} | "
                f"{(single[column] > single.share).mean():.0%} |"
            )
    by_share = results.groupby(["kind", "share"])["located FPR"].mean()
    lines += ["", "Mean located FPR: " + ", ".join(f"{k} {s:.0%}: {v:.1%}" for (k, s), v in by_share.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--quantile", type=float, default=0.1)
    args = parser.parse_args()
    work = ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    text = markdown(run(task_pool(work, args.split), args.quantile), args.split, args.quantile)
    (ROOT / "benchmarks" / "results" / f"register_location_{args.split}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
