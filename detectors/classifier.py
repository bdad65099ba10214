"""The LM-text classifier: a scikit-learn estimator over what the causal LM sees in a text,
optionally joined with a word and character n-gram model of the text itself.

LM features per text are the perplexity detector's scalar signals (likelihood, rank,
entropy, Fast-DetectGPT, Binoculars-style ratio, Min-K%, volatility, length), the shares of
its tokens in bins of rank, log-probability, entropy and surprise (GLTR-style histograms), and
its hidden states mean-pooled over the text at a middle and the last layer. A small network (or
a logistic regression) maps them to a probability, calibrated by sigmoid scaling across folds.

With an n-gram model (:class:`~detectors.ngram.NgramClassifier`, trained on many more texts
than the LM features can be computed for), the score is the weighted mean of the two models'
log-odds: the two fail on different texts (the LM on text from writers and collections it has
not seen, the n-gram model on tasks whose wording it has not seen), and a fixed mean cannot
learn to trust either one on the data sets it was fitted to.

Probabilities are calibrated for equal priors (classes are weighted to balance), i.e.
``p / (1 - p)`` is the likelihood ratio of "LLM-written" against "human-written". The
auditor turns scores into prevalence estimates for the real, unknown base rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit, logit
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from detectors.base import SCORE, SKIP_REASON, Detector, OutputColumn, register
from detectors.ngram import NgramClassifier
from detectors.perplexity import HISTOGRAM, SIGNALS, PerplexityDetector

EMBEDDING = "lm_embedding"
# The two parts' probabilities, reported next to the score as evidence.
LM_PROBABILITY = "lm_probability"
NGRAM_PROBABILITY = "ngram_probability"
CLASSIFIER_PARTS = (LM_PROBABILITY, NGRAM_PROBABILITY)
# Hidden states the shipped model reads: on held-out data sets every fourth of SmolLM2's 30
# layers did no better than layer 16 and the last, and on GPTurk worse (an earlier round of
# benchmarks/detection.py --variants).
SHIPPED_LAYERS = (16, -1)
SCALAR_FEATURES = tuple(s for s in SIGNALS if s != "n_tokens")
# The scalar signals of bundles saved before they recorded theirs (bundle schema 1).
SCALAR_FEATURES_V1 = (
    "ll_mean", "ll_std", "logrank_mean", "entropy_mean", "fast_detectgpt", "binoculars", "min_k_prob", "rank1_frac", "rank10_frac"
)  # fmt: skip


def _vectors(signals: pd.DataFrame, column: str) -> np.ndarray:
    return np.stack(signals[column].tolist()) if column in signals else np.empty((len(signals), 0))


def feature_matrix(
    signals: pd.DataFrame,
    pool_layers: tuple[int, ...] = (),
    layers: tuple[int, ...] | None = None,
    histograms: bool = True,
    scalars: Sequence[str] = SCALAR_FEATURES,
) -> np.ndarray:
    """Model inputs from a perplexity frame (rows of scored texts only): the ``scalars`` signals,
    the log token count, the histograms, the embedding. The embedding holds ``pool_layers``
    side by side; ``layers`` picks some of them (``None``: all)."""
    scalar_values = signals[list(scalars)].to_numpy(dtype=np.float64)
    length = np.log1p(signals["n_tokens"].to_numpy(dtype=np.float64))[:, None]
    embedding = _vectors(signals, EMBEDDING)
    if layers is not None and embedding.shape[1]:
        width = embedding.shape[1] // len(pool_layers)
        columns = [np.arange(b * width, (b + 1) * width) for b in map(list(pool_layers).index, layers)]
        embedding = embedding[:, np.concatenate(columns)] if columns else embedding[:, :0]
    histogram = _vectors(signals, HISTOGRAM) if histograms else np.empty((len(signals), 0))
    return np.nan_to_num(np.hstack([scalar_values, length, histogram, embedding]), nan=0.0, posinf=0.0, neginf=0.0)


@register
class LMTextClassifier(ClassifierMixin, Detector):
    """Probability that a text was written by an LLM.

    ``lm`` is the :class:`PerplexityDetector` whose signals and pooled hidden states are
    the features (it must be configured with ``embeddings=True`` when ``layers`` asks for
    hidden states). ``layers`` picks which of its pooled layers to use (``None``: all, ``()``:
    none), ``histograms`` whether to use its token histograms when it makes them. ``model`` is
    ``"mlp"`` or ``"logistic"``. ``ngram``: an n-gram model joined to the LM's (fitted with the
    LM head by ``fit`` when it is not fitted yet), weighted ``ngram_weight`` in the mean of
    log-odds. ``fit(texts, y)`` / ``predict_proba(texts)`` follow scikit-learn;
    ``fit_features``/``predict_proba_features`` take precomputed perplexity frames so that
    training and evaluation can reuse one expensive LM pass.
    """

    name = "classifier"
    version = "3"
    # Its frame also carries its perplexity detector's signals and spans (declared there).
    outputs = tuple(
        OutputColumn(
            part,
            pa.float64(),
            1,
            "P(LLM-written) of one part of the classifier (llm_probability joins the parts' log-odds)",
        )
        for part in CLASSIFIER_PARTS
    )

    def __init__(
        self,
        lm: PerplexityDetector | None = None,
        model: str = "mlp",
        layers: tuple[int, ...] | None = None,
        histograms: bool = True,
        hidden_units: int = 128,
        alpha: float = 1e-2,
        C: float = 0.05,
        calibration_folds: int = 5,
        random_state: int = 0,
        ngram: NgramClassifier | None = None,
        ngram_weight: float = 0.5,
    ):
        self.lm = lm
        self.model = model
        self.layers = layers
        self.histograms = histograms
        self.hidden_units = hidden_units
        self.alpha = alpha
        self.C = C
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.ngram = ngram
        self.ngram_weight = ngram_weight

    @property
    def lm_(self) -> PerplexityDetector:
        if self.lm is None:
            self.lm = PerplexityDetector(embeddings=self.layers != ())
        if self.layers != () and not self.lm.embeddings:
            raise ValueError("hidden-state features need PerplexityDetector(embeddings=True); or pass layers=()")
        return self.lm

    def setup(self) -> LMTextClassifier:
        self.lm_.setup()
        if self.ngram is not None:
            self.ngram.setup()
        return self

    # --------------------------------------------------------------- training
    def fit(
        self, texts: Sequence[str], labels: Sequence[int] | None = None, sample_weight: Sequence[float] | None = None
    ) -> LMTextClassifier:
        if labels is None:
            raise ValueError("the classifier is supervised: pass labels (1 = LLM-written, 0 = human)")
        if self.ngram is not None and not hasattr(self.ngram, "model_"):
            self.ngram.fit(texts, labels)
        signals = self.lm_.detect(texts)
        return self.fit_features(signals, np.asarray(labels), sample_weight)

    def features(self, signals: pd.DataFrame) -> np.ndarray:
        pool_layers = tuple(self.lm_.pool_layers) if self.lm_.embeddings else ()
        # the signals it was trained on: the LM detector may have gained some since
        scalars = getattr(self, "scalar_features_", SCALAR_FEATURES)
        return feature_matrix(signals, pool_layers, self.layers, self.histograms, scalars)

    def fit_features(
        self, signals: pd.DataFrame, labels: np.ndarray, sample_weight: Sequence[float] | None = None
    ) -> LMTextClassifier:
        """``sample_weight`` (e.g. ``auditor.corpus.training_weights``) sets how much each text
        counts; the classes are balanced on top of it either way."""
        usable = signals[SKIP_REASON].isna().to_numpy() if SKIP_REASON in signals else np.ones(len(signals), bool)
        self.scalar_features_ = SCALAR_FEATURES
        x, y = self.features(signals[usable]), np.asarray(labels)[usable].astype(int)
        weight = np.ones(len(signals)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        weight = weight[usable]
        if len(np.unique(y)) != 2:
            raise ValueError("training needs both human (0) and LLM-written (1) examples")
        folds = min(self.calibration_folds, int(np.bincount(y).min()))
        if folds < 2:
            raise ValueError("training needs at least two examples of each class")
        # Scale outside the calibrated ensemble so the network itself receives the class
        # weights (a Pipeline would not route sample_weight to it).
        scaler = StandardScaler().fit(x)
        calibrated = CalibratedClassifierCV(self._base_model(), method="sigmoid", cv=folds)
        calibrated.fit(scaler.transform(x), y, sample_weight=_balanced(weight, y))
        self.model_ = Pipeline([("scale", scaler), ("classify", calibrated)])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = x.shape[1]
        self.training_counts_ = {"human": int((y == 0).sum()), "machine": int((y == 1).sum())}
        return self

    def _base_model(self):
        if self.model == "mlp":
            return MLPClassifier(
                hidden_layer_sizes=(self.hidden_units,),
                alpha=self.alpha,
                early_stopping=True,
                max_iter=200,
                random_state=self.random_state,
            )
        if self.model == "logistic":
            return LogisticRegression(C=self.C, max_iter=5000)
        raise ValueError(f"model must be 'mlp' or 'logistic', not {self.model!r}")

    # -------------------------------------------------------------- inference
    def predict_proba(self, texts: Sequence[Any]) -> np.ndarray:
        """``[n, 2]`` class probabilities; unscorable texts get NaN rows."""
        texts = list(texts)
        return self.predict_proba_features(self.lm_.detect(texts), texts)

    def predict_proba_features(self, signals: pd.DataFrame, texts: Sequence[Any] | None = None) -> np.ndarray:
        """``[n, 2]`` class probabilities from a perplexity frame (and, when the classifier has an
        n-gram model, the same texts in the same order)."""
        score = self._combine(self.part_probabilities(signals, texts))
        return np.column_stack([1 - score, score])

    def _combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        if NGRAM_PROBABILITY not in parts:
            return parts[LM_PROBABILITY]
        w = self.ngram_weight
        lm, ngram = (np.clip(parts[k], 1e-6, 1 - 1e-6) for k in (LM_PROBABILITY, NGRAM_PROBABILITY))
        return expit((1 - w) * logit(lm) + w * logit(ngram))

    def part_probabilities(self, signals: pd.DataFrame, texts: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
        """P(LLM-written) per part: the LM head's and, when there is one, the n-gram model's."""
        self._check_fitted()
        lm = np.full(len(signals), np.nan)
        usable = signals[SKIP_REASON].isna().to_numpy() if SKIP_REASON in signals else np.ones(len(signals), bool)
        if usable.any():
            lm[usable] = self.model_.predict_proba(self.features(signals[usable]))[:, 1]
        if self.ngram is None:
            return {LM_PROBABILITY: lm}
        if texts is None or len(texts) != len(signals):
            raise ValueError("a classifier with an n-gram model needs the texts along with their LM signals")
        ngram = np.where(usable, self.ngram.predict_proba(texts)[:, 1], np.nan)
        return {LM_PROBABILITY: lm, NGRAM_PROBABILITY: ngram}

    def predict(self, texts: Sequence[Any]) -> np.ndarray:
        return (self.predict_proba(texts)[:, 1] >= 0.5).astype(int)

    def detect(self, texts: Sequence[Any]) -> pd.DataFrame:
        """The perplexity detector's signals and spans, each part's probability, and ``score`` =
        P(LLM-written)."""
        texts = list(texts)
        signals = self.lm_.detect(texts)
        frame = signals.drop(columns=[EMBEDDING, HISTOGRAM, SCORE], errors="ignore")
        parts = self.part_probabilities(signals, texts)
        for name, values in parts.items():
            frame[name] = values
        frame[SCORE] = self._combine(parts)
        return frame

    def _score_valid(self, texts: list[str]) -> pd.DataFrame:  # pragma: no cover - detect() is overridden
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("LMTextClassifier is not fitted: call fit() or load a trained bundle")


def _balanced(weight: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights rescaled so both classes weigh the same in total, mean 1."""
    out = weight.astype(float).copy()
    for label in (0, 1):
        out[y == label] *= len(y) / (2 * out[y == label].sum())
    return out
