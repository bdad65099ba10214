"""What every saved model records about where it came from, and the refusal to load a model
file that could run code."""

from __future__ import annotations

import platform
from importlib import metadata


class UntrustedModelFile(RuntimeError):
    """A saved model holds types outside the known-safe set; loading it could run code."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("llm-contamination-auditor", "torch", "transformers", "scikit-learn", "datasketch", "skops", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
