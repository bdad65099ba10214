"""A cheap LM-text classifier over word and character n-grams, for whole corpora.

The LM classifier needs a forward pass of the causal LM per text; at pre-training scale
(millions of documents per shard) that is only affordable on a sample. This detector
needs no LM: hashed word 1-2-grams and character 3-5-grams (within word boundaries),
sublinear TF-IDF and a class-balanced logistic regression. It scores thousands of texts
per second on one core, is weaker than the LM classifier (see the model card of the
shipped ``fast`` bundle) and, like every detector here, only scores: the operating
threshold and its error rates are stored next to it by the auditor's calibration.

Saved as a directory: ``ngram.skops`` (the fitted pipeline, loaded without executing
code from the file; its weights in float32 and compressed, about 5 MB) and ``ngram.json``
(what it is and what it was trained on). The shipped model lives inside the default classifier
bundle, which joins it to the LM classifier; the pre-training gate scores with it alone.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from detectors.base import SCORE, Detector, register
from detectors.provenance import UntrustedModelFile, library_versions

MODEL_FILE = "ngram.skops"
MANIFEST = "ngram.json"


def default_fast_dir() -> Path:
    """The shipped n-gram model: part of the default classifier bundle, and the gate's fast scorer."""
    return Path(str(files("detectors") / "artifacts" / "default" / "ngram"))


@register
class NgramClassifier(ClassifierMixin, Detector):
    """P(LLM-written) from hashed word and character n-grams (no LM)."""

    name = "ngram-classifier"
    version = "1"

    def __init__(self, word_features: int = 2**19, char_features: int = 2**19, C: float = 4.0, max_iter: int = 2000):
        self.word_features = word_features
        self.char_features = char_features
        self.C = C
        self.max_iter = max_iter

    def _pipeline(self) -> Pipeline:
        words = HashingVectorizer(ngram_range=(1, 2), n_features=self.word_features, alternate_sign=False, norm=None)
        chars = HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=self.char_features, alternate_sign=False, norm=None
        )
        return Pipeline(
            [
                ("ngrams", FeatureUnion([("words", words), ("chars", chars)])),
                ("tfidf", TfidfTransformer(sublinear_tf=True)),
                ("classify", LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight="balanced")),
            ]
        )

    def fit(self, texts: Sequence[str], labels: Sequence[int] | None = None) -> NgramClassifier:
        if labels is None:
            raise ValueError("the classifier is supervised: pass labels (1 = LLM-written, 0 = human)")
        y = np.asarray(labels, dtype=int)
        if len(np.unique(y)) != 2:
            raise ValueError("training needs both human (0) and LLM-written (1) examples")
        self.model_ = self._pipeline().fit(list(texts), y)
        self.classes_ = np.array([0, 1])
        self.training_counts_ = {"human": int((y == 0).sum()), "machine": int((y == 1).sum())}
        return self

    def counts(self, texts: Sequence[str]):
        """The hashed n-gram counts of ``texts`` (sparse): the part of the model that learns
        nothing, so that many models (benchmark folds) can be fitted on one vectorisation."""
        return self._pipeline().named_steps["ngrams"].transform(list(texts))

    def fit_counts(self, counts, labels: Sequence[int]) -> NgramClassifier:
        """:meth:`fit` on :meth:`counts` computed earlier (same result as fitting on the texts)."""
        y = np.asarray(labels, dtype=int)
        if len(np.unique(y)) != 2:
            raise ValueError("training needs both human (0) and LLM-written (1) examples")
        pipeline = self._pipeline()
        weighting = Pipeline(pipeline.steps[1:]).fit(counts, y)
        self.model_ = Pipeline([pipeline.steps[0], *weighting.steps])
        self.classes_ = np.array([0, 1])
        self.training_counts_ = {"human": int((y == 0).sum()), "machine": int((y == 1).sum())}
        return self

    def predict_proba(self, texts: Sequence[Any]) -> np.ndarray:
        """``[n, 2]`` class probabilities; texts that cannot be scored get NaN rows."""
        score = self.detect(texts)[SCORE].to_numpy(dtype=float)
        return np.column_stack([1 - score, score])

    def predict(self, texts: Sequence[Any]) -> np.ndarray:
        return (self.predict_proba(texts)[:, 1] >= 0.5).astype(int)

    def _score_valid(self, texts: list[str]) -> pd.DataFrame:
        if not hasattr(self, "model_"):
            raise RuntimeError("NgramClassifier is not fitted: call fit() or load() a trained model")
        return pd.DataFrame({SCORE: self.model_.predict_proba(texts)[:, 1]})

    def save(self, directory: Path, training: dict[str, Any] | None = None) -> Path:
        import skops.io as sio

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _weights_to_float32(self.model_)
        sio.dump(self.model_, directory / MODEL_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        manifest = {
            "detector": self.describe(),
            "training_counts": self.training_counts_,
            "training": training or {},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": library_versions(),
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path | None = None, trust: bool = False) -> NgramClassifier:
        import skops.io as sio

        directory = Path(directory) if directory else default_fast_dir()
        if not (directory / MANIFEST).exists():
            raise FileNotFoundError(f"{directory}: not an n-gram classifier (no {MANIFEST})")
        manifest = json.loads((directory / MANIFEST).read_text())
        untrusted = sio.get_untrusted_types(file=directory / MODEL_FILE)
        if untrusted and not trust:
            raise UntrustedModelFile(
                f"{directory / MODEL_FILE} contains types outside skops' safe set: {untrusted}; only pass "
                "--trust-model if you made it or trust whoever did."
            )
        detector = cls(**manifest["detector"]["params"])
        detector.model_ = sio.load(directory / MODEL_FILE, trusted=untrusted)
        detector.classes_ = np.array([0, 1])
        detector.training_counts_ = manifest["training_counts"]
        detector.manifest_ = manifest
        detector.directory_ = str(directory)
        return detector


def _weights_to_float32(pipeline: Pipeline) -> None:
    """Halve the saved size: the idf weights and coefficients do not need float64 (the
    probabilities move by less than 1e-6)."""
    tfidf, classify = pipeline.named_steps["tfidf"], pipeline.named_steps["classify"]
    tfidf.idf_ = tfidf.idf_.astype(np.float32)
    classify.coef_ = classify.coef_.astype(np.float32)
