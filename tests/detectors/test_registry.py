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
