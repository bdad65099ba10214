"""Diversity of a set of texts: the narrowing that makes data collapse-prone.

Measured on an equal-size random sample per group (distinct-n grows as samples shrink, so
groups are only comparable at equal sizes): distinct-1/2 (unique word n-grams over all
n-grams), the zlib compression ratio of the sample, and the mean pairwise cosine
similarity of sentence embeddings (all-MiniLM-L6-v2, packaged in a wheel).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache

import numpy as np

from auditor.report.models import Diversity
from detectors.store import EMBEDDED_EMBEDDER, resolve_embedder

SAMPLE_SIZE = 200
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _embedder():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_embedder(EMBEDDED_EMBEDDER), device="cpu")


_EMBEDDINGS: dict[str, np.ndarray] = {}


def _embed(texts: list[str]) -> np.ndarray:
    """Normalised sentence embeddings, remembered per text (bounded) across groups."""
    missing = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
    if missing:
        if len(_EMBEDDINGS) + len(missing) > 200_000:
            _EMBEDDINGS.clear()
        vectors = _embedder().encode(missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        _EMBEDDINGS.update(zip(missing, vectors, strict=True))
    return np.stack([_EMBEDDINGS[t] for t in texts])


def _distinct(texts: list[str], n: int) -> float:
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams.extend(zip(*(words[i:] for i in range(n)), strict=False))
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity(
    texts: list[str], sample_size: int = SAMPLE_SIZE, seed: int = 0, embeddings: bool = True
) -> Diversity | None:
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < 2:
        return None
    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.choice(len(texts), min(sample_size, len(texts)), replace=False)]
    raw = "\n".join(sample).encode("utf-8")
    similarity = float("nan")
    if embeddings:
        vectors = _embed(sample)
        sims = vectors @ vectors.T
        similarity = float((sims.sum() - np.trace(sims)) / (len(sample) * (len(sample) - 1)))
    return Diversity(
        n_texts=len(sample),
        distinct_1=round(_distinct(sample, 1), 4),
        distinct_2=round(_distinct(sample, 2), 4),
        compression_ratio=round(len(raw) / len(zlib.compress(raw, 9)), 4),
        mean_pairwise_similarity=round(similarity, 4),
    )
