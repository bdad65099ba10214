"""Detectors: each scores texts with per-text signals and a score in [0, 1]."""

from detectors.base import SCORE, SKIP_REASON, Detector, create, register, registered
from detectors.perplexity import PerplexityDetector

__all__ = ["SCORE", "SKIP_REASON", "Detector", "PerplexityDetector", "create", "register", "registered"]
