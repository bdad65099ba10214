"""The shared corpus: pairing groups, the opening cut, the label policy for edits, weights. Checks
that hold for any corpus run on the mini corpus the repository ships and on the full public one
(`corpus`); those about sets only the full corpus has (MixSet, APT-Eval, ArguGPT) need it."""

import shutil

import numpy as np
import pytest

from auditor.corpus import (
    DATASETS_ENV,
    HEAVY_EDIT,
    LIGHT_EDIT,
    counterpart_humans,
    datasets_dir,
    edit_tier,
    stratified_sample,
    training_weights,
)

# Sets whose pairing groups hold a human text and the LLM texts made from it, per corpus
PAIRED = {
    "mini": ("fastdetect_glimpse", "l2r_rewrites", "seqxgpt_doc_ood", "binoculars_pubmed_falcon7b", "worker_vs_gpt"),
    "full": ("fastdetect_glimpse", "mixset", "hc3_partial", "m4_llama2_test"),
}


@pytest.fixture(scope="module", params=["mini", pytest.param("full", marks=pytest.mark.corpus)])
def any_corpus(request):
    """The mini corpus the repository ships, then the full public corpus."""
    return request.param, request.getfixturevalue("mini_corpus" if request.param == "mini" else "corpus")


def test_every_pairing_group_lies_in_one_split(any_corpus):
    which, corpus = any_corpus
    splits_per_group = corpus.groupby("group")["split"].nunique()
    assert (splits_per_group == 1).all(), splits_per_group[splits_per_group > 1].head()
    # paired sets really are paired: a group holds a human text and LLM texts made from it
    for dataset in PAIRED[which]:
        labels = corpus[corpus.dataset == dataset].groupby("group")["label"].nunique()
        assert (labels == 2).mean() >= 0.5, dataset  # MixSet: half its groups edit machine text


@pytest.mark.corpus
def test_polishes_share_the_group_of_the_human_text_they_edit(corpus):
    polished = corpus[corpus.dataset == "apt_eval_polish"]
    mixset_humans = corpus[(corpus.dataset == "mixset") & (corpus.label == 0)]
    assert set(polished["source"]) == {"mixset"}
    shared = polished["group"].isin(set(mixset_humans["group"]))
    assert shared.mean() > 0.9


@pytest.mark.parametrize("dataset", ["fastdetect_glimpse", "seqxgpt_doc_ood"])
def test_continuations_lose_the_human_opening(any_corpus, dataset):
    _, corpus = any_corpus
    part = corpus[corpus.dataset == dataset]
    humans = part[part.label == 0].set_index("group")["text"]
    machines = part[(part.label == 1) & part["group"].isin(humans.index)]
    assert len(machines) > 50
    same_start = [
        text[:40] == humans.loc[group][:40] for group, text in zip(machines.group, machines.text, strict=True)
    ]
    assert np.mean(same_start) < 0.02


def test_edit_tiers_follow_the_levenshtein_policy():
    assert edit_tier(0, "", None) == "none"
    assert edit_tier(1, "llm_polish_minor", LIGHT_EDIT / 2) == "light_polish"
    assert edit_tier(1, "llm_polish_minor", (LIGHT_EDIT + HEAVY_EDIT) / 2) == "moderate_polish"
    assert edit_tier(1, "llm_polish_major", HEAVY_EDIT + 0.1) == "machine_edit"
    assert edit_tier(1, "llm_rewrite", None) == "machine_edit"


@pytest.mark.corpus
def test_light_polish_stays_out_of_training(corpus):
    tiers = corpus.groupby("edit_tier")["train_label"]
    assert tiers.apply(lambda s: s.isna().all())[["light_polish", "moderate_polish"]].all()
    assert (corpus.loc[corpus.edit_tier == "machine_edit", "train_label"] == 1).all()
    humans = corpus[corpus.label == 0]
    assert humans["train_label"].dropna().eq(0).all()
    assert humans["train_label"].notna().mean() > 0.9


def test_training_weights_balance_sources_and_classes(any_corpus):
    _, corpus = any_corpus
    sample = stratified_sample(corpus[corpus.split == "train"], cap=20)
    weight = training_weights(sample)
    assert (weight[sample["train_label"].isna().to_numpy()] == 0).all()
    machine = sample["train_label"].eq(1).to_numpy()
    assert weight[machine].sum() == pytest.approx(weight[~machine].sum(), rel=0.02)
    per_source = sample.assign(w=weight, machine=machine).groupby(["source", "machine"])["w"].sum()
    machine_share = per_source.xs(True, level="machine")
    # every source's LLM half weighs the same, however many texts it has
    assert machine_share.max() / machine_share.min() == pytest.approx(1.0, rel=0.01)
    assert sample.groupby("source").size().max() / sample.groupby("source").size().min() > 5


@pytest.mark.corpus
def test_machine_only_sets_have_human_counterparts(corpus):
    for dataset in ("cheat_fusion", "argugpt_machine"):
        assert not corpus[corpus.dataset == dataset]["label"].eq(0).any()
        counterparts = corpus[counterpart_humans(corpus, dataset)]
        assert len(counterparts) > 50
        assert counterparts["label"].eq(0).all()


def test_datasets_dir_is_the_variable_else_beside_the_checkout_else_a_clear_error(tmp_path, monkeypatch, mini_datasets):
    import auditor.corpus

    monkeypatch.setenv(DATASETS_ENV, str(mini_datasets))
    assert datasets_dir() == mini_datasets
    # set, the variable is never second-guessed: empty, missing or data-less means no corpus
    for value, problem in (
        ("", "is set but empty"),
        (str(tmp_path / "nope"), "does not exist"),
        (str(tmp_path), "no data sets"),
    ):
        monkeypatch.setenv(DATASETS_ENV, value)
        with pytest.raises(FileNotFoundError, match=problem) as missing:
            datasets_dir()
        assert f"set {DATASETS_ENV} to" in str(missing.value)
    # unset: shared/datasets beside the checkout, and nowhere else (no machine's absolute path)
    monkeypatch.delenv(DATASETS_ENV)
    checkout = tmp_path / "clone" / "repo"
    monkeypatch.setattr(auditor.corpus, "__file__", str(checkout / "auditor" / "corpus.py"))
    with pytest.raises(FileNotFoundError, match="is not set") as missing:
        datasets_dir()
    assert str(tmp_path / "clone" / "shared" / "datasets") in str(missing.value)
    shutil.copytree(mini_datasets, tmp_path / "clone" / "shared" / "datasets")
    assert datasets_dir() == tmp_path / "clone" / "shared" / "datasets"
