"""Speed on this CPU, each detector side by side with a naive baseline, in one run.

    python benchmarks/throughput.py [--lm-texts 512] [--minhash-texts 20000] [--out benchmarks/results/throughput.md]

* LM signals: our PerplexityDetector (length-sorted token-budgeted batches, bf16 where
  the CPU has native bf16, LM head only on real tokens, fused statistics kernel) against
  the naive way: transformers in fp32, batches of 16 texts in input order, full logits
  and a materialised log-softmax over the vocabulary, computing the same signals.
* MinHash: our vectorised signatures against datasketch's ``MinHash.update_batch`` per
  document, over the same character 5-gram shingles of the same normalised texts.
* End to end: the scorer's ``detect`` (classifier features + probability + spans).
Texts are real: a fixed random sample of ../shared/datasets.

    python benchmarks/throughput.py --processes [--texts 300] [--avx2]

The speed contract of the detector: ``auditor score`` on 300 long texts (at least 256 tokens
each), default model, as a whole process (start-up, model load, reading, writing included),
against the naive fp32 pass over the same texts as a whole process, side by side in one run.
``--avx2`` runs every process as on an AVX2-only CPU: oneDNN and MKL capped at AVX2, ATen's
kernels at AVX2, the LM in fp32 (so ``quantize=auto`` takes int8), and the int8 kernels on the
oneDNN engine, whose ISA the cap reaches (fbgemm picks its kernels by CPU and cannot be capped).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.config import Settings  # noqa: E402
from auditor.corpus import load_corpus  # noqa: E402
from detectors.minhash import MinHasher  # noqa: E402
from detectors.perplexity import PerplexityDetector  # noqa: E402


def naive_signals(model, tokenizer, texts: list[str], max_tokens: int, batch_size: int = 16) -> int:
    """The straightforward implementation; returns the number of scored tokens."""
    prefix = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    n_tokens = 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids = [
                [prefix] + tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens]
                for t in texts[start : start + batch_size]
            ]
            width = max(map(len, ids))
            inputs = torch.tensor([row + [0] * (width - len(row)) for row in ids])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
            logits = model(input_ids=inputs, attention_mask=mask).logits[:, :-1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            probs = log_probs.exp()
            targets = inputs[:, 1:]
            ll = log_probs.gather(-1, targets[..., None]).squeeze(-1)
            mean = (probs * log_probs).sum(-1)
            var = (probs * log_probs**2).sum(-1) - mean**2
            rank = (log_probs > ll[..., None]).sum(-1)
            valid = mask[:, 1:].bool()
            for row in range(len(ids)):
                v = valid[row]
                _ = (
                    (ll[row][v].sum() - mean[row][v].sum()) / var[row][v].sum().sqrt(),
                    rank[row][v].float().log1p().mean(),
                )
            n_tokens += int(valid.sum())
    return n_tokens


def bench_lm(texts: list[str], settings: Settings) -> list[tuple[str, float, float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = PerplexityDetector(
        model=settings.lm, max_tokens=settings.max_tokens, cache_dir=str(settings.cache_dir)
    ).setup()
    ours.detect(texts[:32])  # warm-up (compiles the statistics kernel)
    started = time.perf_counter()
    frame = ours.detect(texts)
    ours_seconds = time.perf_counter() - started
    ours_tokens = int(frame["n_tokens"].sum())

    path = ours.model_path_
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    naive_signals(model, tokenizer, texts[:16], settings.max_tokens)
    started = time.perf_counter()
    naive_tokens = naive_signals(model, tokenizer, texts, settings.max_tokens)
    naive_seconds = time.perf_counter() - started
    return [
        (
            f"LM signals, ours ({ours.model_info['dtype']}, sorted batches, fused kernel)",
            len(texts) / ours_seconds,
            ours_tokens / ours_seconds,
        ),
        (
            "LM signals, naive (fp32, input-order batches of 16, full log-softmax)",
            len(texts) / naive_seconds,
            naive_tokens / naive_seconds,
        ),
    ]


def bench_minhash(texts: list[str]) -> list[tuple[str, float, float]]:
    from datasketch import MinHash

    hasher = MinHasher()
    hasher.signatures(texts[:1000])
    started = time.perf_counter()
    signatures = hasher.signatures(texts)
    ours = time.perf_counter() - started
    n_shingles = sum(len(s) for s in signatures.shingles)

    subset = texts[: max(1000, len(texts) // 10)]  # datasketch is slow: time a tenth, same texts
    shingles = [hasher.shingle_strings(t) for t in subset]
    started = time.perf_counter()
    for grams in shingles:
        m = MinHash(num_perm=hasher.num_perm, seed=hasher.seed)
        m.update_batch(grams)
    baseline = time.perf_counter() - started
    per_text_shingles = n_shingles / len(texts)
    return [
        (
            "MinHash signatures, ours (vectorised numpy, datasketch-identical)",
            len(texts) / ours,
            len(texts) * per_text_shingles / ours,
        ),
        (
            "MinHash signatures, datasketch update_batch per document (shingling not timed)",
            len(subset) / baseline,
            len(subset) * per_text_shingles / baseline,
        ),
    ]


def bench_scorer(texts: list[str]) -> list[tuple[str, float, float]]:
    from auditor.scoring import cached_scorer

    scorer = cached_scorer(None, False, False)
    scorer.detect(texts[:32])
    started = time.perf_counter()
    frame = scorer.detect(texts)
    seconds = time.perf_counter() - started
    return [
        (
            "end to end: classifier probability + signals + spans",
            len(texts) / seconds,
            frame["ppl_n_tokens"].sum() / seconds,
        )
    ]


AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "AUDITOR_DTYPE": "float32",
}
# `auditor score`, with the quantised engine chosen before the CLI loads the model
_CLI = "import sys, torch; torch.backends.quantized.engine = sys.argv.pop(1); from auditor.cli import app; app()"


def long_texts(n: int, min_tokens: int, settings: Settings) -> list[str]:
    """``n`` real texts of at least ``min_tokens`` SmolLM2 tokens, from every source."""
    from transformers import AutoTokenizer

    from detectors.store import resolve_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(resolve_causal_lm(settings.lm, settings.cache_dir))
    corpus = load_corpus()
    long = corpus[corpus["text"].str.len() > 6 * min_tokens].sample(frac=1.0, random_state=0)
    n_tokens = [len(ids) for ids in tokenizer(long["text"].tolist(), add_special_tokens=False)["input_ids"]]
    return long[np.array(n_tokens) >= min_tokens]["text"].head(n).tolist()


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bench_processes(n_texts: int, avx2: bool, settings: Settings) -> str:
    texts = long_texts(n_texts, settings.max_tokens, settings)
    env = {**os.environ, **(AVX2_ENV if avx2 else {})}
    engine = "onednn" if avx2 else "x86"
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "texts.jsonl"
        pd.DataFrame({"text": texts}).to_json(data, orient="records", lines=True)
        score = [python, "-c", _CLI, engine, "score", str(data), "--text-col", "text", "--out", f"{tmp}/out.parquet"]
        lm_only = _without_ngram(Path(tmp) / "lm-only")
        runs = [
            ("`auditor score`, default (int8 where fp32)" if avx2 else "`auditor score`, default", score, {}),
            ("`auditor score`, the LM part alone (v2's path)", score, {"AUDITOR_MODEL_DIR": str(lm_only)}),
            ("`auditor score`, no int8 (AUDITOR_QUANTIZE=none)", score, {"AUDITOR_QUANTIZE": "none"}),
            ("naive transformers fp32 pass", [python, __file__, "--naive", str(data)], {}),
        ]
        seconds = [_timed(command, {**env, **extra}) for _, command, extra in runs]
    lines = [
        f"{len(texts)} real texts of at least {settings.max_tokens} tokens, each run a whole process; "
        f"{'AVX2-only emulation (' + ', '.join(f'{k}={v}' for k, v in AVX2_ENV.items()) + ')' if avx2 else 'native ISA'}; "
        f"CPU: {_cpu_name()}\n",
        "| process | seconds | texts/s | vs naive |",
        "|---|---|---|---|",
    ]
    for (name, _, _), sec in zip(runs, seconds, strict=True):
        lines.append(f"| {name} | {sec:.0f} | {len(texts) / sec:.2f} | {seconds[-1] / sec:.2f}x |")
    return "\n".join(lines) + "\n"


def _without_ngram(target: Path) -> Path:
    """The default bundle without its n-gram part: what the default path cost before v3."""
    import json
    import shutil

    from detectors.bundle import MANIFEST, copy_bundle, default_bundle_dir

    copy_bundle(default_bundle_dir(), target)
    shutil.copy2(default_bundle_dir() / "calibration.json", target / "calibration.json")
    manifest = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).write_text(json.dumps({**manifest, "ngram": None}))
    return target


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def naive_process(data: Path, settings: Settings) -> None:
    """The naive baseline as its own process: load fp32 transformers, score, nothing cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from detectors.store import resolve_causal_lm

    path = resolve_causal_lm(settings.lm, settings.cache_dir)
    texts = pd.read_json(data, lines=True)["text"].tolist()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    naive_signals(model, AutoTokenizer.from_pretrained(path), texts, settings.max_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", action="store_true", help="the end-to-end contract, whole processes")
    parser.add_argument("--texts", type=int, default=300, help="texts for --processes")
    parser.add_argument("--avx2", action="store_true", help="run the --processes runs as on an AVX2-only CPU")
    parser.add_argument("--naive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lm-texts", type=int, default=512)
    parser.add_argument("--minhash-texts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.md")
    args = parser.parse_args()
    settings = Settings()
    if args.naive:
        naive_process(args.naive, settings)
        return
    if args.processes:
        out = args.out.with_name(f"throughput_processes{'_avx2' if args.avx2 else ''}.md")
        text = bench_processes(args.texts, args.avx2, settings)
        out.write_text(text)
        print(text)
        return
    corpus = load_corpus()
    rng = np.random.default_rng(0)
    lm_texts = corpus["text"].iloc[rng.choice(len(corpus), args.lm_texts, replace=False)].tolist()
    short = corpus[corpus["text"].str.len().between(20, 400)]
    minhash_texts = short["text"].iloc[rng.choice(len(short), args.minhash_texts, replace=False)].tolist()

    rows = bench_minhash(minhash_texts) + bench_lm(lm_texts, settings) + bench_scorer(lm_texts)
    lines = [
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; LM: {args.lm_texts} real texts "
        f"(max {settings.max_tokens} tokens); MinHash: {args.minhash_texts} real texts of 20-400 characters\n",
        "| what | texts/s | tokens/s (shingles/s for MinHash) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {tps:,.0f} | {toks:,.0f} |" for name, tps, toks in rows]
    lines.append(
        f"\nLM speed-up: {rows[2][2] / rows[3][2]:.1f}x tokens/s; MinHash speed-up: {rows[0][1] / rows[1][1]:.0f}x texts/s"
    )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
