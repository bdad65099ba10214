"""The fast n-gram classifier: learns from real texts, scores the contract's way, round-trips safely."""

import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import FunctionTransformer

from detectors import create
from detectors.bundle import UntrustedModelFile
from detectors.ngram import NgramClassifier


# Held-out AUROC floors: about 1,000 training texts of seven sets (the mini corpus the repository
# ships; measured 0.75) learn less than 3,000 of HC3 and Worker-vs-GPT (the full public corpus).
@pytest.fixture(scope="module", params=["mini", pytest.param("full", marks=pytest.mark.corpus)])
def splits(request):
    """Training texts and held-out texts (other pairing groups), and the AUROC they must reach."""
    if request.param == "mini":
        rows = request.getfixturevalue("mini_corpus")
        return rows[rows.split.isin(["train", "calibration"])], rows[rows.split == "test"], 0.7
    corpus = request.getfixturevalue("corpus")
    rows = corpus[corpus.dataset.isin(["hc3_partial", "worker_vs_gpt"])]
    train = rows[rows.split == "train"].groupby("label").sample(1500, random_state=0)
    test = rows[rows.split == "test"].groupby("label").sample(400, random_state=0)
    return train, test, 0.8


@pytest.fixture(scope="module")
def fitted(splits):
    train, _, _ = splits
    return NgramClassifier(word_features=2**16, char_features=2**16).fit(train.text.tolist(), train.label.to_numpy())


def test_separates_held_out_human_and_llm_texts(fitted, splits):
    _, test, floor = splits
    frame = fitted.detect(test.text.tolist())
    scored = frame["score"].notna().to_numpy()
    assert frame.loc[~scored, "skip_reason"].str.startswith("too_short").all() and scored.mean() > 0.99
    scores = frame["score"].to_numpy()[scored]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc_score(test.label[scored], scores) > floor


def test_unscorable_texts_get_a_reason_not_a_crash(fitted):
    frame = fitted.detect(["A real sentence written by someone.", "", None, "x", float("nan")])
    assert frame["score"].notna().tolist() == [True, False, False, False, False]
    assert frame["skip_reason"].isna().tolist() == [True, False, False, False, False]


def test_save_load_round_trip_and_registry(fitted, splits, tmp_path):
    _, test, _ = splits
    fitted.save(tmp_path / "m", training={"rows": 3000})
    loaded = NgramClassifier.load(tmp_path / "m")
    texts = test.text.tolist()[:50]
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts))
    assert loaded.id == "ngram-classifier-v1" and isinstance(create("ngram-classifier"), NgramClassifier)


def test_refuses_to_fit_on_one_class():
    with pytest.raises(ValueError, match="both human"):
        NgramClassifier().fit(["a text", "another"], [1, 1])


def test_a_model_file_with_unknown_types_is_refused(fitted, tmp_path):
    import skops.io as sio

    fitted.save(tmp_path / "m")
    model = fitted.model_
    model.steps.insert(0, ("extra", FunctionTransformer(os.getcwd)))  # a function call hidden in the file
    try:
        sio.dump(model, tmp_path / "m" / "ngram.skops")
    finally:
        model.steps.pop(0)
    with pytest.raises(UntrustedModelFile):
        NgramClassifier.load(tmp_path / "m")
