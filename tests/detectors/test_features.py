"""Classifier inputs built from perplexity frames: histograms, layer selection, weights (no LM)."""

import numpy as np
import pandas as pd
import pytest

from detectors.classifier import EMBEDDING, LMTextClassifier, _balanced, feature_matrix
from detectors.perplexity import HISTOGRAM, HISTOGRAM_BINS, SIGNALS, token_histogram


def _stats(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ll = -rng.exponential(2.0, n)
    expected = -rng.uniform(0.5, 5.0, n)
    return np.stack([ll, expected, expected**2 + 1, rng.integers(0, 5000, n)]).astype(np.float32)


def test_token_histogram_gives_bin_shares_per_statistic():
    stats = _stats(200, 0)
    histogram = token_histogram(stats)
    assert histogram.shape == (sum(len(edges) + 1 for edges in HISTOGRAM_BINS.values()),)
    start = 0
    for edges in HISTOGRAM_BINS.values():
        block = histogram[start : start + len(edges) + 1]
        assert block.sum() == pytest.approx(1.0) and (block >= 0).all()
        start += len(edges) + 1
    rank_block = histogram[: len(HISTOGRAM_BINS["rank"]) + 1]
    assert rank_block[0] == pytest.approx(float((stats[3] == 0).mean()))  # rank 0: the top token
    assert token_histogram(np.zeros((4, 0), np.float32)).sum() == 0


def _frame(n: int, layers: tuple[int, ...], width: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({s: rng.normal(size=n) for s in SIGNALS})
    frame["n_tokens"] = rng.integers(10, 200, n)
    # block b of every embedding holds the value b, so a selection is easy to see
    frame[EMBEDDING] = [np.repeat(np.arange(len(layers), dtype=np.float32), width) for _ in range(n)]
    frame[HISTOGRAM] = [token_histogram(_stats(50, i)) for i in range(n)]
    return frame


def test_feature_matrix_picks_layers_and_histograms():
    pool = (4, 8, 16, -1)
    frame = _frame(5, pool)
    n_scalar, n_hist = len(SIGNALS), len(frame[HISTOGRAM][0])
    full = feature_matrix(frame, pool)
    assert full.shape == (5, n_scalar + n_hist + 3 * len(pool))
    chosen = feature_matrix(frame, pool, layers=(16, -1), histograms=False)
    assert chosen.shape == (5, n_scalar + 6)
    assert np.array_equal(chosen[0, n_scalar:], [2, 2, 2, 3, 3, 3])
    assert feature_matrix(frame, pool, layers=()).shape == (5, n_scalar + n_hist)


def test_balanced_weights_equalise_the_classes_and_keep_relative_weights():
    y = np.array([0, 0, 0, 1])
    weight = _balanced(np.array([1.0, 1.0, 2.0, 5.0]), y)
    assert weight[y == 0].sum() == pytest.approx(weight[y == 1].sum())
    assert weight[2] == pytest.approx(2 * weight[0])
    assert weight.mean() == pytest.approx(1.0)


def test_sample_weights_change_what_the_classifier_learns():
    """Two sources disagree about a feature; the weights decide which one the model follows."""
    rng = np.random.default_rng(2)
    n, pool = 400, (16, -1)
    frame = _frame(n, pool)
    y = np.tile([0, 1], n // 2)
    source_a = np.arange(n) < n // 2
    frame["ll_mean"] = np.where(source_a, y, 1 - y) + rng.normal(0, 0.1, n)
    probe = frame.iloc[:2].copy()
    probe["ll_mean"] = [0.0, 1.0]
    for favoured, direction in ((source_a, 1), (~source_a, -1)):
        weight = np.where(favoured, 1.0, 0.01)
        model = LMTextClassifier(lm=None, model="logistic", calibration_folds=2, histograms=False)
        model.lm = type("LM", (), {"pool_layers": pool, "embeddings": True})()
        model.fit_features(frame, y, sample_weight=weight)
        p = model.predict_proba_features(probe)[:, 1]
        assert direction * (p[1] - p[0]) > 0.15
