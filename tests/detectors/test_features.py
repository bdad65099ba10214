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


def _fitted_pair(tmp_path=None):
    """An LM head on synthetic perplexity frames and a small n-gram model on toy texts."""
    from detectors.ngram import NgramClassifier
    from detectors.perplexity import PerplexityDetector

    n, pool = 200, (16, -1)
    frame = _frame(n, pool)
    y = np.tile([0, 1], n // 2)
    frame["ll_mean"] = y + np.random.default_rng(3).normal(0, 0.5, n)
    texts = [("furthermore it is important to note " if label else "lol ok so ") + str(i) for i, label in enumerate(y)]
    ngram = NgramClassifier(word_features=2**10, char_features=2**10).fit(texts, y)
    lm = PerplexityDetector(embeddings=True, pool_layers=pool, histograms=True)
    model = LMTextClassifier(lm=lm, model="logistic", calibration_folds=2, ngram=ngram, ngram_weight=0.3)
    return model.fit_features(frame, y), frame, texts


def test_the_score_is_the_weighted_mean_of_both_parts_log_odds():
    model, frame, texts = _fitted_pair()
    parts = model.part_probabilities(frame, texts)
    lm, ngram = parts["lm_probability"], parts["ngram_probability"]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expected = 1 / (1 + np.exp(-(0.7 * logit(lm) + 0.3 * logit(ngram))))
    assert np.allclose(model.predict_proba_features(frame, texts)[:, 1], expected)
    assert not np.allclose(expected, lm) and not np.allclose(expected, ngram)
    with pytest.raises(ValueError, match="needs the texts"):
        model.predict_proba_features(frame)


def test_a_bundle_keeps_its_ngram_model(tmp_path):
    from detectors.bundle import NGRAM_DIR, load_bundle, save_bundle

    model, frame, texts = _fitted_pair()
    save_bundle(model, tmp_path / "bundle")
    assert (tmp_path / "bundle" / NGRAM_DIR / "ngram.skops").is_file()
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.ngram is not None and loaded.ngram_weight == 0.3
    assert np.allclose(
        loaded.predict_proba_features(frame, texts), model.predict_proba_features(frame, texts), atol=1e-6
    )


def test_a_bundle_reads_the_signals_it_was_trained_on(tmp_path, monkeypatch):
    """A bundle from before the LM detector gained signals (schema 1 recorded none) keeps
    reading the nine it was trained on; newer bundles record theirs."""
    import json

    import detectors.classifier as classifier_module
    from detectors.bundle import MANIFEST, load_bundle, save_bundle

    model, frame, texts = _fitted_pair()
    save_bundle(model, tmp_path / "new")
    recorded = json.loads((tmp_path / "new" / MANIFEST).read_text())["scalar_features"]
    assert recorded == list(classifier_module.SCALAR_FEATURES) and "lastde" in recorded

    monkeypatch.setattr(classifier_module, "SCALAR_FEATURES", classifier_module.SCALAR_FEATURES_V1)
    old, _, _ = _fitted_pair()
    monkeypatch.undo()
    save_bundle(old, tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / MANIFEST).read_text())
    del manifest["scalar_features"]
    (tmp_path / "old" / MANIFEST).write_text(json.dumps({**manifest, "bundle_schema": 1}))
    loaded = load_bundle(tmp_path / "old")
    changed = frame.assign(lastde=frame["lastde"] * 100, ll_volatility=-frame["ll_volatility"])
    assert np.allclose(loaded.predict_proba_features(changed, texts), old.predict_proba_features(frame, texts))
    with pytest.raises(ValueError):  # the newer signals alone do not fit the old network's inputs
        loaded.scalar_features_ = classifier_module.SCALAR_FEATURES
        loaded.predict_proba_features(frame, texts)
