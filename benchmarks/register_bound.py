"""A lever measured and not kept: a lower bound on a default vendor's LLM share that needs no
LLM-written reference, read against the human register a clean vendor could at worst be.

    python benchmarks/register_bound.py [--split calibration]

Without task references the verdict's lower end allows for any human register up to the 99th
percentile of the register shift (``benchmarks/register_shift.py``). The same register (the
pooled within-register shape of the split's human texts, moved to the register effect at that
percentile) also gives a lower bound that needs no true-positive rate at all: at a cut-off t the
LLM share is at least (S_vendor(t) - S_register(t)) / (1 - S_register(t)), S = share above t.
Two ways to pick t, each at 95% one-sided: every cut-off with the Dvoretzky-Kiefer-Wolfowitz
slack (``auditor.stats.prevalence_lower_bound``, the register as its human reference), and three
fixed cut-offs (the threshold, 0.95, 0.99) with Clopper-Pearson bounds and a Bonferroni split.
Vendors and decisions exactly as ``benchmarks/decisions.py`` (without task references); the
verdict's "at least" becomes the larger of its own and the bound. Shown for the target's 99th
percentile register and, for scale, the 95th.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import beta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decisions import TOLERANCES, decisions  # noqa: E402
from decisions import run as run_decisions  # noqa: E402
from prevalence import LEVEL, _cpu, task_pool  # noqa: E402
from register_shift import register_effects, shifted_register  # noqa: E402

from auditor.estimate import Estimator  # noqa: E402
from auditor.estimate.estimator import AGREEMENT, FIT_MARGIN  # noqa: E402
from auditor.report.verdict import decide  # noqa: E402
from auditor.stats import prevalence_lower_bound  # noqa: E402

COVERAGES = (0.99, 0.95)
FIXED_CUTS = (None, 0.95, 0.99)  # None: the calibration's threshold
ALPHA = (1 - LEVEL) / 2


def register_scores(within: np.ndarray, median: float) -> np.ndarray:
    """A register's human scores (probabilities): the within-register shape at ``median``."""
    return expit(within + median)


def dkw_bound(scores: np.ndarray, register: np.ndarray) -> float:
    bound = prevalence_lower_bound(scores, register, LEVEL)
    return bound.bound if bound is not None else 0.0


def fixed_cut_bound(scores: np.ndarray, register: np.ndarray, threshold: float) -> float:
    best = 0.0
    for cut in (threshold if c is None else c for c in FIXED_CUTS):
        k = int((scores > cut).sum())
        low = 0.0 if k == 0 else float(beta.ppf(ALPHA / len(FIXED_CUTS), k, len(scores) - k + 1))
        human = float((register > cut).mean())
        best = max(best, (low - human) / (1 - human))
    return best


def with_bounds(registers: dict[float, np.ndarray]) -> Callable[[Estimator, np.ndarray, float], dict]:
    def row(estimator: Estimator, scores: np.ndarray, share: float) -> dict:
        out = decisions(estimator, scores, share)
        for coverage, register in registers.items():
            out[f"dkw@{coverage:g}"] = dkw_bound(scores, register)
            out[f"fixed@{coverage:g}"] = fixed_cut_bound(scores, register, estimator.calibration.threshold)
        return out

    return row


def markdown(results: pd.DataFrame, split: str, seconds: float, registers: str) -> str:
    lines = [
        f"_Split: {split}; {len(results)} default vendor audits; {registers}; {seconds:.0f} s; {_cpu()}; "
        f"level {LEVEL}._\n",
        "| at least from | register percentile | tolerance | clean declared above (≤ 1%) | ≥ 25% declared above "
        "| 25% declared above | 50% declared above | undetermined |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    single = results.kind == "single task"
    clean = results.share == 0
    variants = [("the verdict (now)", None, None)] + [
        (name, coverage, f"{column}@{coverage:g}")
        for coverage in COVERAGES
        for name, column in (("+ DKW bound", "dkw"), ("+ fixed cut-offs", "fixed"))
    ]
    for name, coverage, column in variants:
        at_least = results["at_least"] if column is None else np.maximum(results["at_least"], results[column])
        for tolerance in TOLERANCES:
            decision = pd.Series(
                [decide(low, high, tolerance) for low, high in zip(at_least, results["at_most"], strict=True)],
                index=results.index,
            )
            above = decision.eq("above")
            lines.append(
                f"| {name} | {'n/a' if coverage is None else f'{coverage:.0%}'} | {tolerance:.0%} | "
                f"{above[clean].mean():.0%} | {above[single & (results.share >= 0.25)].mean():.0%} | "
                f"{above[single & (results.share == 0.25)].mean():.0%} | "
                f"{above[single & (results.share == 0.5)].mean():.0%} | "
                f"{decision[single].eq('undetermined').mean():.0%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--replicates", type=int, default=4)
    args = parser.parse_args()
    work = ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    pool = task_pool(work, args.split)
    location, within = register_effects(pool)
    registers = {c: register_scores(within, shifted_register(location, c)) for c in COVERAGES}
    started = time.time()
    results = run_decisions(
        pool, args.replicates, 0, AGREEMENT, FIT_MARGIN, references=False, decisions=with_bounds(registers)
    )
    described = (
        f"{len(location)} human registers, {len(within)} texts; register effects mean {location.mean():.2f}, "
        f"SD {location.std(ddof=1):.2f} (logit)"
    )
    text = markdown(results, args.split, time.time() - started, described)
    (ROOT / "benchmarks" / "results" / f"register_bound_{args.split}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
