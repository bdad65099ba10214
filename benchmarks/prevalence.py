"""Are the audit's prevalence estimates right? Synthetic vendors with known LLM shares.

    python benchmarks/prevalence.py [--replicates 8] [--pool-per-source N] [--out benchmarks/results/prevalence.md]

Vendors are built from the *test* split of ../shared/datasets (texts never used to train
the shipped model or to set and measure its calibration), with LLM shares 0, 2, 5, 10,
25, 50% and sizes 50, 200, 500, 2000, ``--replicates`` vendors per cell, in two scenarios:

* mixed:  each vendor's texts drawn from all test-split datasets and domains;
* single-source: each vendor's texts from one dataset (a vendor doing one kind of task),
  so the detector's error rates differ from the calibration's average.

All vendors go into one delivery file that is audited with the real command
(``auditor audit``, in a subprocess). Reported per cell: mean absolute error of
``prevalence.estimate``, coverage of its interval, and the same for the score-mixture
estimate and for the naive flag rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import load_corpus  # noqa: E402

SHARES = (0.0, 0.02, 0.05, 0.10, 0.25, 0.50)
SIZES = (50, 200, 500, 2000)
SOURCES = ("worker_vs_gpt", "l2r_rewrites", "hc3_plus_si", "hc3_partial")


def build_vendors(pool: pd.DataFrame, replicates: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []

    def draw(frame: pd.DataFrame, n: int) -> list[str]:
        return frame["text"].to_numpy(dtype=object)[rng.choice(len(frame), n, replace=n > len(frame))].tolist()

    for scenario in ("mixed", "single-source"):
        for share in SHARES:
            for size in SIZES:
                for r in range(replicates):
                    part = pool if scenario == "mixed" else pool[pool["dataset"] == SOURCES[r % len(SOURCES)]]
                    n_llm = int(round(share * size))
                    texts = draw(part[part.label == 1], n_llm) + draw(part[part.label == 0], size - n_llm)
                    vendor = f"{scenario}|{share}|{size}|{r}"
                    rows += [{"vendor": vendor, "text": t} for t in texts]
    frame = pd.DataFrame(rows)
    frame.insert(0, "id", [f"v{i}" for i in range(len(frame))])
    return frame


def summarise(report: dict) -> pd.DataFrame:
    rows = []
    for vendor in report["vendors"]:
        scenario, share, size, _ = vendor["vendor"].split("|")
        truth = float(share)
        row = {"scenario": scenario, "share": truth, "size": int(size)}
        for name, key in (
            ("prevalence", "prevalence"),
            ("mixture", "prevalence_score_mixture"),
            ("flag_rate", "flag_rate"),
        ):
            estimate = vendor[key]
            row[f"{name}_error"] = abs(estimate["estimate"] - truth)
            row[f"{name}_covers"] = estimate["ci_low"] <= truth <= estimate["ci_high"]
            row[f"{name}_estimate"] = estimate["estimate"]
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame) -> str:
    lines = []
    for scenario, part in results.groupby("scenario", sort=False):
        table = part.groupby(["share", "size"]).agg(
            n=("prevalence_error", "size"),
            prevalence_mean=("prevalence_estimate", "mean"),
            prevalence_mae=("prevalence_error", "mean"),
            prevalence_coverage=("prevalence_covers", "mean"),
            mixture_mae=("mixture_error", "mean"),
            mixture_coverage=("mixture_covers", "mean"),
            flag_mae=("flag_rate_error", "mean"),
            flag_coverage=("flag_rate_covers", "mean"),
        )
        lines.append(f"\n#### {scenario} vendors\n")
        lines.append(
            "| true share | n | vendors | mean estimate | MAE | 90% coverage | mixture MAE | mixture coverage | naive flag-rate MAE | flag-rate coverage |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (share, size), r in table.iterrows():
            lines.append(
                f"| {share:.0%} | {size} | {r.n} | {r.prevalence_mean:.3f} | {r.prevalence_mae:.3f} | {r.prevalence_coverage:.0%} | "
                f"{r.mixture_mae:.3f} | {r.mixture_coverage:.0%} | {r.flag_mae:.3f} | {r.flag_coverage:.0%} |"
            )
        big = part[part["size"] >= 500]
        zero = part[part["share"] == 0]
        lines.append(
            f"\nTargets ({scenario}): MAE at n >= 500 = **{big.prevalence_error.mean():.3f}** (target <= 0.03; mixture "
            f"{big.mixture_error.mean():.3f}); coverage = **{part.prevalence_covers.mean():.0%}** (target >= 85%; mixture "
            f"{part.mixture_covers.mean():.0%}); max estimate at share 0 = **{zero.prevalence_estimate.max():.3f}** "
            f"(target <= 0.02; mixture {zero.mixture_estimate.max():.3f})."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument(
        "--pool-per-source",
        type=int,
        default=None,
        help="draw vendors from at most this many distinct texts per data set and label (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "prevalence-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prevalence.md")
    args = parser.parse_args()
    corpus = load_corpus()
    pool = corpus[(corpus["split"] == "test") & (corpus["text"].str.strip().str.len() >= 3)]
    if args.pool_per_source:
        pool = pool.sample(frac=1.0, random_state=args.seed).groupby(["dataset", "label"]).head(args.pool_per_source)
    delivery = build_vendors(pool, args.replicates, args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    delivery.to_parquet(args.work / "delivery.parquet", index=False)
    print(
        f"{delivery.vendor.nunique()} vendors, {len(delivery)} rows, {delivery.text.nunique()} distinct texts",
        flush=True,
    )
    started = time.time()
    command = [
        sys.executable,
        "-m",
        "auditor.cli",
        "audit",
        str(args.work / "delivery.parquet"),
        "--text-col",
        "text",
        "--vendor-col",
        "vendor",
        "--id-col",
        "id",
        "--out",
        str(args.work / "audit"),
        "--no-resume",
    ]
    subprocess.run(command, check=True)
    report = json.loads((args.work / "audit" / "report.json").read_text())
    results = summarise(report)
    results.to_csv(args.work / "results.csv", index=False)
    text = markdown(results) + f"\n_{len(delivery)} rows audited in {time.time() - started:.0f} s._\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
