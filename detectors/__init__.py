"""Detectors: each turns texts into per-text signals and a score in [0, 1].

``detectors`` imports nothing from ``auditor`` or ``api``: thresholds, decisions and reports
live above it. Get detectors by name from the registry (:func:`create`, :func:`load`).
"""

from detectors.base import (
    SCORE,
    SKIP_REASON,
    Detector,
    OutputColumn,
    create,
    load,
    machine_directions,
    output_columns,
    register,
    register_loader,
    registered,
    unregister,
)
from detectors.bundle import load_bundle

# The LM classifier's saved form is a bundle directory (detectors/bundle.py).
register_loader("classifier", load_bundle)

__all__ = [
    "SCORE",
    "SKIP_REASON",
    "Detector",
    "OutputColumn",
    "create",
    "load",
    "machine_directions",
    "output_columns",
    "register",
    "register_loader",
    "registered",
    "unregister",
]
