"""The one scorer: texts in, the scored-items table out (:data:`~auditor.scoring.schema.SCORED`).

Three stages, usable on their own: :meth:`Scorer.detect` (the model's calibrated probability
and its signals, remembered per text), :meth:`Scorer.near_duplicates` (evidence against the
rest of the table and the reference index) and :meth:`Scorer.decide` (the flag, with its
reason, at the calibrated threshold); :meth:`Scorer.score` runs all three. ``auditor score``,
``calibrate``, ``audit``, ``gate``, ``POST /v1/score`` and the service's audit jobs all go
through it. The scoring model and the near-duplicate detector come from the detector
registry by name, and so do the further detectors the ``detectors`` setting names
(``AUDITOR_DETECTORS``): every detector's declared outputs become columns of the table
(:func:`detectors.output_columns`). The scorer owns thresholds and decisions, the detectors
only score: ``llm_probability`` is the scoring model's, the others add evidence.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from auditor.calibration import Calibration, load_calibration
from auditor.config import Settings, get_settings
from auditor.scoring.schema import (
    FLAG_REASON,
    FLAGGED,
    PROBABILITY,
    SCORED,
    SKIP_REASON,
    SPANS,
    TEXT_TRUNCATED,
)
from detectors import SCORE, Detector, create, load, output_columns
from detectors.bundle import default_bundle_dir
from detectors.duplicates import DUPLICATE_COLUMNS, NearDuplicateDetector
from detectors.ngram import default_fast_dir

if TYPE_CHECKING:
    from auditor.execution import Executor

log = logging.getLogger(__name__)

# The scoring models by kind: the registered detector that computes P(LLM-written).
MODELS = {"lm": "classifier", "fast": "ngram-classifier"}


class NotCalibratedError(RuntimeError):
    pass


def default_model_dir(kind: str, settings: Settings) -> Path:
    if kind == "fast":
        return default_fast_dir()
    return Path(settings.model_dir or default_bundle_dir())


def _runtime(kind: str, settings: Settings) -> dict[str, Any]:
    """Settings that change where and how fast a model runs, never what it computes."""
    if kind != "lm":
        return {}
    return {
        "device": settings.device,
        "dtype": settings.dtype,
        "quantize": settings.quantize,
        "batch_tokens": settings.batch_tokens,
        "cache_dir": str(settings.cache_dir),
    }


class Scorer:
    """Loads the models once; turns batches of texts into the scored-items table.

    ``kind`` is ``"lm"`` (the LM classifier bundle, the default) or ``"fast"`` (the n-gram
    classifier the gate uses). ``reference=False`` leaves out the shared reference index
    (near-duplicates are still found within each table)."""

    def __init__(
        self,
        settings: Settings,
        model_dir: Path | None = None,
        trust_model: bool = False,
        reference: bool = True,
        kind: str = "lm",
    ):
        if kind not in MODELS:
            raise ValueError(f"unknown scorer {kind!r}; use one of {', '.join(MODELS)}")
        self.settings = settings
        self.kind = kind
        self.model_dir = Path(model_dir) if model_dir else default_model_dir(kind, settings)
        self.classifier = load(MODELS[kind], self.model_dir, trust=trust_model, **_runtime(kind, settings))
        self.calibration: Calibration | None = load_calibration(self.model_dir)
        self.duplicates = self._duplicates(settings.reference_location if reference else None)
        # More detectors by registered name: their declared outputs join the model's signals.
        self.detectors: list[Detector] = [create(name) for name in settings.detectors]
        self.trusted = trust_model
        self.memo_size = 100_000
        self._memo: dict[str, pd.Series] = {}
        self._reserved: dict[str, None] = {}

    def _duplicates(self, location: str | None) -> NearDuplicateDetector:
        detector = create("minhash", threshold=self.settings.dedup_threshold, reference=location)
        assert isinstance(detector, NearDuplicateDetector)
        return detector

    def with_reference(self, location: str | None) -> Scorer:
        """The same loaded models, with near-duplicates checked against another reference index."""
        if location == self.duplicates.reference:
            return self
        clones = self.__dict__.setdefault("_reference_clones", {})
        if location not in clones:
            clone = copy.copy(self)
            clone.duplicates = self._duplicates(location)
            clone.__dict__["_reference_clones"] = clones
            clones[location] = clone
        scorer: Scorer = clones[location]
        return scorer

    def require_calibration(self) -> Calibration:
        if self.calibration is None:
            raise NotCalibratedError(
                f"{self.model_dir} has no calibration.json; run `auditor calibrate` for this model first"
            )
        return self.calibration

    def setup(self) -> Scorer:
        self.classifier.setup()
        self.duplicates.setup()
        for detector in self.detectors:
            detector.setup()
        return self

    @property
    def model_path(self) -> str:
        return str(self.model_dir)

    # ------------------------------------------------------------------ detection
    def detect(self, texts: Sequence[Any], detector: Callable[[list], pd.DataFrame] | None = None) -> pd.DataFrame:
        """Per text: llm_probability, skip_reason, the detectors' declared outputs (the model's
        ppl_* signals, its parts, further detectors'), text_truncated, spans.

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
        for i, text_key in enumerate(keys):
            rows.append(fresh.iloc[position[i]] if text_key is None else self._memo[text_key])
        return pd.DataFrame(rows, columns=fresh.columns).reset_index(drop=True) if rows else fresh

    def detect_all(
        self, texts: Sequence[Any], chunk_rows: int | None = None, on_progress: Callable[[int], None] | None = None
    ) -> pd.DataFrame:
        """:meth:`detect` over many texts, a chunk at a time (progress after each chunk)."""
        chunk = chunk_rows or self.settings.chunk_rows
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self.detect(texts[start : start + chunk]))
            if on_progress:
                on_progress(min(chunk, len(texts) - start))
        return pd.concat(parts, ignore_index=True) if parts else self.detect([])

    def detect_later(self, texts: Sequence[Any], executor: Executor) -> Callable[[], pd.DataFrame]:
        """:meth:`detect` of ``texts`` as a thunk. On a cluster the texts this process has not
        seen (counting those already sent out) are scored now by a worker's models; calling
        the thunk waits for them. In this process nothing runs until it is called."""
        if executor.local:
            return lambda: self.detect(texts)
        future = executor.submit(detect_on_worker, self.unseen(texts), self.kind, self.model_path, self.trusted)
        self.reserve(texts)
        return lambda: self.detect(texts, lambda _: future.result())

    def probabilities(self, texts: Sequence[Any]) -> np.ndarray:
        """llm_probability per text (NaN where skipped)."""
        return self.detect(texts)[PROBABILITY].to_numpy(dtype=float)

    def unseen(self, texts: Sequence[Any]) -> list[Any]:
        """The texts :meth:`detect` would score for this batch, counting as seen the texts of
        batches sent out with :meth:`reserve` but not yet back (for distributed scoring)."""
        keys = [t if isinstance(t, str) else None for t in texts]
        todo: list[Any] = list(
            dict.fromkeys(k for k in keys if k is not None and k not in self._memo and k not in self._reserved)
        )
        return todo + [t for t, k in zip(texts, keys, strict=True) if k is None]

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
        frame = self.classifier.detect(texts)
        out = pd.DataFrame({PROBABILITY: frame[SCORE].to_numpy(dtype=float), SKIP_REASON: frame[SKIP_REASON]})
        # Each declared output from the first frame that has it: the model's, then the others'.
        frames = [frame, *(detector.detect(texts) for detector in self.detectors)]
        for column, output in output_columns().items():
            source = next((f for f in frames if output.name in f), None)
            if source is not None:
                out[column] = source[output.name].set_axis(out.index)
        out[TEXT_TRUNCATED] = frame["truncated_chars"]
        spans = frame[SPANS] if SPANS in frame else pd.Series([None] * len(frame), dtype=object)
        out[SPANS] = spans.map(lambda s: s if isinstance(s, list) else []).to_numpy()
        return out

    # ------------------------------------------------------------ evidence, decision
    def near_duplicates(self, texts: Sequence[Any], groups: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        return self.duplicates.detect(texts, groups)[list(DUPLICATE_COLUMNS)]

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

    def score(
        self,
        texts: Sequence[Any],
        detected: pd.DataFrame | None = None,
        chunk_rows: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """The scored-items table of ``texts``, in input order (columns: :data:`SCORED`).

        ``detected``: the output of :meth:`detect` for these texts when it was computed already
        (micro-batched, resumed or on a cluster). Near-duplicates are found over all ``texts``
        at once, so copies far apart still meet."""
        if detected is None:
            detected = self.detect_all(texts, chunk_rows, on_progress)
        return self._scored(detected, self.near_duplicates(texts))

    def score_requests(
        self, requests: Sequence[Sequence[Any]], detected: pd.DataFrame | None = None
    ) -> list[pd.DataFrame]:
        """:meth:`score` of each of several independent requests, in one pass: each request's
        table is what scoring it alone gives (near-duplicates are looked for within a request
        and against the reference index, never across requests), at a fraction of the cost per
        request. ``detected``: :meth:`detect` of all their texts in order, when computed already."""
        texts = [text for request in requests for text in request]
        sizes = [len(request) for request in requests]
        if detected is None:
            detected = self.detect(texts)
        table = self._scored(detected, self.near_duplicates(texts, np.repeat(np.arange(len(requests)), sizes)))
        bounds = np.cumsum([0, *sizes])
        return [
            table.iloc[start:end].reset_index(drop=True) for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def _scored(self, detected: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
        table = self.decide(pd.concat([detected.reset_index(drop=True), evidence.reset_index(drop=True)], axis=1))
        table["spans"] = table["spans"].map(lambda s: s if isinstance(s, str) or s is None else json.dumps(s))
        return SCORED.conform(table)

    def describe(self) -> dict[str, Any]:
        manifest = getattr(self.classifier, "manifest_", {})
        lm = getattr(self.classifier, "lm_", None)
        return {
            "model_dir": str(self.model_dir),
            "classifier": self.classifier.describe()
            | {"bundle": {k: manifest.get(k) for k in ("created_at", "training_counts", "versions")}},
            "perplexity": lm.describe() if lm is not None else None,
            "near_duplicates": self.duplicates.describe()
            | {"reference_index": self.duplicates.index.describe() if self.duplicates.index is not None else None},
            "calibration": self.calibration.model_dump() if self.calibration else None,
        } | ({"detectors": [d.describe() for d in self.detectors]} if self.detectors else {})


def detect_on_worker(texts: list, kind: str, model_dir: str | None, trust_model: bool) -> pd.DataFrame:
    """A Dask task: score texts with the worker's models (loaded once per worker process)."""
    return cached_scorer(model_dir, trust_model, False, kind)._detect_uncached(texts)


@lru_cache(maxsize=4)
def cached_scorer(model_dir: str | None, trust_model: bool, reference: bool, kind: str = "lm") -> Scorer:
    """One loaded scorer per configuration and process: models load once."""
    return Scorer(get_settings(), Path(model_dir) if model_dir else None, trust_model, reference, kind).setup()


def score_table(
    scorer: Scorer, frame: pd.DataFrame, text_col: str, on_progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """All input columns, then the scored-items columns (``auditor score``)."""
    scored = scorer.score(frame[text_col].tolist(), on_progress=on_progress)
    clashes = [c for c in scored.columns if c in frame.columns]
    if clashes:
        log.warning("input columns %s are replaced by the scorer's columns of the same name", clashes)
    return SCORED.conform(pd.concat([frame.drop(columns=clashes).reset_index(drop=True), scored], axis=1))
