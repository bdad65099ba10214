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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-texts", type=int, default=512)
    parser.add_argument("--minhash-texts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.md")
    args = parser.parse_args()
    settings = Settings()
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
