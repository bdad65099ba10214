"""Detectors come from the registry by name; the scikit-learn contract stays honest."""

from __future__ import annotations

import pytest
from sklearn.base import ClassifierMixin

from detectors import create, load, registered
from detectors.classifier import LMTextClassifier
from detectors.duplicates import NearDuplicateDetector
from detectors.ngram import NgramClassifier


def test_every_detector_is_registered_by_name():
    assert {"perplexity", "classifier", "minhash", "ngram-classifier"} <= set(registered())
    detector = create("minhash", threshold=0.5)
    assert isinstance(detector, NearDuplicateDetector) and detector.threshold == 0.5
    with pytest.raises(KeyError, match="unknown detector 'nope'; registered: classifier"):
        create("nope")


def test_detectors_without_a_saved_form_are_not_loaded():
    with pytest.raises(ValueError, match="has no saved form"):
        load("minhash")


@pytest.mark.parametrize("cls", [LMTextClassifier, NgramClassifier])
def test_classifiers_keep_scikit_learns_score(cls):
    """`score(X, y)` is scikit-learn's accuracy; the detector contract's method is `detect`."""
    assert cls.score is ClassifierMixin.score and callable(cls.detect)


def test_ngram_classifier_score_is_accuracy(mini_corpus):
    sample = mini_corpus[mini_corpus.split == "train"].groupby("label").head(150)
    model = NgramClassifier(word_features=2**12, char_features=2**12).fit(sample.text.tolist(), sample.label)
    accuracy = model.score(sample.text.tolist(), sample.label.to_numpy())
    assert isinstance(accuracy, float) and 0.5 < accuracy <= 1.0


def test_detectors_declare_their_outputs_and_directions():
    from detectors import machine_directions, output_columns
    from detectors.perplexity import MACHINE_DIRECTION, SIGNALS, PerplexityDetector

    columns = output_columns()
    assert list(columns)[: len(SIGNALS) + 1] == [f"ppl_{s}" for s in (*SIGNALS, "token_truncated")]
    assert [o.name for o in PerplexityDetector.outputs] == [*SIGNALS, "token_truncated"]
    # The directions the perplexity detector's methods intend, as it declared them by hand before.
    assert MACHINE_DIRECTION == {
        "ll_mean": 1, "ll_std": -1, "logrank_mean": -1, "entropy_mean": -1, "fast_detectgpt": 1, "binoculars": -1,
        "min_k_prob": 1, "rank1_frac": 1, "rank10_frac": 1, "ll_volatility": -1, "lastde": 1,
    }  # fmt: skip
    assert machine_directions() == {**MACHINE_DIRECTION, "lm_probability": 1, "ngram_probability": 1}
    assert columns["ppl_n_tokens"].machine is None and str(columns["ppl_n_tokens"].type) == "int64"


def test_an_output_another_detector_declares_is_refused():
    import pyarrow as pa

    from detectors import Detector, OutputColumn, register, registered

    class Copycat(Detector):
        name = "copycat"
        version = "1"
        outputs = (OutputColumn("ll_mean", pa.float64(), 1, "the perplexity detector's name"),)

        def _score_valid(self, texts):  # pragma: no cover - never registered
            raise NotImplementedError

    with pytest.raises(ValueError, match=r"\['ll_mean'\] already declared by 'perplexity'"):
        register(Copycat)
    assert "copycat" not in registered()
    with pytest.raises(ValueError, match="machine must be 1, -1 or None"):
        OutputColumn("x", pa.float64(), 2, "")  # type: ignore[arg-type]
