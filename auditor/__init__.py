"""Audit text deliveries for LLM-written content.

From Python (see :mod:`auditor.python_api`)::

    from auditor import audit, score, Report, AuditResult, __version__

    result = audit(frame, text_col="answer", vendor_col="vendor")  # a DataFrame, paths or URLs
    result.vendors                                                 # one row per vendor
    result.report                                                  # the Report (report.json)
    score(["some text", "another"])                                # llm_probability, flagged, signals

Everything is imported on first use: ``import auditor`` loads neither pandas nor torch.

``auditor.Report`` is the one report class, the pydantic model written as ``report.json``
(:class:`auditor.report.models.Report`; ``Report.model_validate_json(text)`` reads one back);
:func:`audit` returns an :class:`~auditor.python_api.AuditResult`, which holds that report with
its items and tables for notebooks. ``auditor.audit`` is the function; the audit's machinery (planning, running, aggregating) is
the :mod:`auditor.auditing` package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

DISTRIBUTION = "llm-contamination-auditor"  # the name in pyproject.toml
_LAZY = {
    "audit": "auditor.python_api",
    "score": "auditor.python_api",
    "AuditResult": "auditor.python_api",
    "Report": "auditor.report.models",
}

__all__ = ["AuditResult", "Report", "__version__", "audit", "score"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


if TYPE_CHECKING:
    from auditor.python_api import AuditResult, audit, score
    from auditor.report.models import Report

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
    elif name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
