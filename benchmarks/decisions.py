"""Can a vendor manager act on the verdicts? Decisions (`above`, `within`, `undetermined` a
tolerance) for vendors with known LLM shares, made by the audit's own Estimator and verdict rule.

    python benchmarks/decisions.py [--split test] [--replicates 4]

Vendors come from the scored pool of ``benchmarks/prevalence.py`` (the *test* split: texts never
used to train, calibrate or select anything; scored once with ``auditor score``):

* single-task vendors: one data set x domain cell, true LLM shares 0, 5, 10, 25, 50%, n = 200
  and 500, audited with the defaults and with 100 + 100 task references of the same cell;
* clean vendors of every human register that has no LLM counterpart large enough for a task,
  including the non-native (TOEFL) essays: up to 200 human texts, no LLM text;
* mixed vendors: items drawn across every task of the split (shares as above, n = 500).

Each vendor is decided at tolerances of 5% and 10% exactly as `auditor audit --tolerance` decides.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prevalence import LEVEL, REFERENCE_TEXTS, SHARES, _cpu, _draw, task_pool, vendors_of  # noqa: E402

from auditor.calibration import load_calibration  # noqa: E402
from auditor.estimate import Estimator  # noqa: E402
from auditor.estimate.estimator import AGREEMENT, FIT_MARGIN, G_TEST  # noqa: E402
from auditor.report.verdict import bounds_of, decide  # noqa: E402
from detectors.bundle import default_bundle_dir  # noqa: E402

TOLERANCES = (0.05, 0.10)
CLEAN_SIZE = 200
MIXED_SIZE = 500


def decisions(estimator: Estimator, scores: np.ndarray, share: float) -> dict:
    estimate = estimator.vendor(scores)
    at_least, at_most = bounds_of(estimate.n_scored, estimate.prevalence, estimate.lower_bound)
    row = {
        "covers": estimate.prevalence.ci_low <= share <= estimate.prevalence.ci_high,
        "estimate": estimate.prevalence.estimate,
        "at_least": at_least,
        "at_most": at_most,
        "fits": estimate.fit.consistent if estimate.fit else None,
    }
    for tolerance in TOLERANCES:
        row[f"decision@{tolerance:g}"] = decide(at_least, at_most, tolerance)
    return row


def _scores(frame: pd.DataFrame) -> np.ndarray:
    return frame["llm_probability"].to_numpy(dtype=float)


def run(
    pool: pd.DataFrame,
    replicates: int,
    seed: int,
    fit_test: str,
    fit_margin: float,
    references: bool = True,
    decisions: Callable[[Estimator, np.ndarray, float], dict] = decisions,
) -> pd.DataFrame:
    """One row per vendor audit; ``decisions`` makes the row (other benchmarks add columns)."""
    calibration = load_calibration(default_bundle_dir())

    def estimator(*references: np.ndarray) -> Estimator:
        return replace(Estimator.build(calibration, LEVEL, *references), fit_test=fit_test, fit_margin=fit_margin)

    defaults = estimator()
    rng = np.random.default_rng(seed)
    rows = []
    tasks = pool[pool["kind"] == "task"]
    for task, part in tasks.groupby("task"):
        for replicate, share, size, (human, machine), vendor in vendors_of(part, replicates, rng):
            base = {"kind": "single task", "task": task, "replicate": replicate, "share": share, "size": size}
            rows.append(base | {"references": "none"} | decisions(defaults, _scores(vendor), share))
            if references:
                with_refs = estimator(_scores(human), _scores(machine))
                rows.append(base | {"references": "100 + 100"} | decisions(with_refs, _scores(vendor), share))
    for register, part in pool[pool["kind"] == "clean"].groupby("task"):
        for replicate in range(replicates):
            vendor = part.sample(min(CLEAN_SIZE, len(part)), random_state=int(rng.integers(1 << 31)))
            base = {"kind": "clean register", "task": register, "replicate": replicate, "share": 0.0}
            rows.append(base | {"size": len(vendor), "references": "none"} | decisions(defaults, _scores(vendor), 0.0))
    human_all, machine_all = tasks[tasks["train_label"] == 0], tasks[tasks["train_label"] == 1]
    for replicate in range(replicates):
        for share in SHARES:
            n_llm = int(round(share * MIXED_SIZE))
            vendor = pd.concat([_draw(machine_all, n_llm, rng), _draw(human_all, MIXED_SIZE - n_llm, rng)])
            base = {"kind": "mixed tasks", "task": "all", "replicate": replicate, "share": share}
            rows.append(base | {"size": MIXED_SIZE, "references": "none"} | decisions(defaults, _scores(vendor), share))
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.0%}"


def markdown(results: pd.DataFrame, seconds: float, fit: str) -> str:
    lines = [
        f"_Fit test: {fit}. {len(results)} vendor audits ({results.task.nunique()} tasks and registers, {REFERENCE_TEXTS} + "
        f"{REFERENCE_TEXTS} task references where used); {seconds:.0f} s; {_cpu()}; level {LEVEL}._\n",
        "| vendors | references | tolerance | n | clean declared above (≤ 1%) | ≥ 25% declared above "
        "(≥ 60% / ≥ 90% with refs) | undetermined (≤ 30% without refs) | wrong side (within while ≥ 25%) "
        "| interval covers | fit rejects |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (kind, references), part in results.groupby(["kind", "references"], sort=False):
        for tolerance in TOLERANCES:
            decision = part[f"decision@{tolerance:g}"]
            clean, heavy = part.share == 0, part.share >= 0.25
            lines.append(
                f"| {kind} | {references} | {tolerance:.0%} | {len(part)} | "
                f"{_pct(decision[clean].eq('above').mean()) if clean.any() else 'n/a'} | "
                f"{_pct(decision[heavy].eq('above').mean()) if heavy.any() else 'n/a'} | "
                f"{_pct(decision.eq('undetermined').mean())} | "
                f"{_pct(decision[heavy].eq('within').mean()) if heavy.any() else 'n/a'} | "
                f"{_pct(part.covers.mean())} | {_pct(part.fits.eq(False).mean())} |"
            )
    lines += ["", "By true share (single-task vendors):", ""]
    single = results[results.kind == "single task"]
    lines += [
        "| references | true share | above @5% | undetermined @5% | within @5% | above @10% | undetermined @10% "
        "| within @10% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (references, share), part in single.groupby(["references", "share"], sort=False):
        cells = []
        for tolerance in TOLERANCES:
            decision = part[f"decision@{tolerance:g}"]
            cells += [_pct(decision.eq(d).mean()) for d in ("above", "undetermined", "within")]
        lines.append(f"| {references} | {share:.0%} | " + " | ".join(cells) + " |")
    clean = results[results.kind == "clean register"]
    lines += ["", "Clean registers (no LLM text), defaults:", ""]
    lines += ["| register | n | above @5% | undetermined @5% | mean at most |", "|---|---:|---:|---:|---:|"]
    for register, part in clean.groupby("task"):
        decision = part["decision@0.05"]
        lines.append(
            f"| {register} | {int(part['size'].iloc[0])} | {_pct(decision.eq('above').mean())} | "
            f"{_pct(decision.eq('undetermined').mean())} | {part.at_most.mean():.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test")
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fit-test", default=AGREEMENT, choices=[AGREEMENT, G_TEST])
    parser.add_argument("--fit-margin", type=float, default=FIT_MARGIN)
    parser.add_argument("--without-references", action="store_true", help="audit only with the defaults")
    args = parser.parse_args()
    work = args.work or ROOT / "out" / ("prevalence-bench" if args.split == "test" else "prevalence-bench-cal")
    pool = task_pool(work, args.split)
    started = time.time()
    results = run(pool, args.replicates, args.seed, args.fit_test, args.fit_margin, not args.without_references)
    fit = args.fit_test + (f", margin {args.fit_margin:g}" if args.fit_test == AGREEMENT else "")
    results.to_csv(work / f"decisions_{fit.replace(' ', '_').replace(',', '')}.csv", index=False)
    text = markdown(results, time.time() - started, fit)
    out = args.out or ROOT / "benchmarks" / "results" / f"decisions_{args.split}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
