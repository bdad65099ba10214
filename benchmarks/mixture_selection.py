"""Selecting the point estimate used with task references (issue 21): candidate estimators of a
vendor's LLM share from its scores and 100 + 100 task reference texts, compared by mean absolute
error on vendors drawn from the *calibration* split's tasks (selection), then on the test split.

    python benchmarks/mixture_selection.py [--split calibration] [--replicates 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prevalence import task_pool, vendors_of  # noqa: E402

from auditor.calibration import load_calibration  # noqa: E402
from auditor.stats import ScoreReference, _mixture_mle, _to_logit  # noqa: E402
from detectors.bundle import default_bundle_dir  # noqa: E402


def kernel_mle(scores, human, machine, bandwidth=None) -> float:
    points = _to_logit(scores)
    h_kde, m_kde = gaussian_kde(_to_logit(human)), gaussian_kde(_to_logit(machine))
    if bandwidth is not None:
        h_kde.set_bandwidth(h_kde.factor * bandwidth)
        m_kde.set_bandwidth(m_kde.factor * bandwidth)
    h, m = h_kde(points) + 1e-300, m_kde(points) + 1e-300
    grid = np.linspace(0, 1, 1001)
    loglik = np.log((1 - grid[:, None]) * h[None, :] + grid[:, None] * m[None, :]).sum(axis=1)
    return float(grid[int(np.argmax(loglik))])


def histogram_mle(scores, human, machine) -> float:
    reference = ScoreReference.from_scores(human, machine)
    return _mixture_mle(reference.counts(scores), *reference.densities())


def corrected_flags(threshold):
    def estimate(scores, human, machine) -> float:
        fpr, tpr = (human > threshold).mean(), (machine > threshold).mean()
        return float(np.clip(((scores > threshold).mean() - fpr) / max(tpr - fpr, 1e-3), 0, 1))

    return estimate


def least_squares_cutoffs(cutoffs=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)):
    """The share fitting the vendor's shares above several cut-offs, each weighted by the
    inverse variance of its correction."""

    def estimate(scores, human, machine) -> float:
        t = np.asarray(cutoffs)
        s_v, s_h, s_m = ((x[:, None] > t).mean(axis=0) for x in (scores, human, machine))
        d = s_m - s_h
        var = (
            s_v * (1 - s_v) / len(scores) + s_h * (1 - s_h) / len(human) + 0.25 * s_m * (1 - s_m) / len(machine) + 1e-4
        ) / np.maximum(d, 1e-3) ** 2
        w = np.where(d > 0.1, 1 / var, 0.0)
        if w.sum() == 0:
            return float("nan")
        return float(np.clip(np.sum(w * (s_v - s_h) / np.maximum(d, 1e-3)) / w.sum(), 0, 1))

    return estimate


def averaged(*parts):
    def estimate(scores, human, machine) -> float:
        return float(np.mean([p(scores, human, machine) for p in parts]))

    return estimate


def candidates(threshold: float) -> dict:
    return {
        "histograms + kernel, averaged (today)": averaged(histogram_mle, kernel_mle),
        "histograms only": histogram_mle,
        "kernel only (Scott)": kernel_mle,
        "kernel, bandwidth x0.5": lambda s, h, m: kernel_mle(s, h, m, 0.5),
        "kernel, bandwidth x1.5": lambda s, h, m: kernel_mle(s, h, m, 1.5),
        "flags corrected at the threshold": corrected_flags(threshold),
        "least squares over 7 cut-offs": least_squares_cutoffs(),
        "kernel + least squares, averaged": averaged(kernel_mle, least_squares_cutoffs()),
        "histograms + kernel + least squares, averaged": averaged(histogram_mle, kernel_mle, least_squares_cutoffs()),
    }


def run(pool: pd.DataFrame, replicates: int, seed: int) -> pd.DataFrame:
    threshold = load_calibration(default_bundle_dir()).threshold
    methods = candidates(threshold)
    rng = np.random.default_rng(seed)
    rows = []
    for task, part in pool[pool["kind"] == "task"].groupby("task"):
        for replicate, share, size, (human, machine), vendor in vendors_of(part, replicates, rng):
            scores = vendor["llm_probability"].to_numpy(dtype=float)
            h = human["llm_probability"].to_numpy(dtype=float)
            m = machine["llm_probability"].to_numpy(dtype=float)
            for name, method in methods.items():
                estimate = method(scores, h, m)
                rows.append(
                    dict(
                        task=task, replicate=replicate, share=share, size=size, method=name, error=abs(estimate - share)
                    )
                )
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame, split: str) -> str:
    lines = [
        f"_Vendors from the {split} split's tasks: {results.task.nunique()} tasks, "
        f"{len(results) // results.method.nunique()} vendors per method; 100 + 100 task references._\n",
        "| method | MAE, n ≥ 500 | MAE, n = 200 | worst task's MAE (n = 500) | MAE at share 0 |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, part in results.groupby("method", sort=False):
        big = part[part["size"] >= 500]
        lines.append(
            f"| {method} | {big.error.mean():.4f} | {part[part['size'] == 200].error.mean():.4f} | "
            f"{big.groupby('task').error.mean().max():.3f} | {part[part.share == 0].error.mean():.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    results = run(task_pool(work, args.split), args.replicates, args.seed)
    text = markdown(results, args.split)
    (ROOT / "benchmarks" / "results" / f"mixture_selection_{args.split}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
