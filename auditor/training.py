"""Training a classifier bundle from labelled texts, and calibrating its threshold."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from auditor.calibration import (
    Calibration,
    calibrate,
    heldout_mask,
    save_calibration,
    signal_reference,
    split_human,
)
from auditor.config import Settings
from auditor.corpus import EVALUATION_ONLY_DOMAINS
from auditor.features import FeatureStore
from detectors import machine_directions
from detectors.bundle import save_bundle
from detectors.classifier import SHIPPED_LAYERS, LMTextClassifier
from detectors.perplexity import PerplexityDetector


@dataclass
class TrainingResult:
    bundle_dir: Path
    n_train: dict[str, int]
    calibration: Calibration | None

    def summary(self) -> str:
        lines = [
            f"trained on {self.n_train['human']} human and {self.n_train['machine']} LLM-written texts -> {self.bundle_dir}"
        ]
        if self.calibration:
            c = self.calibration
            tpr = f", TPR {c.heldout_tpr.estimate:.3f} ({c.heldout_tpr.k}/{c.heldout_tpr.n})" if c.heldout_tpr else ""
            lines.append(
                f"threshold {c.threshold:.4f} for FPR {c.target_fpr:g}; held-out FPR {c.heldout_fpr.estimate:.4f} "
                f"({c.heldout_fpr.k}/{c.heldout_fpr.n}){tpr}"
            )
        else:
            lines.append("not calibrated: run `auditor calibrate --model DIR` before scoring with it")
        return "\n".join(lines)


def feature_detector(settings: Settings) -> PerplexityDetector:
    """The perplexity detector configured to produce classifier features."""
    return PerplexityDetector(
        model=settings.lm,
        max_tokens=settings.max_tokens,
        batch_tokens=settings.batch_tokens,
        device=settings.device,
        dtype=settings.dtype,
        embeddings=True,
        pool_layers=SHIPPED_LAYERS,
        histograms=True,
        spans=False,
        cache_dir=str(settings.cache_dir),
    )


def train_bundle(
    texts: Sequence[str],
    labels: np.ndarray,
    out: Path,
    settings: Settings,
    model_kind: str = "mlp",
    target_fpr: float = 0.01,
    calibration_fraction: float = 0.3,
    seed: int = 0,
    data_description: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> TrainingResult:
    """Fit on a stratified share of the rows; calibrate the threshold on the rest (its human
    half sets the threshold, the other half and the LLM rows measure the error rates)."""
    labels = np.asarray(labels, dtype=int)
    detector = feature_detector(settings)
    signals = FeatureStore(settings.cache_dir, detector).signals(list(texts), progress=on_progress)
    index = np.arange(len(labels))
    calibration_idx = np.empty(0, dtype=int)
    if calibration_fraction > 0:
        index, calibration_idx = train_test_split(
            index, test_size=calibration_fraction, stratify=labels, random_state=seed
        )
    classifier = LMTextClassifier(lm=detector, model=model_kind, random_state=seed)
    classifier.fit_features(signals.iloc[index].reset_index(drop=True), labels[index])
    bundle = save_bundle(classifier, out, training={"data": data_description, "rows": int(len(index)), "seed": seed})
    calibration = None
    if len(calibration_idx):
        probability = classifier.predict_proba_features(signals.iloc[calibration_idx].reset_index(drop=True))[:, 1]
        held_labels = labels[calibration_idx]
        calibration_human, heldout_human = split_human(probability[held_labels == 0], 0.5, seed)
        calibration = calibrate(
            calibration_human,
            heldout_human,
            probability[held_labels == 1],
            target_fpr,
            data=f"{calibration_fraction:.0%} of {data_description} held out from training",
            model=str(out),
        )
        held_humans = signals.iloc[calibration_idx[held_labels == 0]]
        calibration.signal_reference = signal_reference(
            {k: held_humans[k].to_numpy() for k in machine_directions() if k in held_humans}
        )
        save_calibration(calibration, bundle)
    return TrainingResult(bundle, classifier.training_counts_, calibration)


# ------------------------------------------------------------------ fast n-gram model
FAST_MODEL = "fast-ngram-v2"


def train_fast_model(out: Path, target_fpr: float = 0.01, progress: Callable[[str], None] | None = None) -> Calibration:
    """Fit on the train split of the shared data sets, calibrate on the calibration split (its
    human half sets the threshold; the other half and its LLM texts measure the error rates,
    overall and per dataset), evaluate on the test split, and write the model card."""
    from auditor.corpus import load_corpus
    from detectors.ngram import NgramClassifier

    say = progress or (lambda _: None)
    corpus = load_corpus()
    # the label policy for edited text: light and moderate polish are neither class
    corpus = corpus[corpus["train_label"].notna()].assign(label=lambda f: f["train_label"].astype(int))
    train = corpus[corpus["split"] == "train"]
    say(f"training the fast n-gram classifier on {len(train)} texts")
    detector = NgramClassifier().fit(train["text"].tolist(), train["label"].tolist())
    scored = corpus[corpus["split"] != "train"].copy()
    scored["llm_probability"] = detector.detect(scored["text"].tolist())["score"].to_numpy()
    calibration = calibrate_on_split(scored, target_fpr, FAST_MODEL)
    detector.save(out, training={"data": "train split of ../shared/datasets", "rows": len(train)})
    metrics = evaluate(scored, calibration.threshold)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(_fast_model_card(corpus, detector, calibration, metrics))
    save_calibration(calibration, out)  # last: its presence marks a complete model
    return calibration


def calibrate_on_split(scored: pd.DataFrame, target_fpr: float, model: str) -> Calibration:
    """Threshold from half of the calibration split's human texts (``llm_probability``); error
    rates, overall and per dataset, from the other half and the split's LLM texts. The test
    split stays untouched."""
    rows = scored[scored["split"] == "calibration"]
    human, machine = rows[rows.label == 0], rows[rows.label == 1]
    heldout = heldout_mask(len(human), 0.5, seed=0)
    return calibrate(
        human["llm_probability"].to_numpy()[~heldout],
        human["llm_probability"].to_numpy()[heldout],
        machine["llm_probability"].to_numpy(),
        target_fpr,
        data="threshold: half of the human texts of the calibration split of ../shared/datasets; error rates "
        "(overall and per dataset): the other half and the split's LLM texts "
        f"(excluding {', '.join(sorted(EVALUATION_ONLY_DOMAINS))})",
        model=model,
        human_sources=human["dataset"].to_numpy()[heldout],
        machine_sources=machine["dataset"].to_numpy(),
    )


def evaluate(sample: pd.DataFrame, threshold: float) -> dict:
    """Test-split metrics per dataset, plus the evaluation-only sets (``llm_probability`` column)."""
    rows = []
    for dataset, part in sample[sample["split"] == "test"].groupby("dataset"):
        rows.append(_metrics(f"{dataset} (test split)", part, threshold))
    for domain in sorted(EVALUATION_ONLY_DOMAINS):
        part = sample[sample["domain"] == domain]
        rows.append(_metrics(f"{domain} (evaluation only)", part, threshold))
    rows.append(_metrics("all test rows", sample[sample["split"] == "test"], threshold))
    held_out = sample[(sample["split"] == "test") | sample["domain"].isin(EVALUATION_ONLY_DOMAINS)]
    for domain in REGISTERS:  # writers of one kind: non-native, school, college, research
        rows.append(_metrics(f"register: {domain}", held_out[held_out["domain"] == domain], threshold))
    words = held_out["text"].map(lambda text: len(text.split()))
    for low, high in LENGTH_BUCKETS:
        rows.append(_metrics(f"length {low}-{high or ''} words", held_out[words.between(low, high or 1e9)], threshold))
    return {"threshold": threshold, "rows": rows}


# Registers whose human writers differ in kind (Liang et al.'s sets: non-native TOEFL essays,
# US 8th-grade and college essays, CS224N abstracts), and length buckets, each reported apart
# (test split and evaluation-only sets): where one threshold treats some writers unfairly.
REGISTERS = ("toefl_essay_nonnative", "us_8th_grade_essay", "college_admission_essay", "cs224n_abstract")
LENGTH_BUCKETS = ((0, 49), (50, 149), (150, 299), (300, None))


def _metrics(name: str, part: pd.DataFrame, threshold: float) -> dict:
    y, p = part["label"].to_numpy(), part["llm_probability"].to_numpy()
    ok = ~np.isnan(p)
    y, p = y[ok], p[ok]
    both = len(np.unique(y)) == 2
    return {
        "set": name,
        "n_human": int((y == 0).sum()),
        "n_machine": int((y == 1).sum()),
        "auroc": float(roc_auc_score(y, p)) if both else None,
        "fpr": float((p[y == 0] > threshold).mean()) if (y == 0).any() else None,
        "tpr": float((p[y == 1] > threshold).mean()) if (y == 1).any() else None,
    }


def format_metric(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fast_model_card(corpus, detector, calibration: Calibration, metrics: dict) -> str:
    counts = corpus.groupby(["split", "label"]).size().unstack("label", fill_value=0)
    table = "\n".join(
        f"| {r['set']} | {r['n_human']} | {r['n_machine']} | {format_metric(r['auroc'])} | "
        f"{format_metric(r['fpr'])} | {format_metric(r['tpr'])} |"
        for r in metrics["rows"]
    )
    fpr_by = ", ".join(f"{k} {v.estimate:.3f}" for k, v in (calibration.heldout_fpr_by_source or {}).items())
    tpr_by = ", ".join(f"{k} {v.estimate:.2f}" for k, v in (calibration.heldout_tpr_by_source or {}).items())
    tpr, rates = calibration.heldout_tpr, calibration.error_rates()
    if tpr is None or rates is None:
        raise ValueError("the calibration holds no held-out LLM-written texts: the card has no error rates to state")
    return f"""# Model card: fast n-gram LM-text classifier

**What it is.** `{detector.id}`: hashed word 1-2-grams ({detector.word_features} features) and character
3-5-grams within word boundaries ({detector.char_features} features), sublinear TF-IDF, class-balanced
logistic regression (C={detector.C}). No language model: thousands of texts per second on one core.
Trained by `scripts/train_fast_model.py`; ships in the package. The pre-training gate scores with it
alone (the LM is too slow for the sample sizes a decision needs); the default classifier joins it to
its LM part (README, Detection: it transfers to text from elsewhere better than the LM part, and worse to GPTurk).

**Training data.** Every text of the train split of `../shared/datasets` (the pairing-group split the
default model uses: train 60% / calibration 20% / test 20%), {int(counts.loc["train"].sum())} texts
({int(counts.loc["train", 0])} human, {int(counts.loc["train", 1])} LLM). Evaluation only, never trained
or calibrated on: `gpturk_medical_summary`, `toefl_essay_nonnative`.

**Operating threshold.** {calibration.threshold:.4f}, for a {calibration.target_fpr:.0%} false-positive rate on
{calibration.n_calibration_human} human calibration texts. Held out: FPR {calibration.heldout_fpr.estimate:.4f}
({calibration.heldout_fpr.k}/{calibration.heldout_fpr.n}), TPR {tpr.estimate:.4f}
({tpr.k}/{tpr.n}). Per dataset: FPR {fpr_by}; TPR {tpr_by}
(between-dataset SD on the logit scale: FPR {rates.fpr_spread:.2f}, TPR {rates.tpr_spread:.2f}).

**Metrics at the operating threshold** (test split and evaluation-only sets):

| set | human | machine | AUROC | FPR | TPR |
|---|---|---|---|---|---|
{table}

**Limitations.** It learns the vocabulary and style of the generators and domains in the data; out of
distribution it is about as good as the TF-IDF baseline in README.md's detection table.
"""
