"""Saving and loading a trained classifier as a directory ("bundle").

A bundle holds ``bundle.json`` (what the model is: detector ids and settings, feature
layout, training data summary, library versions), ``classifier.skops``, the fitted
scikit-learn model in skops format, which is loaded without executing code from the file, and,
when the classifier joins an n-gram model to the LM's, that model in ``ngram/`` (the shipped
one is also the pre-training gate's fast scorer, with its own calibration there).
Only the scikit-learn types our classifiers are made of are accepted; a file that needs
any other type is refused unless the caller explicitly trusts it. The causal LM itself is
not stored: the bundle names it, and it is resolved from the model store.

The calibration (operating threshold and measured error rates) is written next to the
bundle by the auditor, which owns decisions.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from detectors.classifier import SCALAR_FEATURES_V1, LMTextClassifier
from detectors.ngram import NgramClassifier
from detectors.perplexity import PerplexityDetector
from detectors.provenance import UntrustedModelFile, library_versions

log = logging.getLogger(__name__)

# 2: an optional n-gram model in NGRAM_DIR; schema 1 bundles (LM only) still load.
BUNDLE_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
MANIFEST = "bundle.json"
MODEL_FILE = "classifier.skops"
NGRAM_DIR = "ngram"
# Internal scikit-learn types a fitted LMTextClassifier contains beyond skops' defaults.
KNOWN_SAFE_TYPES = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]
# Settings that change what the LM computes must match training; these may be overridden.
RUNTIME_LM_SETTINGS = {"device", "dtype", "quantize", "compile", "batch_tokens", "head_chunk", "spans", "cache_dir"}


def default_bundle_dir() -> Path:
    return Path(str(files("detectors") / "artifacts" / "default"))


def save_bundle(classifier: LMTextClassifier, directory: Path, training: dict[str, Any] | None = None) -> Path:
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = classifier.model_
    _drop_training_state(model)
    sio.dump(model, directory / MODEL_FILE)
    if classifier.ngram is not None and (directory / NGRAM_DIR).resolve() != _ngram_home(classifier.ngram):
        classifier.ngram.save(
            directory / NGRAM_DIR, training=getattr(classifier.ngram, "manifest_", {}).get("training")
        )
    lm_params = {k: v for k, v in classifier.lm_.get_params().items() if k not in RUNTIME_LM_SETTINGS}
    manifest = {
        "bundle_schema": BUNDLE_SCHEMA,
        "classifier": {
            "id": classifier.id,
            "params": {k: v for k, v in classifier.get_params(deep=False).items() if k not in ("lm", "ngram")},
        },
        "ngram": {"dir": NGRAM_DIR, "id": classifier.ngram.id} if classifier.ngram is not None else None,
        "perplexity": {"id": classifier.lm_.id, "params": {**lm_params, "pool_layers": list(lm_params["pool_layers"])}},
        "n_features": classifier.n_features_in_,
        "scalar_features": list(classifier.scalar_features_),
        "training_counts": classifier.training_counts_,
        "training": training or {},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return directory


def load_bundle(directory: Path | None = None, trust: bool = False, **lm_overrides: Any) -> LMTextClassifier:
    """Load a bundle; ``lm_overrides`` may set runtime-only LM settings (device, dtype, ...)."""
    import skops.io as sio

    directory = Path(directory) if directory else default_bundle_dir()
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{directory}: not a detector bundle (no {MANIFEST}); train one with `auditor train`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("bundle_schema") not in READABLE_SCHEMAS:
        raise ValueError(
            f"{directory}: bundle schema {manifest.get('bundle_schema')} is not supported "
            f"(this version reads {', '.join(map(str, READABLE_SCHEMAS))})"
        )
    unknown = set(lm_overrides) - RUNTIME_LM_SETTINGS
    if unknown:
        raise ValueError(
            f"cannot override {sorted(unknown)} at load time: they change the features the model was trained on"
        )
    model_path = directory / MODEL_FILE
    untrusted = [t for t in sio.get_untrusted_types(file=model_path) if t not in KNOWN_SAFE_TYPES]
    if untrusted and not trust:
        raise UntrustedModelFile(
            f"{model_path} contains types outside the classifier's known set: {untrusted}. Loading it could run "
            "code from the file; only pass --trust-model if you made it or trust whoever did."
        )
    if untrusted:
        log.warning("loading %s with explicitly trusted types %s", model_path, untrusted)
    model = sio.load(model_path, trusted=KNOWN_SAFE_TYPES + untrusted)
    lm_params = dict(manifest["perplexity"]["params"])
    lm_params["pool_layers"] = tuple(lm_params["pool_layers"])
    lm = PerplexityDetector(**{**lm_params, **{k: v for k, v in lm_overrides.items() if v is not None}})
    ngram = NgramClassifier.load(directory / manifest["ngram"]["dir"], trust=trust) if manifest.get("ngram") else None
    params = dict(manifest["classifier"]["params"])
    if params.get("layers") is not None:
        params["layers"] = tuple(params["layers"])
    classifier = LMTextClassifier(lm=lm, ngram=ngram, **params)
    classifier.model_ = model
    classifier.classes_ = np.array([0, 1])
    classifier.n_features_in_ = manifest["n_features"]
    classifier.scalar_features_ = tuple(manifest.get("scalar_features", SCALAR_FEATURES_V1))
    classifier.training_counts_ = manifest["training_counts"]
    classifier.bundle_dir_ = directory
    classifier.manifest_ = manifest
    return classifier


def copy_bundle(source: Path, target: Path) -> Path:
    """Copy a bundle's model files (not its calibration) to ``target``."""
    import shutil

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if Path(source).resolve() == target.resolve():
        return target
    for name in (MANIFEST, MODEL_FILE, "MODEL_CARD.md"):
        if (Path(source) / name).exists():
            shutil.copy2(Path(source) / name, target / name)
    if (Path(source) / NGRAM_DIR).is_dir():
        shutil.copytree(Path(source) / NGRAM_DIR, target / NGRAM_DIR, dirs_exist_ok=True)
    return target


def _ngram_home(ngram: NgramClassifier) -> Path | None:
    """Where a loaded n-gram model came from (saving a bundle in place must not rewrite it)."""
    home = getattr(ngram, "directory_", None)
    return Path(home).resolve() if home else None


def _drop_training_state(model) -> None:
    """The optimiser state of fitted networks is only needed to continue training."""
    for calibrated in getattr(model.named_steps["classify"], "calibrated_classifiers_", []):
        if hasattr(calibrated.estimator, "_optimizer"):
            calibrated.estimator._optimizer = None
