"""Perplexity-family signals from one causal LM.

Per text: mean token log-likelihood and its spread, mean log-rank, mean predictive entropy,
the Fast-DetectGPT analytic sampling-discrepancy criterion (Bao et al. 2024), a
Binoculars-style ratio of log-perplexity to the model's own cross-entropy (Hans et al.
2024, with one model as observer and performer), Min-K% probability, GLTR-style rank
fractions, the volatility of token log-likelihoods along the text (Lastde, Xu et al. 2025:
the diversity entropy of the log-likelihood series at several time scales), and
per-sentence scores so a report can show which spans look machine-written.

The hot spot is the vocabulary: 49k logits per token. The transformer body runs on
length-sorted, token-budgeted batches; the LM head then runs only on real (non-padding)
positions, in chunks, and one fused kernel reduces each chunk's logits to the handful of
per-token statistics the signals need, so no full-vocabulary float32 tensor is kept.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from detectors.base import SCORE, Detector, OutputColumn, register
from detectors.store import EMBEDDED_LM, resolve_causal_lm

log = logging.getLogger(__name__)

_FLOAT = pa.float64()
# The signals, with which way each moves for LLM-written text (+1: higher, -1: lower) as the
# methods that define them intend; reports use it to say which signals "fired" for an item.
SIGNAL_OUTPUTS = (
    OutputColumn("n_tokens", pa.int64(), None, "tokens scored (at most max_tokens)"),
    OutputColumn("ll_mean", _FLOAT, 1, "mean token log-likelihood"),
    OutputColumn("ll_std", _FLOAT, -1, "spread of the token log-likelihoods"),
    OutputColumn("logrank_mean", _FLOAT, -1, "mean log(1 + rank) of the tokens"),
    OutputColumn("entropy_mean", _FLOAT, -1, "mean predictive entropy"),
    OutputColumn("fast_detectgpt", _FLOAT, 1, "Fast-DetectGPT analytic sampling discrepancy"),
    OutputColumn("binoculars", _FLOAT, -1, "log-perplexity over the model's own cross-entropy"),
    OutputColumn("min_k_prob", _FLOAT, 1, "mean log-likelihood of the least likely k% of tokens"),
    OutputColumn("rank1_frac", _FLOAT, 1, "share of tokens the model ranks first"),
    OutputColumn("rank10_frac", _FLOAT, 1, "share of tokens in the model's top ten"),
    OutputColumn("ll_volatility", _FLOAT, -1, "mean jump between consecutive token log-likelihoods"),
    OutputColumn("lastde", _FLOAT, 1, "Lastde: log-likelihood over the multiscale diversity entropy's spread"),
)
SIGNALS = tuple(o.name for o in SIGNAL_OUTPUTS)
# Derived from the declarations, for scripts that read the LM's signals alone; the auditor asks
# the registry (detectors.machine_directions) for every registered detector's.
MACHINE_DIRECTION = {o.name: o.machine for o in SIGNAL_OUTPUTS if o.machine is not None}
# Token-level distributions (GLTR, Ghostbuster): the share of a text's tokens in each bin of
# target rank, log-probability, predictive entropy and surprise (log-probability minus its
# expectation). Means hide the shape these keep: LLM text has few very unlikely tokens.
HISTOGRAM_BINS = {
    "rank": (0.5, 2.5, 9.5, 99.5, 999.5),
    "ll": (-10.0, -7.0, -5.0, -3.0, -2.0, -1.0, -0.5, -0.1),
    "entropy": (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
    "surprise": (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0),
}
HISTOGRAM = "lm_histogram"
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n+")


def token_statistics(logits, targets):
    """Per-position statistics from raw logits ``[N, V]`` and target ids ``[N]``.

    Returns float32 ``[N]`` tensors: log-likelihood of the target, expected log-probability
    under the model (minus the entropy), expected squared log-probability, and the
    0-based rank of the target.
    """
    import torch

    logits = logits.float()
    log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    log_probs = logits - log_norm
    probs = log_probs.exp()
    weighted = probs * log_probs
    expected = weighted.sum(-1)
    expected_sq = (weighted * log_probs).sum(-1)
    target_logit = logits.gather(-1, targets.unsqueeze(-1))
    rank = (logits > target_logit).sum(-1)
    return (target_logit - log_norm).squeeze(-1), expected, expected_sq, rank.float()


def token_histogram(stats: np.ndarray) -> np.ndarray:
    """Bin shares of one text's per-token statistics (``[4, n]`` as ``token_signals`` returns
    them), concatenated in ``HISTOGRAM_BINS`` order; zeros for a text without tokens."""
    ll, expected, _, rank = stats.astype(np.float64)
    values = {"rank": rank, "ll": ll, "entropy": -expected, "surprise": ll - expected}
    parts = []
    for kind, edges in HISTOGRAM_BINS.items():
        counts = np.bincount(np.digitize(values[kind], edges), minlength=len(edges) + 1)
        parts.append(counts / max(len(ll), 1))
    return np.concatenate(parts).astype(np.float32)


@dataclass
class _Encoded:
    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    truncated: list[bool]


@register
class PerplexityDetector(Detector):
    """Zero-shot signals from a causal LM given by local path or hub id.

    ``fit`` learns only a logistic map from ``criterion`` to ``score``; the signals
    themselves need no training.
    """

    name = "perplexity"
    version = "2"
    outputs = (
        *SIGNAL_OUTPUTS,
        OutputColumn("token_truncated", pa.bool_(), None, "scored on its first max_tokens tokens only"),
    )
    output_prefix = "ppl_"

    def __init__(
        self,
        model: str = EMBEDDED_LM,
        max_tokens: int = 256,
        batch_tokens: int = 8192,
        head_chunk: int = 1024,
        min_k: float = 0.2,
        criterion: str = "fast_detectgpt",
        device: str = "auto",
        dtype: str = "auto",
        quantize: str = "auto",
        compile: str = "auto",
        spans: bool = True,
        embeddings: bool = False,
        pool_layers: tuple[int, ...] = (16, -1),
        histograms: bool = False,
        cache_dir: str | None = None,
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.batch_tokens = batch_tokens
        self.head_chunk = head_chunk
        self.min_k = min_k
        self.criterion = criterion
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.compile = compile
        self.spans = spans
        self.embeddings = embeddings
        self.pool_layers = pool_layers
        self.histograms = histograms
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ setup
    def setup(self) -> PerplexityDetector:
        if getattr(self, "_lm", None) is not None:
            return self
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_causal_lm(self.model, Path(self.cache_dir) if self.cache_dir else None)
        self.device_ = _pick_device(self.device)
        self.torch_dtype_ = _pick_dtype(self.dtype, self.device_)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=self.torch_dtype_)
        lm.eval().to(self.device_)
        self.quantized_ = _wants_int8(self.quantize, self.device_, self.torch_dtype_)
        if self.quantized_:
            lm = _int8_linear_layers(lm)
        self._lm = lm
        self._body = lm.base_model
        self._head = lm.get_output_embeddings()
        self._prefix_id = _document_prefix_id(self._tokenizer)
        self._stats_fn = _compiled_statistics(self.compile, self.device_)
        self.model_path_ = path
        log.info("loaded %s on %s as %s", path, self.device_, self.torch_dtype_)
        return self

    @property
    def model_info(self) -> dict[str, Any]:
        self.setup()
        return {
            "model": self.model,
            "path": self.model_path_,
            "device": str(self.device_),
            "dtype": str(self.torch_dtype_).removeprefix("torch.")
            + (" (int8 linear layers)" if self.quantized_ else ""),
            "n_parameters": int(sum(p.numel() for p in self._lm.parameters())),
        }

    # ------------------------------------------------------------------ scoring
    def _score_valid(self, texts: list[str]) -> pd.DataFrame:
        self.setup()
        encoded = self._encode(texts)
        per_token, pooled = self.token_signals(encoded.ids)
        rows = [self._aggregate(stats) for stats in per_token]
        frame = pd.DataFrame(rows, columns=list(SIGNALS))
        if self.embeddings:
            frame["lm_embedding"] = pd.Series(list(pooled), index=frame.index, dtype=object)
        if self.histograms:
            frame[HISTOGRAM] = pd.Series(
                [token_histogram(stats) for stats in per_token], index=frame.index, dtype=object
            )
        frame["token_truncated"] = encoded.truncated
        if self.spans:
            frame["spans"] = pd.Series(
                [
                    _sentence_spans(text, offsets, stats)
                    for text, offsets, stats in zip(texts, encoded.offsets, per_token, strict=True)
                ],
                index=frame.index,
                dtype=object,
            )
        frame[SCORE] = self._to_score(frame)
        return frame

    def _empty_frame(self) -> pd.DataFrame:
        columns = [*SIGNALS, "token_truncated", *(["spans"] if self.spans else []), SCORE]
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})

    def _encode(self, texts: list[str]) -> _Encoded:
        enc = self._tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets, truncated = [], [], []
        for row_ids, row_offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            truncated.append(len(row_ids) > self.max_tokens)
            ids.append(row_ids[: self.max_tokens])
            offsets.append(row_offsets[: self.max_tokens])
        return _Encoded(ids, offsets, truncated)

    def token_signals(self, token_ids: list[list[int]]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per text, a ``[4, n_tokens]`` array (log-likelihood, expected log-prob, expected
        squared log-prob and rank of each token given the ones before it), and the LM's
        final hidden state mean-pooled over each text's tokens, ``[n_texts, hidden]``."""
        import torch

        self.setup()
        stats: list[np.ndarray | None] = [None] * len(token_ids)
        width = self._lm.config.hidden_size * len(self.pool_layers) if self.embeddings else 0
        pooled = np.zeros((len(token_ids), width), dtype=np.float32)
        # int8 runs one text per forward pass: dynamic quantisation takes one activation scale
        # per tensor, so in a batch a text's signals would move with its companions (and with
        # the padding). Measured side by side (48 texts, one thread): per text was also faster
        # (20 s vs 27 s, no padding) and closer to fp32 (mean |ll| per token 0.58 vs 0.64 nats).
        batches = [[i] for i in range(len(token_ids))] if self.quantized_ else None
        with torch.inference_mode():
            for batch in batches or _length_batches(token_ids, self.batch_tokens):
                batch_stats, batch_pooled = self._batch_statistics([token_ids[i] for i in batch])
                pooled[batch] = batch_pooled
                for i, arr in zip(batch, batch_stats, strict=True):
                    stats[i] = arr
        return stats, pooled  # type: ignore[return-value]

    def _batch_statistics(self, batch_ids: list[list[int]]) -> tuple[list[np.ndarray], np.ndarray]:
        import torch

        lengths = [len(ids) for ids in batch_ids]
        width = max(lengths) + 1
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0
        inputs = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            inputs[row, 0] = self._prefix_id
            inputs[row, 1 : len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids) + 1] = 1
        inputs, mask = inputs.to(self.device_), mask.to(self.device_)
        output = self._body(input_ids=inputs, attention_mask=mask, output_hidden_states=self.embeddings)
        hidden = output.last_hidden_state
        # Position t predicts token t+1: keep positions whose next token is real text.
        predicts_text = mask[:, 1:].bool()
        positions = hidden[:, :-1][predicts_text]
        targets = inputs[:, 1:][predicts_text]
        columns = []
        for start in range(0, positions.shape[0], self.head_chunk):
            logits = self._head(positions[start : start + self.head_chunk])
            columns.append(torch.stack(self._stats_fn(logits, targets[start : start + self.head_chunk])))
        flat = torch.cat(columns, dim=1).float().cpu().numpy()
        pooled = (
            self._pool(output.hidden_states, mask) if self.embeddings else np.zeros((len(batch_ids), 0), np.float32)
        )
        return np.split(flat, np.cumsum(lengths)[:-1], axis=1), pooled

    def _pool(self, hidden_states, mask) -> np.ndarray:
        """Mean over each text's tokens of the chosen layers' hidden states, concatenated.
        A middle layer separates human from LLM text better than the last one (measured
        in benchmarks/detection.py); the last adds a little on top."""
        text_mask = mask[:, 1:].unsqueeze(-1).float()
        count = text_mask.sum(1)
        layers = [hidden_states[layer][:, 1:].float() for layer in self.pool_layers]
        return np.concatenate([((h * text_mask).sum(1) / count).cpu().numpy() for h in layers], axis=1)

    def _aggregate(self, stats: np.ndarray) -> dict[str, float]:
        ll, expected, expected_sq, rank = stats.astype(np.float64)
        n = ll.shape[0]
        variance = np.clip(expected_sq - expected**2, 1e-6, None)
        entropy_mean = float(-expected.mean())
        k = max(1, math.ceil(self.min_k * n))
        return {
            "n_tokens": n,
            "ll_mean": float(ll.mean()),
            "ll_std": float(ll.std()),
            "logrank_mean": float(np.log1p(rank).mean()),
            "entropy_mean": entropy_mean,
            "fast_detectgpt": float((ll.sum() - expected.sum()) / math.sqrt(variance.sum())),
            "binoculars": float(-ll.mean() / max(entropy_mean, 1e-6)),
            "min_k_prob": float(np.sort(ll)[:k].mean()),
            "rank1_frac": float((rank < 1).mean()),
            "rank10_frac": float((rank < 10).mean()),
            "ll_volatility": float(np.abs(np.diff(ll)).mean()) if n > 1 else float("nan"),
            "lastde": lastde(ll),
        }

    # ------------------------------------------------------------- score mapping
    def fit(self, texts, labels=None) -> PerplexityDetector:
        """Learn a logistic map from ``criterion`` to ``score`` (labels: 1 = LLM-written)."""
        if labels is None:
            return self
        from sklearn.linear_model import LogisticRegression

        frame = self.detect(texts)
        usable = frame[self.criterion].notna().to_numpy()
        x = frame.loc[usable, [self.criterion]].to_numpy()
        y = np.asarray(labels)[usable]
        model = LogisticRegression().fit(x, y)
        self.coef_ = float(model.coef_[0, 0])
        self.intercept_ = float(model.intercept_[0])
        return self

    def _to_score(self, frame: pd.DataFrame) -> np.ndarray:
        # Unfitted default: Fast-DetectGPT's criterion is ~0 for human text and grows with
        # machine-likeness; a logistic centred at 2 puts typical human text low.
        coef = getattr(self, "coef_", 1.5)
        intercept = getattr(self, "intercept_", -3.0)
        z = coef * frame[self.criterion].to_numpy(dtype=float) + intercept
        return 1.0 / (1.0 + np.exp(-z))


LASTDE_SCALES = (1, 2, 3, 4)
LASTDE_DIM = 3
LASTDE_BINS = 10


def diversity_entropy(series: np.ndarray, dim: int = LASTDE_DIM, bins: int = LASTDE_BINS) -> float:
    """Normalised Shannon entropy of the cosine similarities between consecutive
    ``dim``-long windows of ``series``: how varied its local shapes are (0: one shape)."""
    if len(series) < dim + 1:
        return float("nan")
    windows = np.lib.stride_tricks.sliding_window_view(series, dim)
    centred = windows - windows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    cosine = (centred[:-1] * centred[1:]).sum(axis=1) / np.maximum(norms[:-1] * norms[1:], 1e-12)
    counts, _ = np.histogram(np.clip(cosine, -1.0, 1.0), bins=bins, range=(-1.0, 1.0))
    share = counts[counts > 0] / counts.sum()
    return float(-(share * np.log(share)).sum() / math.log(bins))


def lastde(ll: np.ndarray) -> float:
    """Lastde's score: mean token log-likelihood over the spread, across time scales, of the
    log-likelihood series' diversity entropy (moving averages of 1-4 tokens). LLM text is
    likely everywhere and its volatility looks alike at every scale."""
    entropies = [diversity_entropy(np.convolve(ll, np.ones(scale) / scale, mode="valid")) for scale in LASTDE_SCALES]
    if np.isnan(entropies).any():
        return float("nan")
    return float(ll.mean() / max(float(np.std(entropies)), 1e-3))


def _length_batches(token_ids: list[list[int]], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest-first so each padded batch holds about ``batch_tokens``."""
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        length = len(token_ids[i]) + 1
        width = max(width, length)
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], length
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _sentence_spans(text: str, offsets: list[tuple[int, int]], stats: np.ndarray) -> list[dict[str, Any]]:
    """Per sentence: character span in ``text``, tokens scored, mean log-likelihood and a
    Fast-DetectGPT z-score restricted to that sentence's tokens."""
    if not offsets:
        return []
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    token_starts = np.array([start for start, _ in offsets])
    sentence_of_token = np.searchsorted(np.array(bounds[1:-1]), token_starts, side="right")
    ll, expected, expected_sq, _ = stats.astype(np.float64)
    variance = np.clip(expected_sq - expected**2, 1e-6, None)
    spans = []
    for sentence in np.unique(sentence_of_token):
        sel = sentence_of_token == sentence
        start = int(bounds[sentence])
        end = int(bounds[sentence + 1]) if sentence + 1 < len(bounds) else len(text)
        spans.append(
            {
                "start": start,
                "end": min(end, int(offsets[np.flatnonzero(sel)[-1]][1])),
                "n_tokens": int(sel.sum()),
                "ll_mean": round(float(ll[sel].mean()), 4),
                "fast_detectgpt": round(float((ll[sel] - expected[sel]).sum() / math.sqrt(variance[sel].sum())), 4),
            }
        )
    return spans


def _pick_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _pick_dtype(dtype: str, device):
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def _wants_int8(quantize: str, device, dtype) -> bool:
    """``"auto"``: int8 where the LM would otherwise run in fp32 on a CPU (no native bf16),
    the case where fp32 matrix products already run near the CPU's limit."""
    import torch

    if quantize not in ("auto", "int8", "none"):
        raise ValueError(f"quantize must be 'auto', 'int8' or 'none', not {quantize!r}")
    if quantize == "auto":
        return device.type == "cpu" and dtype == torch.float32
    return quantize == "int8"


def _int8_linear_layers(lm):
    """Linear layers with int8 weights (per output channel) and dynamically quantised
    activations; fbgemm/x86 kernels run on AVX2. Left in fp32: the MLPs' down-projections,
    whose inputs carry the outlier activations that per-tensor int8 cannot hold (quantising
    them too moved Fast-DetectGPT's criterion to a 0.90 correlation with fp32, without them
    0.96-0.99), and the embeddings and norms."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if lm.dtype != torch.float32:
        raise ValueError("int8 quantisation starts from the fp32 model: use dtype='float32' (or 'auto')")
    layers = {
        name: per_channel_dynamic_qconfig
        for name, module in lm.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("down_proj")
    }
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao, which is not a dependency here
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(lm, layers, dtype=torch.qint8)


def _document_prefix_id(tokenizer) -> int:
    """The token a document starts after, so that its first real token is scored too."""
    vocab = tokenizer.get_vocab()
    for token in ("<|endoftext|>", tokenizer.bos_token, tokenizer.eos_token):
        if token is not None and token in vocab:
            return int(vocab[token])
    return 0


def _compiled_statistics(mode: str, device):
    """``token_statistics`` fused by torch.compile when a compiler is available.

    Eagerly, each reduction sweeps the [chunk, vocab] logits again (~8 sweeps); the fused
    kernel makes one or two, which is ~8x faster on CPU. Falls back to eager on failure.
    """
    if mode == "never" or (mode == "auto" and not _compiler_available(device)):
        return token_statistics
    import torch

    compiled = torch.compile(token_statistics, dynamic=True)
    state = {"fn": compiled}

    def run(logits, targets):
        try:
            return state["fn"](logits, targets)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            if state["fn"] is token_statistics:
                raise
            log.warning("torch.compile failed (%s); using the eager kernel", exc)
            state["fn"] = token_statistics
            return token_statistics(logits, targets)

    return run


def _compiler_available(device) -> bool:
    import shutil as _shutil

    if device.type == "cuda":
        return True
    return _shutil.which("g++") is not None or _shutil.which("c++") is not None
