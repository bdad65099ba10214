"""The auditor from Python (notebooks, pipelines): ``from auditor import audit, score, Report``.

:func:`audit` returns an :class:`AuditResult`: the :class:`~auditor.report.models.Report` (the
pydantic model written as ``report.json``, which is ``auditor.Report``) as :attr:`AuditResult.report`,
with its items and tables for notebooks.

:func:`audit` runs exactly the audit of ``auditor audit`` (the same :func:`~auditor.auditing.plan`
and :func:`~auditor.auditing.run_audit`, the same cached scorer) on files or URLs, or on a pandas
DataFrame, which is first written to a temporary Parquet file so that it goes through the same
reader as a delivery on disk. :func:`score` is ``auditor score`` on a list of texts.

Models load once per process (:func:`auditor.scoring.cached_scorer`). Model-loading logs,
library warnings and progress bars are kept out of the caller's output unless ``verbose=True``;
:func:`quiet_libraries` is the one place that silences them, for this module and the command line.

This module imports nothing heavy at import time (``import auditor`` stays fast and does not
load torch): pandas, the scorer and the models are imported when a function is called.
"""

from __future__ import annotations

import html
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from auditor.report.models import Report
    from auditor.scoring import Scorer

__all__ = ["AuditResult", "audit", "quiet_libraries", "score"]

# Loggers of the libraries that talk while models load (weights, tokenizers, device placement).
LIBRARY_LOGGERS = ("transformers", "torch", "sentence_transformers", "huggingface_hub", "accelerate", "urllib3")
# Modules whose User-, Future- and DeprecationWarnings are about library internals, not about the audit.
_WARNING_MODULES = r"(sklearn|transformers|torch|sentence_transformers|huggingface_hub|accelerate)(\.|$)"
_DATAFRAME_INPUT = "dataframe.parquet"


def quiet_libraries(verbose: bool = False, configure_logging: bool = False) -> Callable[[], None]:
    """Silence model-loading logs, library warnings and the libraries' progress bars (unless
    ``verbose``); returns a function that undoes it. The command line calls it once per command
    with ``configure_logging=True`` (the root logger then prints WARNING and up, or INFO and up
    when ``verbose``); the Python API undoes it when each call returns."""
    if configure_logging:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
    if verbose:
        return lambda: None
    caught = warnings.catch_warnings()
    caught.__enter__()
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_WARNING_MODULES)
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    def restore() -> None:
        caught.__exit__(None, None, None)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()

    return restore


@contextmanager
def _libraries_quiet(verbose: bool) -> Iterator[None]:
    restore = quiet_libraries(verbose)
    try:
        yield
    finally:
        restore()


def _scorer(model: str | PathLike[str] | None, trust_model: bool) -> Scorer:
    """The scorer ``auditor audit`` / ``auditor score`` use for ``--model`` (loaded once per process)."""
    from auditor.scoring import cached_scorer

    return cached_scorer(str(model) if model else None, trust_model, True)


class AuditResult:
    """An audit's result: the report (:attr:`report`, the pydantic :class:`~auditor.report.models.Report`
    written as ``report.json``) and its items (``items.parquet``), with tables for notebooks.

    - :attr:`vendors`: one row per vendor (counts, prevalence with its interval, calibration
      fit, lower bound, and the verdict: its status, the ``decision`` against the tolerance,
      the ``at_least`` / ``at_most`` share it rests on, its headline); :attr:`decisions`: vendor
      -> above / within / undetermined; :attr:`workers`: one row per vendor and worker;
      :attr:`items`: every input row with its status and scores.
    - :meth:`save` writes report.json/.html/.md and items.parquet to a directory;
      :meth:`to_html` / :meth:`to_json` return the renderings.
    """

    VENDOR_COLUMNS = (
        "vendor",
        "n_items",
        "n_scored",
        "n_skipped",
        "n_flagged",
        "flag_rate",
        "prevalence",
        "prevalence_ci_low",
        "prevalence_ci_high",
        "calibration_fit_consistent",
        "calibration_fit_p_value",
        "prevalence_lower_bound",
        "verdict",
        "decision",
        "at_least",
        "at_most",
        "headline",
    )
    WORKER_COLUMNS = (
        "vendor",
        "worker",
        "n_items",
        "n_flagged",
        "mean_probability",
        "prevalence",
        "prevalence_ci_low",
        "prevalence_ci_high",
        "p_uses_llm",
        "in_duplicate_clusters",
    )

    def __init__(self, report: Report, out: str | PathLike[str], _tempdir: Any = None) -> None:
        self.report = report
        self.out = Path(out)  # where items.parquet is
        self._tempdir = _tempdir  # a TemporaryDirectory holding ``out``: removed with this object

    @classmethod
    def load(cls, directory: str | PathLike[str]) -> AuditResult:
        """A report written by ``auditor audit --out DIR`` or :meth:`save`."""
        from auditor.report.models import Report

        directory = Path(directory)
        return cls(Report.model_validate_json((directory / "report.json").read_text()), directory)

    @property
    def items_path(self) -> Path:
        return self.out / "items.parquet"

    @cached_property
    def items(self) -> pd.DataFrame:
        """Every input row (unreadable rows and files included) with its ``status`` and scores."""
        import pandas as pd

        return pd.read_parquet(self.items_path)

    @cached_property
    def vendors(self) -> pd.DataFrame:
        """One row per vendor; the prevalence is the report's headline estimate and interval."""
        import pandas as pd

        rows = []
        for v in self.report.vendors:
            fit, verdict = v.calibration_fit, v.verdict
            rows.append(
                (
                    v.vendor,
                    v.n_items,
                    v.n_scored,
                    v.n_skipped,
                    v.n_flagged,
                    v.flag_rate.estimate,
                    v.prevalence.estimate,
                    v.prevalence.ci_low,
                    v.prevalence.ci_high,
                    fit.consistent if fit else None,
                    fit.p_value if fit else None,
                    v.prevalence_lower_bound.bound if v.prevalence_lower_bound else None,
                    verdict.status if verdict else None,
                    verdict.decision if verdict else None,
                    verdict.at_least if verdict else None,
                    verdict.at_most if verdict else None,
                    verdict.headline if verdict else None,
                )
            )
        frame = pd.DataFrame.from_records(rows, columns=list(self.VENDOR_COLUMNS))
        frame["calibration_fit_consistent"] = frame["calibration_fit_consistent"].astype("boolean")
        for column in ("calibration_fit_p_value", "prevalence_lower_bound", "at_least", "at_most"):
            frame[column] = frame[column].astype(float)
        return frame

    @property
    def tolerance(self) -> float | None:
        """The tolerance the verdicts were decided against (``tolerance=``), if any."""
        value = self.report.configuration.get("tolerance")
        return None if value is None else float(value)

    @property
    def decisions(self) -> dict[str, str | None]:
        """Vendor -> ``above``, ``within`` or ``undetermined`` against :attr:`tolerance` (the
        decisions ``auditor audit --tolerance`` exits 3 on; all None without a tolerance)."""
        return {v.vendor: v.verdict.decision if v.verdict else None for v in self.report.vendors}

    @cached_property
    def workers(self) -> pd.DataFrame:
        """One row per vendor and worker (empty when the audit had no worker column)."""
        import pandas as pd

        rows = [
            (
                v.vendor,
                w.worker,
                w.n_items,
                w.n_flagged,
                w.mean_probability,
                w.prevalence.estimate,
                w.prevalence.ci_low,
                w.prevalence.ci_high,
                w.p_uses_llm,
                w.in_duplicate_clusters,
            )
            for v in self.report.vendors
            for w in v.workers
        ]
        return pd.DataFrame.from_records(rows, columns=list(self.WORKER_COLUMNS))

    def save(self, directory: str | PathLike[str]) -> dict[str, Path]:
        """Write report.json, report.html, report.md and items.parquet to ``directory``."""
        from auditor.report.render import write_report

        directory = Path(directory)
        paths = write_report(self.report, directory)
        target = directory / "items.parquet"
        if self.items_path.exists() and self.items_path.resolve() != target.resolve():
            shutil.copyfile(self.items_path, target)
        paths["items"] = target
        return paths

    def to_json(self) -> str:
        return self.report.model_dump_json(indent=2)

    def to_html(self) -> str:
        """The full HTML report (charts included), as ``report.html``."""
        from auditor.report.render import render_html

        return render_html(self.report)

    def _summary(self) -> str:
        totals = self.report.totals
        by_status = totals.get("by_status", {})
        counts = ", ".join(f"{by_status[s]} {s}" for s in ("scored", "skipped", "unreadable") if by_status.get(s))
        line = f"{totals.get('rows', 0)} rows ({counts or 'none read'}), {totals.get('flagged', 0)} flagged"
        if self.report.warnings:
            line += f"; {len(self.report.warnings)} warning(s): " + ", ".join(w.kind for w in self.report.warnings)
        return line

    def _repr_html_(self) -> str:
        """A compact summary for Jupyter: one row per vendor (``to_html()`` is the whole report)."""
        level = int(round(100 * self.report.methods.interval_level))
        head = (
            "<tr><th>vendor</th><th>verdict</th><th>scored</th><th>flagged</th><th>prevalence</th>"
            f"<th>{level}% interval</th><th>at least</th><th>calibration fit</th></tr>"
        )
        rows = []
        for v in self.report.vendors:
            p, fit = v.prevalence, v.calibration_fit
            cells = (
                v.vendor,
                v.verdict.headline if v.verdict else "–",
                str(v.n_scored),
                str(v.n_flagged),
                _pct(p.estimate),
                f"[{_pct(p.ci_low)}, {_pct(p.ci_high)}]",
                _pct(v.prevalence_lower_bound.bound) if v.prevalence_lower_bound else "–",
                "–" if fit is None else f"{'fits' if fit.consistent else 'does not fit'} (p = {fit.p_value:.3g})",
            )
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        return (
            f"<div><p><b>Audit report</b>: {html.escape(self._summary())}</p>"
            f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        lines = [f"<auditor.AuditResult: {len(self.report.vendors)} vendor(s), {self._summary()}>"]
        for v in self.report.vendors:
            p = v.prevalence
            bound = f"; at least {_pct(v.prevalence_lower_bound.bound)}" if v.prevalence_lower_bound else ""
            lines.append(
                f"  {v.vendor}: {v.n_scored} scored, {v.n_flagged} flagged; "
                f"prevalence {_pct(p.estimate)} [{_pct(p.ci_low)}, {_pct(p.ci_high)}]{bound}"
            )
            if v.verdict is not None:
                lines.append(f"    verdict: {v.verdict.headline}")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}%"


def audit(
    frame_or_paths: pd.DataFrame | str | PathLike[str] | Sequence[str | PathLike[str]],
    text_col: str,
    vendor_col: str,
    worker_col: str | None = None,
    id_col: str | None = None,
    batch_col: str | None = None,
    time_col: str | None = None,
    paste_col: str | None = None,
    keystrokes_col: str | None = None,
    task: str | None = None,
    human_reference: str | PathLike[str] | None = None,
    machine_reference: str | PathLike[str] | None = None,
    reference_text_col: str = "text",
    level: float = 0.9,
    tolerance: float | None = None,
    out: str | PathLike[str] | None = None,
    model: str | PathLike[str] | None = None,
    scheduler: str | None = None,
    *,
    dask_workers: int | None = None,
    trust_model: bool = False,
    resume: bool = True,
    top_items: int = 20,
    verbose: bool = False,
) -> AuditResult:
    """Audit a delivery, as ``auditor audit`` does: per-vendor and per-worker LLM prevalence.

    ``frame_or_paths``: a pandas DataFrame, or a path or fsspec URL (or a list of them) of CSV,
    TSV, JSON Lines, JSON or Parquet files, optionally .gz or .zst. The ``*_col`` arguments
    name the columns (as ``--text-col``, ``--vendor-col`` ...); ``task``, ``human_reference``,
    ``machine_reference``, ``reference_text_col`` and ``level`` are the command's options;
    ``tolerance`` (``--tolerance``, a share in [0, 1]) decides each vendor's verdict ``above``,
    ``within`` or ``undetermined`` (:attr:`AuditResult.decisions`), as the command's exit code 3 does;
    ``top_items`` is ``--top-items``. The options are validated through
    :class:`~auditor.auditing.AuditOptions`, as the command's and the REST service's are: a value out of
    its bounds (``level=1.0``, ``tolerance=1.5`` ...) raises a pydantic ``ValidationError`` (a
    ``ValueError``) naming it, before anything is read or loaded.

    ``out``: directory for report.json/.html/.md and items.parquet (a temporary directory,
    removed with the returned :class:`AuditResult`, when None; :meth:`AuditResult.save` writes it
    anywhere). A DataFrame is written to a temporary Parquet file inside ``out`` first.
    ``model``: a trained bundle directory (default: the shipped model); ``scheduler`` /
    ``dask_workers``: score on a Dask cluster. Raises :class:`~auditor.reader.ReadError`
    (a ``ValueError``) for unusable input, :class:`~auditor.scoring.NotCalibratedError` for
    an uncalibrated model."""
    import pandas as pd

    from auditor.auditing import plan, run_audit
    from auditor.auditing.options import options_from
    from auditor.config import get_settings
    from auditor.execution import executor
    from auditor.report.render import write_report
    from auditor.tasks.store import TaskStore

    options = options_from(
        {
            "text_col": text_col,
            "vendor_col": vendor_col,
            "worker_col": worker_col,
            "id_col": id_col,
            "batch_col": batch_col,
            "time_col": time_col,
            "paste_col": paste_col,
            "keystrokes_col": keystrokes_col,
            "level": level,
            "resume": resume,
            "human_reference": str(human_reference) if human_reference else None,
            "machine_reference": str(machine_reference) if machine_reference else None,
            "reference_text_col": reference_text_col,
            "task": task,
            "tolerance": tolerance,
            "top_items": top_items,
        }
    )
    tempdir: tempfile.TemporaryDirectory[str] | None = None
    if out is None:
        tempdir = tempfile.TemporaryDirectory(prefix="auditor-audit-")
        target = Path(tempdir.name)
    else:
        target = Path(out)
    staged = None
    if isinstance(frame_or_paths, pd.DataFrame):
        staged = _stage_frame(frame_or_paths, target / ".input")
        sources: list[str] = [str(staged)]
    elif isinstance(frame_or_paths, str | PathLike):
        sources = [str(frame_or_paths)]
    else:
        sources = [str(p) for p in frame_or_paths]
    try:
        options.columns, unreadable, _ = plan(sources, options.columns)
        for reason in unreadable.values():
            warnings.warn(f"{reason}; auditing the other files", stacklevel=2)
        with _libraries_quiet(verbose):
            scorer = _scorer(model, trust_model)
            with executor(scheduler, dask_workers) as runner:
                settings = get_settings()
                tasks = TaskStore(settings.task_store_dir)
                report = run_audit(sources, options, target, scorer, settings, unreadable, executor=runner, tasks=tasks)
    finally:
        if staged is not None:
            shutil.rmtree(staged.parent, ignore_errors=True)
    if out is not None:
        write_report(report, target)
    return AuditResult(report, target, tempdir)


def _stage_frame(frame: pd.DataFrame, directory: Path) -> Path:
    """The DataFrame as a Parquet file the reader takes like any delivery (column names as text;
    a column of mixed types is written as text, as it would be read from a CSV)."""
    import pandas as pd
    import pyarrow as pa

    def as_text(value: Any) -> str | None:
        return None if value is None or value is pd.NA or (isinstance(value, float) and value != value) else str(value)

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / _DATAFRAME_INPUT
    frame = frame.rename(columns=str)
    try:
        frame.to_parquet(path, index=False)
    except (pa.ArrowException, TypeError, ValueError):
        mixed = {str(c): frame[c].map(as_text) for c in frame.columns if frame[c].dtype == object}
        frame.assign(**mixed).to_parquet(path, index=False)
    return path


def score(
    texts: Sequence[str] | pd.Series,
    model: str | PathLike[str] | None = None,
    *,
    trust_model: bool = False,
    verbose: bool = False,
) -> pd.DataFrame:
    """Score texts, as ``auditor score`` does: one row per text, in order (a Series keeps its
    index), with ``text``, ``llm_probability``, ``flagged`` (at the calibrated threshold),
    ``flag_reason``, ``skip_reason`` and one column per signal. Raises
    :class:`~auditor.scoring.NotCalibratedError` for an uncalibrated model."""
    import pandas as pd

    from auditor.scoring import score_table

    if isinstance(texts, str):
        raise TypeError("score() takes a sequence of texts; wrap a single text in a list")
    index = texts.index if isinstance(texts, pd.Series) else None
    frame = pd.DataFrame({"text": list(texts)})
    with _libraries_quiet(verbose):
        scorer = _scorer(model, trust_model)
        scorer.require_calibration()
        scored = score_table(scorer, frame, "text")
    if index is not None:
        scored.index = index
    return scored
