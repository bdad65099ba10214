"""Scoring texts end to end: the classifier's calibrated probability with its perplexity
signals, near-duplicate evidence, and the flag decision with the reason behind it."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from auditor.calibration import Calibration, load_calibration
from auditor.config import Settings, get_settings
from detectors import SCORE, SKIP_REASON
from detectors.bundle import default_bundle_dir, load_bundle
from detectors.classifier import LMTextClassifier
from detectors.minhash import NearDuplicateDetector
from detectors.perplexity import SIGNALS

log = logging.getLogger(__name__)

PROBABILITY = "llm_probability"
FLAGGED = "flagged"
FLAG_REASON = "flag_reason"
SIGNAL_PREFIX = "ppl_"
DUPLICATE_COLUMNS = [
    "dup_cluster",
    "dup_cluster_size",
    "dup_nearest",
    "dup_jaccard",
    "ref_key",
    "ref_jaccard",
    "ref_label",
    "ref_source",
]


class NotCalibrated(RuntimeError):
    pass


class Scorer:
    """Loads the models once; scores batches of texts into the output columns."""

    def __init__(
        self, settings: Settings, model_dir: Path | None = None, trust_model: bool = False, reference: bool = True
    ):
        self.settings = settings
        self.model_dir = Path(model_dir or settings.model_dir or default_bundle_dir())
        self.classifier: LMTextClassifier = load_bundle(
            self.model_dir,
            trust=trust_model,
            device=settings.device,
            dtype=settings.dtype,
            batch_tokens=settings.batch_tokens,
            cache_dir=str(settings.cache_dir),
        )
        self.calibration: Calibration | None = load_calibration(self.model_dir)
        self.duplicates = NearDuplicateDetector(
            threshold=settings.dedup_threshold, reference=settings.reference_location if reference else None
        )
        self.trusted = trust_model
        self.memo_size = 100_000
        self._memo: dict[str, pd.Series] = {}
        self._reserved: dict[str, None] = {}

    def with_reference(self, location: str | None) -> Scorer:
        """The same loaded models, with near-duplicates checked against another reference index."""
        if location == self.duplicates.reference:
            return self
        clones = self.__dict__.setdefault("_reference_clones", {})
        if location not in clones:
            clone = copy.copy(self)
            clone.duplicates = NearDuplicateDetector(threshold=self.settings.dedup_threshold, reference=location)
            clone.__dict__["_reference_clones"] = clones
            clones[location] = clone
        return clones[location]

    def require_calibration(self) -> Calibration:
        if self.calibration is None:
            raise NotCalibrated(
                f"{self.model_dir} has no calibration.json; run `auditor calibrate` for this model first"
            )
        return self.calibration

    def setup(self) -> Scorer:
        self.classifier.setup()
        self.duplicates.setup()
        return self

    def detect(self, texts: Sequence[Any], detector: Callable[[list], pd.DataFrame] | None = None) -> pd.DataFrame:
        """Per text: llm_probability, skip_reason and the perplexity signals (ppl_*).

        Results are remembered per exact text (bounded): deliveries repeat answers, and a
        repeated text costs nothing the second time. ``detector`` scores the texts not yet
        remembered (default: this process's models; a Dask worker's, in distributed audits)."""
        keys = [t if isinstance(t, str) else None for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k is not None and k not in self._memo))
        misses = [i for i, k in enumerate(keys) if k is None]
        fresh = (detector or self._detect_uncached)(todo + [texts[i] for i in misses])
        for i, key in enumerate(todo):
            self._remember(key, fresh.iloc[i])
        rows = []
        position = {i: len(todo) + j for j, i in enumerate(misses)}
        for i, key in enumerate(keys):
            rows.append(fresh.iloc[position[i]] if key is None else self._memo[key])
        return pd.DataFrame(rows, columns=fresh.columns).reset_index(drop=True) if rows else fresh

    @property
    def model_path(self) -> str:
        return str(self.model_dir)

    def unseen(self, texts: Sequence[Any]) -> list:
        """The texts :meth:`detect` would score for this batch, counting as seen the texts of
        batches sent out with :meth:`reserve` but not yet back (for distributed scoring)."""
        keys = [t if isinstance(t, str) else None for t in texts]
        todo = dict.fromkeys(k for k in keys if k is not None and k not in self._memo and k not in self._reserved)
        return list(todo) + [t for t, k in zip(texts, keys, strict=True) if k is None]

    def reserve(self, texts: Sequence[Any]) -> None:
        """Mark texts as on their way into the memo, evicting as :meth:`_remember` will."""
        for key in self.unseen(texts):
            if isinstance(key, str):
                if len(self._reserved) >= self.memo_size:
                    self._reserved.pop(next(iter(self._reserved)))
                self._reserved[key] = None

    def _remember(self, key: str, row: pd.Series) -> None:
        if len(self._memo) >= self.memo_size:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = row

    def _detect_uncached(self, texts: Sequence[Any]) -> pd.DataFrame:
        frame = self.classifier.score(texts)
        out = pd.DataFrame({PROBABILITY: frame[SCORE].to_numpy(dtype=float), SKIP_REASON: frame[SKIP_REASON]})
        for signal in SIGNALS:
            out[SIGNAL_PREFIX + signal] = frame[signal]
        out[SIGNAL_PREFIX + "token_truncated"] = frame["token_truncated"]
        out["text_truncated"] = frame["truncated_chars"]
        out["spans"] = frame["spans"].map(lambda s: s if isinstance(s, list) else [])
        return out

    def near_duplicates(self, texts: Sequence[Any]) -> pd.DataFrame:
        return self.duplicates.score(texts)[DUPLICATE_COLUMNS]

    def decide(self, scored: pd.DataFrame) -> pd.DataFrame:
        """Add ``flagged`` and ``flag_reason``: above the calibrated threshold, or a verified
        near-copy of a reference text known to be LLM output."""
        calibration = self.require_calibration()
        probability = scored[PROBABILITY].to_numpy(dtype=float)
        over = calibration.flags(probability)
        known_llm = scored.get("ref_label", pd.Series(index=scored.index, dtype=object)).eq("machine").to_numpy()
        reasons = []
        for i in range(len(scored)):
            why = []
            if over[i]:
                why.append(f"llm_probability {probability[i]:.3f} > threshold {calibration.threshold:.3f}")
            if known_llm[i]:
                why.append(
                    f"near-copy (Jaccard {scored['ref_jaccard'].iat[i]:.2f}) of known LLM output {scored['ref_key'].iat[i]}"
                )
            reasons.append("; ".join(why) or None)
        scored = scored.copy()
        scored[FLAGGED] = over | known_llm
        scored[FLAG_REASON] = reasons
        return scored

    def describe(self) -> dict[str, Any]:
        manifest = getattr(self.classifier, "manifest_", {})
        return {
            "model_dir": str(self.model_dir),
            "classifier": self.classifier.describe()
            | {"bundle": {k: manifest.get(k) for k in ("created_at", "training_counts", "versions")}},
            "perplexity": self.classifier.lm_.describe(),
            "near_duplicates": self.duplicates.describe()
            | {"reference_index": self.duplicates.index.describe() if self.duplicates.index is not None else None},
            "calibration": self.calibration.model_dump() if self.calibration else None,
        }


def detect_on_worker(texts: list, model_dir: str | None, trust_model: bool) -> pd.DataFrame:
    """A Dask task: score texts with the worker's models (loaded once per worker process)."""
    return cached_scorer(model_dir, trust_model, False)._detect_uncached(texts)


@lru_cache(maxsize=4)
def cached_scorer(model_dir: str | None, trust_model: bool, reference: bool) -> Scorer:
    """One loaded scorer per configuration and process: models load once."""
    return Scorer(get_settings(), Path(model_dir) if model_dir else None, trust_model, reference).setup()


def score_table(
    scorer: Scorer,
    frame: pd.DataFrame,
    text_col: str,
    chunk_rows: int,
    on_progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """All input columns plus the scoring columns. Near-duplicate clusters are found over
    the whole table, not per chunk, so copies far apart in the file still meet."""
    texts = frame[text_col].tolist()
    parts = []
    for start in range(0, len(texts), chunk_rows):
        parts.append(scorer.detect(texts[start : start + chunk_rows]))
        if on_progress:
            on_progress(min(chunk_rows, len(texts) - start))
    detected = pd.concat(parts, ignore_index=True) if parts else scorer.detect([])
    detected = pd.concat([detected, scorer.near_duplicates(texts).reset_index(drop=True)], axis=1)
    decided = scorer.decide(detected)
    decided["spans"] = decided["spans"].map(json.dumps)
    clashes = [c for c in decided.columns if c in frame.columns]
    if clashes:
        log.warning("input columns %s are replaced by the scorer's columns of the same name", clashes)
    out = frame.drop(columns=clashes).reset_index(drop=True)
    ordered = [PROBABILITY, FLAGGED, FLAG_REASON, SKIP_REASON] + [
        c for c in decided.columns if c not in (PROBABILITY, FLAGGED, FLAG_REASON, SKIP_REASON)
    ]
    return pd.concat([out, decided[ordered]], axis=1)
