"""A disk cache of perplexity-detector outputs, so that training, calibration and the
benchmarks pay for each text's LM pass once. Keyed by the text and by every detector
setting that changes the output; written in shards as it goes, so an interrupted run
resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.classifier import EMBEDDING
from detectors.perplexity import HISTOGRAM, PerplexityDetector
from detectors.store import model_cache_dir

_KEY = "text_key"
_OUTPUT_SETTINGS = ("model", "max_tokens", "min_k", "embeddings", "pool_layers", "histograms")
_VECTORS = (EMBEDDING, HISTOGRAM)


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


class FeatureStore:
    """The outputs of ``detector`` under ``<root>/features`` (``root``: the cache directory; the
    model cache, ``$AUDITOR_MODEL_CACHE_DIR``, when that is set: LM passes are expensive to redo)."""

    def __init__(self, root: Path, detector: PerplexityDetector):
        settings = {k: detector.get_params()[k] for k in _OUTPUT_SETTINGS}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.dir = model_cache_dir(root) / "features" / f"{detector.id}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
        self.detector = detector

    def _load(self) -> pd.DataFrame:
        shards = sorted(self.dir.glob("part-*.parquet"))
        if not shards:
            return pd.DataFrame(columns=[_KEY])
        return pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True).drop_duplicates(_KEY)

    def signals(
        self, texts: Sequence[str], chunk: int = 1000, progress: Callable[[int], None] | None = None
    ) -> pd.DataFrame:
        """Detector output for ``texts`` (input order), computing only what is not cached.
        ``progress(n)`` is called with the number of texts each computed chunk held."""
        keys = [text_key(t) for t in texts]
        cached = self._load()
        have = set(cached[_KEY])
        todo_texts = {k: t for k, t in zip(keys, texts, strict=True) if k not in have}
        missing = list(todo_texts)
        if progress and len(texts) > len(missing):
            progress(len(texts) - len(missing))
        fresh = []
        for start in range(0, len(missing), chunk):
            batch = missing[start : start + chunk]
            frame = self.detector.detect([todo_texts[k] for k in batch]).drop(columns=["spans"], errors="ignore")
            frame.insert(0, _KEY, batch)
            for column in _VECTORS:
                if column in frame:
                    frame[column] = pd.Series(
                        [np.asarray(v, dtype=np.float32) if isinstance(v, np.ndarray) else None for v in frame[column]],
                        index=frame.index,
                        dtype=object,
                    )
            shard = self.dir / f"part-{len(list(self.dir.glob('part-*.parquet'))):05d}.parquet"
            frame.to_parquet(shard)
            fresh.append(frame)
            if progress:
                progress(len(batch))
        table = pd.concat([cached, *fresh], ignore_index=True).drop_duplicates(_KEY).set_index(_KEY)
        result = table.loc[keys].reset_index(drop=True)
        for column in _VECTORS:
            if column in result:
                result[column] = pd.Series(
                    [np.asarray(v, dtype=np.float32) if v is not None else None for v in result[column]],
                    index=result.index,
                    dtype=object,
                )
        return result
