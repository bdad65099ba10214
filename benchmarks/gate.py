"""Does the pre-training gate decide right, at what cost, and how fast on a big shard?

    python benchmarks/gate.py [--replicates 10] [--shard-docs 20000] [--single-docs 5000] [--lm-max-scored 1000]
                              [--big-docs 1000000] [--audit-rows 120] [--out benchmarks/results/gate.md]

1. Decisions. Shards of ``--shard-docs`` documents drawn from the *test* split of
   ../shared/datasets (never used to train or calibrate the fast model), with LLM-written
   shares 0, 2, 5, 10 and 25%, ``--replicates`` shards each; half of the shards also carry
   planted evaluation items (5 per shard, from the calibration split of HC3, embedded in
   the middle of longer documents). Every shard goes through the real command
   (``auditor gate --max-synthetic 0.05 --benchmark-index ...``, a subprocess). Reported
   per share: rejection rate, documents scored per decision, share estimate error, and
   the leakage recall on planted items and false leakage hits.
   Single-source shards (``--single-docs`` documents of one dataset, clean or 10% LLM-written)
   show what happens when a corpus is one kind of text whose error rates differ from the
   calibration's average.
   Two shards (0% and 25%) are also judged with ``--scorer lm``, to show what a decision
   costs with the LM classifier.
2. Scale. One shard of ``--big-docs`` documents sampled with replacement from all of the
   shared data, with 20 planted items: wall time and peak memory (max RSS of the gate
   process) for one decision.
3. Scale-out. ``auditor audit`` (the LM path) on ``--audit-rows`` rows with ``--workers 1``
   and ``--workers 2``: rows per second.
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

SHARES = (0.0, 0.02, 0.05, 0.10, 0.25)
MAX_SYNTHETIC = 0.05
AUDITOR = str(Path(sys.executable).with_name("auditor"))


def write_jsonl(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    return path


def plant(docs: list[str], items: list[str], rng: np.random.Generator) -> list[int]:
    """Embed each item in the middle of a random document; returns the 1-based lines."""
    lines = rng.choice(len(docs), len(items), replace=False)
    for line, item in zip(lines, items, strict=True):
        words = docs[line].split()
        cut = len(words) // 2
        docs[line] = " ".join(words[:cut]) + "\n\n" + item + "\n\n" + " ".join(words[cut:])
    return [int(x) + 1 for x in lines]


# Runs a command and prints its peak RSS (KiB) last: this process's children are that command
# alone, so the figure is not the maximum over every earlier gate run of the benchmark.
_PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def run_gate(shards: list[Path], index: Path, manifest: Path, extra: list[str] = ()) -> tuple[dict, float, int]:
    """Manifest, wall seconds and peak RSS (KiB) of one `auditor gate` run."""
    started = time.perf_counter()
    args = [AUDITOR, "gate", *map(str, shards), "--max-synthetic", str(MAX_SYNTHETIC), "--manifest", str(manifest)]
    command = [sys.executable, "-c", _PEAK_RSS, *args, "--benchmark-index", str(index), *extra]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak_kib = int(proc.stderr.strip().splitlines()[-1])
    return json.loads(manifest.read_text()), time.perf_counter() - started, peak_kib


def decisions(corpus: pd.DataFrame, items: pd.DataFrame, index: Path, work: Path, args) -> pd.DataFrame:
    test = corpus[corpus.split == "test"]
    human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
    rng = np.random.default_rng(args.seed)
    shards, truth = [], {}
    for share in SHARES:
        for r in range(args.replicates):
            k = int(round(share * args.shard_docs))
            docs = [human[i] for i in rng.choice(len(human), args.shard_docs - k)]
            docs += [machine[i] for i in rng.choice(len(machine), k)]
            rng.shuffle(docs)
            planted = []
            if r % 2 == 0:
                chosen = items.sample(5, random_state=int(rng.integers(1 << 31)))
                planted = list(zip(chosen.item_id, plant(docs, chosen.text.tolist(), rng), strict=True))
            path = write_jsonl(work / f"shard-{int(share * 100):02d}-{r:02d}.jsonl", docs)
            shards.append(path)
            truth[str(path)] = (share, planted)
    manifest, seconds, _ = run_gate(shards, index, work / "manifest.json")
    print(f"decisions: {len(shards)} shards in {seconds:.0f}s", flush=True)
    rows = []
    for entry in manifest["shards"]:
        share, planted = truth[entry["shard"]]
        found = {(h["item_id"], p) for h in entry["benchmark_hits"] for p in h["positions"]}
        rows.append(
            {
                "share": share,
                "synthetic_reject": "synthetic_share" in entry["rejected_for"],
                "conclusive": entry["conclusive"],
                "scored": entry["documents_scored"],
                "estimate": entry["synthetic"]["estimate"],
                "covered": entry["synthetic"]["ci_low"] <= share <= entry["synthetic"]["ci_high"],
                "planted": len(planted),
                "recalled": sum((item, line) in found for item, line in planted),
                "false_hits": len(found - set(planted)),
            }
        )
    return pd.DataFrame(rows)


SINGLE_SOURCES = ("worker_vs_gpt", "l2r_rewrites", "hc3_partial", "hc3_plus_si", "ai_ai_bias_gpt4")


def single_source(corpus: pd.DataFrame, index: Path, work: Path, args) -> pd.DataFrame:
    """Shards of one dataset each (a corpus of one kind of text), clean or 10% LLM-written: the
    scorer's error rates there differ from the pooled calibration the gate corrects with. Each
    dataset's shards are judged twice: with the calibration's rates, and with rates re-measured
    on 500 human and 500 LLM reference texts of that dataset (its calibration split)."""
    rng = np.random.default_rng(args.seed + 2)
    rows = []
    for dataset in SINGLE_SOURCES:
        pool = corpus[corpus.dataset == dataset]
        test, calibration = pool[pool.split == "test"], pool[pool.split == "calibration"]
        human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
        shards, truth = [], {}
        for share in (0.0, 0.10):
            for r in range(args.single_replicates):
                k = int(round(share * args.single_docs))
                docs = [human[i] for i in rng.choice(len(human), args.single_docs - k)]
                docs += [machine[i] for i in rng.choice(len(machine), k)]
                rng.shuffle(docs)
                path = write_jsonl(work / f"single-{dataset}-{int(share * 100):02d}-{r}.jsonl", docs)
                shards.append(path)
                truth[str(path)] = share
        references = []
        for label, role in ((0, "human"), (1, "machine")):
            texts = calibration[calibration.label == label].text
            path = work / f"reference-{dataset}-{role}.jsonl"
            write_jsonl(path, texts.sample(min(500, len(texts)), random_state=0).tolist())
            references += [f"--{role}-reference", str(path)]
        for rates, extra in (("calibration", []), ("references", references)):
            manifest, seconds, _ = run_gate(shards, index, work / "single-manifest.json", extra)
            print(f"single-source {dataset} ({rates}): {len(shards)} shards in {seconds:.0f}s", flush=True)
            for entry in manifest["shards"]:
                rows.append(
                    {
                        "dataset": dataset,
                        "rates": rates,
                        "share": truth[entry["shard"]],
                        "rejected": "synthetic_share" in entry["rejected_for"],
                        "estimate": entry["synthetic"]["estimate"],
                        "scored": entry["documents_scored"],
                    }
                )
    return pd.DataFrame(rows)


def lm_scorer(corpus: pd.DataFrame, index: Path, work: Path, args) -> pd.DataFrame:
    """The same kind of mixed shards judged with ``--scorer lm`` (the LM classifier): what a
    decision costs when every sampled document takes a forward pass of the LM."""
    test = corpus[corpus.split == "test"]
    human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
    rng = np.random.default_rng(args.seed + 3)
    rows = []
    for share in (0.0, 0.25):
        k = int(round(share * 5000))
        docs = [human[i] for i in rng.choice(len(human), 5000 - k)] + [machine[i] for i in rng.choice(len(machine), k)]
        rng.shuffle(docs)
        path = write_jsonl(work / f"lm-{int(share * 100):02d}.jsonl", docs)
        extra = ["--scorer", "lm", "--max-scored", str(args.lm_max_scored)]
        manifest, seconds, _ = run_gate([path], index, work / "lm-manifest.json", extra)
        entry = manifest["shards"][0]
        rows.append(
            {
                "share": share,
                "decision": entry["decision"],
                "conclusive": entry["conclusive"],
                "scored": entry["documents_scored"],
                "estimate": entry["synthetic"]["estimate"],
                "interval": f"[{entry['synthetic']['ci_low']:.3f}, {entry['synthetic']['ci_high']:.3f}]",
                "seconds": seconds,
            }
        )
        print(f"lm scorer, share {share}: {rows[-1]}", flush=True)
    return pd.DataFrame(rows)


def big_shard(corpus: pd.DataFrame, items: pd.DataFrame, index: Path, work: Path, args) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    texts = corpus[~corpus.text.isin(items.text)].text.to_numpy(dtype=object)  # only planted copies count
    docs = texts[rng.integers(0, len(texts), args.big_docs)].tolist()
    chosen = items.sample(20, random_state=2)
    lines = plant(docs, chosen.text.tolist(), rng)
    path = write_jsonl(work / "big.jsonl", docs)
    del docs
    size = path.stat().st_size
    manifest, seconds, peak_kib = run_gate([path], index, work / "big-manifest.json")
    entry = manifest["shards"][0]
    found = {p for h in entry["benchmark_hits"] for p in h["positions"]}
    return {
        "documents": args.big_docs,
        "bytes": size,
        "seconds": seconds,
        "peak_rss_gib": peak_kib / 2**20,
        "decision": entry["decision"],
        "scored": entry["documents_scored"],
        "leak_recall": f"{len(set(lines) & found)}/{len(lines)}",
        "gate_seconds": entry["seconds"],
    }


def scale_out(corpus: pd.DataFrame, work: Path, args) -> list[dict]:
    test = corpus[(corpus.split == "test") & corpus.text.str.len().between(100, 600)]
    rows = test.sample(args.audit_rows, random_state=0)
    delivery = work / "delivery.csv"
    pd.DataFrame({"vendor": rows.dataset, "answer": rows.text}).to_csv(delivery, index=False)
    results = []
    for workers in (1, 2):
        out = work / f"audit-{workers}"
        started = time.perf_counter()
        proc = subprocess.run(
            [AUDITOR, "audit", str(delivery), "--text-col", "answer", "--vendor-col", "vendor", "--out", str(out)]
            + ["--no-resume", "--workers", str(workers)],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "AUDITOR_CHUNK_ROWS": "16"},
        )
        if proc.returncode != 0:
            raise SystemExit(f"audit failed: {proc.stderr[-2000:]}")
        seconds = time.perf_counter() - started
        results.append({"workers": workers, "rows": args.audit_rows, "seconds": seconds})
        print(f"audit with {workers} worker(s): {seconds:.0f}s", flush=True)
    return results


def markdown(
    frame: pd.DataFrame,
    single: pd.DataFrame | None,
    lm: pd.DataFrame | None,
    big: dict | None,
    scaling: list[dict],
    args,
    elapsed: float,
) -> str:
    lines = [
        "# Pre-training gate benchmark",
        "",
        f"`python benchmarks/gate.py --replicates {args.replicates} --shard-docs {args.shard_docs} "
        f"--single-docs {args.single_docs} --lm-max-scored {args.lm_max_scored} --big-docs {args.big_docs} --audit-rows {args.audit_rows}`; {elapsed:.0f} s on this machine "
        "(2 vCPUs). Shards from the test split of ../shared/datasets; policy `--max-synthetic 0.05`, "
        "fast scorer, 95% anytime-valid intervals, sample of at most 5000 documents per shard.",
        "",
        "## Decisions by true LLM-written share",
        "",
        "| true share | shards | rejected for synthetic share | conclusive | documents scored (median, max) | "
        "mean estimate | interval covers truth |",
        "|---|---|---|---|---|---|---|",
    ]
    for share, part in frame.groupby("share"):
        lines.append(
            f"| {share:.0%} | {len(part)} | {part.synthetic_reject.mean():.0%} | {part.conclusive.mean():.0%} | "
            f"{int(part.scored.median())}, {int(part.scored.max())} | {part.estimate.mean():.3f} | {part.covered.mean():.0%} |"
        )
    clean = frame[frame.share <= 0.02]
    dirty = frame[frame.share >= 0.10]
    lines += [
        "",
        f"False rejections of shards at or below 2%: {int(clean.synthetic_reject.sum())}/{len(clean)}; "
        f"missed shards at 10% or more: {int((~dirty.synthetic_reject).sum())}/{len(dirty)}. "
        "Shards at exactly 5% sit on the threshold: either decision is correct there.",
        "",
        f"Leakage: {int(frame.recalled.sum())}/{int(frame.planted.sum())} planted evaluation items found "
        f"(recall {frame.recalled.sum() / max(frame.planted.sum(), 1):.1%}); {int(frame.false_hits.sum())} false hits "
        f"in {len(frame)} shards ({len(frame) * args.shard_docs:,} documents).",
    ]
    if single is not None:
        lines += [
            "",
            f"## Single-source shards ({args.single_docs} documents of one dataset, {args.single_replicates} per cell)",
            "",
            "| dataset | error rates | clean shards rejected | mean estimate at 0% | 10% shards rejected | "
            "mean estimate at 10% | documents scored (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for (dataset, rates), part in single.groupby(["dataset", "rates"], sort=False):
            clean, dirty = part[part.share == 0], part[part.share > 0]
            lines.append(
                f"| {dataset} | {rates} | {int(clean.rejected.sum())}/{len(clean)} | {clean.estimate.mean():.3f} | "
                f"{int(dirty.rejected.sum())}/{len(dirty)} | {dirty.estimate.mean():.3f} | {int(part.scored.median())} |"
            )
    if lm is not None:
        lines += [
            "",
            f"## LM scorer (`--scorer lm --max-scored {args.lm_max_scored}`, one 5,000-document mixed shard per share)",
            "",
            "| true share | decision | conclusive | documents scored | estimate | interval | wall time |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in lm.itertuples():
            lines.append(
                f"| {r.share:.0%} | {r.decision} | {r.conclusive} | {r.scored} | {r.estimate:.3f} | {r.interval} | {r.seconds:.0f} s |"
            )
    if big:
        lines += [
            "",
            "## One big shard",
            "",
            "| documents | size | wall time (whole command) | gate time | peak memory (RSS) | decision | scored | planted items found |",
            "|---|---|---|---|---|---|---|---|",
            f"| {big['documents']:,} | {big['bytes'] / 2**30:.2f} GiB | {big['seconds']:.1f} s | {big['gate_seconds']:.1f} s | "
            f"{big['peak_rss_gib']:.2f} GiB | {big['decision']} | {big['scored']} | {big['leak_recall']} |",
        ]
    if scaling:
        base = scaling[0]["rows"] / scaling[0]["seconds"]
        lines += [
            "",
            "## Audit on Dask (LM path)",
            "",
            "| workers | rows | wall time | rows/s | speed-up |",
            "|---|---|---|---|---|",
        ]
        for s in scaling:
            rate = s["rows"] / s["seconds"]
            lines.append(f"| {s['workers']} | {s['rows']} | {s['seconds']:.0f} s | {rate:.2f} | {rate / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--shard-docs", type=int, default=20_000)
    parser.add_argument("--big-docs", type=int, default=1_000_000)
    parser.add_argument("--audit-rows", type=int, default=120)
    parser.add_argument("--single-docs", type=int, default=5000, help="documents per single-source shard (0: skip)")
    parser.add_argument("--single-replicates", type=int, default=3)
    parser.add_argument("--lm-max-scored", type=int, default=1000, help="sample cap with --scorer lm (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gate-benchmark"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gate.md")
    args = parser.parse_args()
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus()
    pool = corpus[(corpus.dataset == "hc3_partial") & (corpus.split == "calibration")]
    items = pool[pool.text.str.split().str.len().between(30, 300)].drop_duplicates("text").sample(500, random_state=0)
    items = items.assign(item_id=[f"bench-{i}" for i in range(len(items))])
    index = args.work / "bench.jsonl"
    with index.open("w") as out:
        for item_id, text in zip(items.item_id, items.text, strict=True):
            out.write(json.dumps({"id": item_id, "question_and_answer": text}) + "\n")
    frame = decisions(corpus, items, index, args.work, args)
    frame.to_csv(args.work / "decisions.csv", index=False)
    single = single_source(corpus, index, args.work, args) if args.single_docs else None
    lm = lm_scorer(corpus, index, args.work, args) if args.lm_max_scored else None
    big = big_shard(corpus, items, index, args.work, args) if args.big_docs else None
    print(f"big shard: {big}", flush=True)
    scaling = scale_out(corpus, args.work, args) if args.audit_rows else []
    args.out.write_text(markdown(frame, single, lm, big, scaling, args, time.perf_counter() - started))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
