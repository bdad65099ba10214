"""How far may the false-positive rate stray on a kind of human text the calibration never saw?
The floor on the FPR's between-register spread (``UNFAMILIAR_FPR_SPREAD`` in
auditor/estimate/estimator.py), chosen on the calibration split.

    python benchmarks/register_shift.py [--split calibration]

Human registers differ mostly in *where* they score: each register's logit scores are the pooled
within-register shape moved by a register effect. On the split's human texts (the scored pool of
``benchmarks/prevalence.py``), the register effects' SD gives the FPR at the threshold of a
register at the 95th and 99th percentile of that shift, and the logit spread of the FPR whose
95th percentile reaches it (what a 90% interval's lower end allows for). The target "at most 1%
of clean vendors declared above a tolerance" asks for the 99th percentile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logit
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prevalence import task_pool  # noqa: E402

from auditor.calibration import load_calibration  # noqa: E402
from detectors.bundle import default_bundle_dir  # noqa: E402

COVERAGES = (0.95, 0.99)


def register_effects(pool: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Each human register's median logit score, and every human text's logit score minus its
    register's median (the pooled within-register shape)."""
    human = pool[pool["train_label"] == 0]
    z = pd.Series(logit(human["llm_probability"].clip(1e-6, 1 - 1e-6)), index=human.index)
    location = z.groupby(human["task"]).median()
    return location, (z - human["task"].map(location)).to_numpy()


def shifted_register(location: pd.Series, coverage: float) -> float:
    """The median logit score of a register at the ``coverage`` percentile of the register effects."""
    return float(location.mean() + norm.ppf(coverage) * location.std(ddof=1))


def register_shift(pool: pd.DataFrame, threshold: float, fpr: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    human = pool[pool["train_label"] == 0]
    z = pd.Series(logit(human["llm_probability"].clip(1e-6, 1 - 1e-6)), index=human.index)
    location, within = register_effects(pool)
    registers = pd.DataFrame(
        {
            "n": human.groupby("task").size(),
            "median logit score": location,
            "FPR at threshold": (z > logit(threshold)).groupby(human["task"]).mean(),
        }
    )
    rows = []
    for coverage in COVERAGES:
        shifted = shifted_register(location, coverage)
        shifted_fpr = float((within + shifted > logit(threshold)).mean())
        spread = (logit(shifted_fpr) - logit(fpr)) / norm.ppf(0.95)
        rows.append({"register percentile": coverage, "FPR at threshold": shifted_fpr, "logit FPR spread": spread})
    return registers, pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    calibration = load_calibration(default_bundle_dir())
    rates = calibration.error_rates()
    registers, shifts = register_shift(task_pool(work, args.split), calibration.threshold, rates.fpr)
    location = registers["median logit score"]
    text = (
        f"_Split: {args.split}; threshold {calibration.threshold:.3f}; calibration FPR {rates.fpr:.2%} "
        f"({rates.false_positives}/{rates.n_human}); register effects: mean {location.mean():.2f}, "
        f"SD {location.std(ddof=1):.2f} (logit)._\n\n"
        + _markdown(registers.reset_index(names="register"))
        + "\n"
        + _markdown(shifts)
    )
    out = ROOT / "benchmarks" / "results" / f"register_shift_{args.split}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
