"""Training a classifier bundle from labelled texts, and calibrating its threshold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from auditor.calibration import Calibration, calibrate, save_calibration, signal_reference, split_human
from auditor.config import Settings
from auditor.features import FeatureStore
from detectors.bundle import save_bundle
from detectors.classifier import LMTextClassifier
from detectors.perplexity import MACHINE_DIRECTION, PerplexityDetector


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
        calibration.signal_reference = signal_reference({k: held_humans[k].to_numpy() for k in MACHINE_DIRECTION})
        save_calibration(calibration, bundle)
    return TrainingResult(bundle, classifier.training_counts_, calibration)
