"""Audit text deliveries for LLM-written content.

From Python (see :mod:`auditor.python_api`)::

    from auditor import audit, score, Report, __version__

    report = audit(frame, text_col="answer", vendor_col="vendor")  # a DataFrame, paths or URLs
    report.vendors                                                 # one row per vendor
    score(["some text", "another"])                                # llm_probability, flagged, signals

Everything is imported on first use: ``import auditor`` loads neither pandas nor torch.

``auditor.audit`` is the function above. The ``auditor.audit`` subpackage (the audit's
machinery) is still imported by its name (``from auditor.audit import run_audit``), and its
attributes are reachable through the function (``auditor.audit.run_audit``), so dotted paths
used by ``unittest.mock.patch`` and pytest's ``monkeypatch`` keep working.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

DISTRIBUTION = "llm-contamination-auditor"  # the name in pyproject.toml
_LAZY = {"score": "auditor.python_api", "Report": "auditor.python_api"}

__all__ = ["Report", "__version__", "audit", "score"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _api_audit() -> Any:
    return import_module("auditor.python_api").audit


class _AuditFunction:
    """``auditor.audit``: calls :func:`auditor.python_api.audit`, and looks like it (signature,
    docstring); any other attribute is the ``auditor.audit`` subpackage's."""

    __slots__ = ()
    __doc__ = property(lambda self: _api_audit().__doc__)

    @property
    def __wrapped__(self) -> Any:  # inspect.signature() follows it
        return _api_audit()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_audit()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("__name__", "__qualname__", "__module__", "__annotations__", "__defaults__", "__kwdefaults__"):
            return getattr(_api_audit(), name)
        return getattr(import_module("auditor.audit"), name)

    def __repr__(self) -> str:
        return "<function auditor.audit>"


class _Package(types.ModuleType):
    """Keeps ``auditor.audit`` the function when the subpackage is imported (the import system
    would otherwise set the package's ``audit`` attribute to the subpackage)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "audit" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


if TYPE_CHECKING:
    from auditor.python_api import Report, audit, score

    __version__: str
else:
    audit = _AuditFunction()
    sys.modules[__name__].__class__ = _Package


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
