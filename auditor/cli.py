"""The ``auditor`` command.

Every command reads through :mod:`auditor.reader` and scores through the one
:class:`~auditor.scoring.Scorer`; ``audit`` and ``gate`` run here or on Dask through
:mod:`auditor.execution`. The REST service (``serve``, ``worker``, ``keys``) is imported only
when one of those commands runs: the auditor does not depend on it.

Conventions shared by the commands: ``--text-col`` names the text column (or field) everywhere;
``-v/--verbose`` and ``-q/--quiet`` come before the command (``auditor -q audit ...``); results
go to stdout or files, progress, information, warnings and errors to stderr. Exit codes of
``audit`` and ``gate`` for pipelines: :data:`AUDIT_EXIT_CODES`, :data:`GATE_EXIT_CODES`."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from auditor.auditing.options import AuditColumns, AuditOptions, check_field, field_help
from auditor.config import get_settings
from auditor.gate.judge import GatePolicy
from auditor.reader import Problem, ReadError, read_table, require_columns, source_name, write_table

if TYPE_CHECKING:
    from pydantic import BaseModel

    from auditor.auditing.work import Source
    from auditor.gate import ShardResult
    from auditor.report.models import Report
    from auditor.scoring import Scorer
    from detectors.reference import ReferenceIndex

# Exit codes of `auditor audit` (also in its --help). Usage and input errors are 2 for every command.
EXIT_OK, EXIT_USAGE, EXIT_ABOVE, EXIT_NOTHING_SCORED, EXIT_ROWS_LOST = 0, 2, 3, 4, 5
AUDIT_EXIT_CODES: dict[int, str] = {
    EXIT_OK: "the audit is complete (and no vendor is above --tolerance)",
    EXIT_USAGE: "usage or input error: a bad option, a missing column, no input file readable at all; no report",
    EXIT_ABOVE: "--tolerance SHARE (alias --fail-above): some vendor's verdict is `above` the tolerance, i.e. its LLM "
    "share is at least more than SHARE (the vendors are listed)",
    EXIT_NOTHING_SCORED: "no row was scored (e.g. the text column is empty); 0 with --allow-partial",
    EXIT_ROWS_LOST: "rows were lost to damaged input (unreadable rows or files, a truncated .gz/.zst; status "
    "`unreadable` in items.parquet); 0 with --allow-partial",
}
# Exit codes of `auditor gate` (also in its --help).
GATE_EXIT_CODES: dict[int, str] = {
    0: "every shard passes",
    1: "some shard is rejected",
    2: "usage error",
    3: "some shard could not be read (decision `error`; the others are still judged)",
}


def _exit_code_epilog(codes: Mapping[int, str], note: str = "") -> str:
    # Typer's rich help rewraps the epilog: one paragraph per exit code.
    return "Exit codes:\n\n" + "\n\n".join(f"{code}: {what}" for code, what in codes.items()) + note


app = typer.Typer(add_completion=True, no_args_is_help=True, help="Audit text deliveries for LLM-written content.")
reference_app = typer.Typer(no_args_is_help=True, help="The near-duplicate reference index.")
app.add_typer(reference_app, name="reference")
references_app = typer.Typer(
    no_args_is_help=True, help="Task references: human and LLM-written texts of one task, for task-aware audits."
)
app.add_typer(references_app, name="references")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the REST service.")
app.add_typer(keys_app, name="keys")
console = Console(stderr=True, soft_wrap=True)  # progress and information: silent with --quiet
alerts = Console(stderr=True, soft_wrap=True)  # warnings and errors: always shown


@dataclass
class _Flags:
    verbose: bool = False
    quiet: bool = False


flags = _Flags()


def _print_version(value: bool) -> None:
    if value:
        from auditor import __version__

        typer.echo(f"auditor {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show the libraries' logs, warnings and progress bars")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="hide progress bars and information lines (warnings and errors stay)")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """Audit text deliveries for LLM-written content."""
    if verbose and quiet:
        fail("give --verbose or --quiet, not both")
    flags.verbose, flags.quiet = verbose, quiet
    console.quiet = quiet


def model_option(model: type[BaseModel], name: str, *flags: str, note: str = "", **kwargs: Any) -> Any:
    """The ``typer.Option`` of field ``name`` of ``model`` (:class:`~auditor.auditing.AuditOptions`,
    :class:`~auditor.gate.GatePolicy` ...): its help and bounds are the field's, and the value is
    validated through the model (a usage error, exit 2, naming the option otherwise). The default
    is the field's too: give it from :func:`model_defaults`."""

    def validated(value):  # untyped: typer passes the option's value to a callback's only parameter
        if value is None:  # not given (an optional option, or a deprecated spelling)
            return None
        try:
            return check_field(model, name, value)
        except ValueError as exc:
            raise typer.BadParameter(f"{exc} (got {value!r})") from None

    return typer.Option(*flags, help=field_help(model, name, note), callback=validated, **kwargs)


def model_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The defaults of ``model``'s optional fields: the defaults of their command-line options."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
    }


AUDIT_DEFAULTS, GATE_DEFAULTS = model_defaults(AuditOptions), model_defaults(GatePolicy)


ModelOpt = Annotated[Path | None, typer.Option("--model", help="trained bundle directory (default: the shipped model)")]
TrustOpt = Annotated[
    bool, typer.Option("--trust-model", help="load a bundle even if its file holds types outside the known-safe set")
]
TextColOpt = Annotated[str, model_option(AuditColumns, "text", "--text-col")]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="dask.distributed scheduler address (tcp://host:port)")
]
DaskWorkersOpt = Annotated[
    int | None,
    typer.Option("--dask-workers", min=1, help="start a local Dask cluster with this many worker processes"),
]
# Deprecated spellings, accepted for a release and hidden from --help.
OldWorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, hidden=True, help="deprecated: use --dask-workers")
]
OldTextFieldOpt = Annotated[str | None, typer.Option("--text-field", hidden=True, help="deprecated: use --text-col")]
T = TypeVar("T")


def renamed(new: str, value: T, old: str, old_value: T | None, default: T | None = None) -> T:
    """The value of option ``new``, or of its deprecated spelling ``old`` when that is given
    (with a warning); both given with different values is a usage error."""
    if old_value is None:
        return value
    alerts.print(f"[yellow]warning:[/] {old} is deprecated and will be removed; use {new}", highlight=False)
    if value is not None and value != default and value != old_value:
        fail(f"give {new} or {old}, not both")
    return old_value


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    hidden = flags.quiet or (not console.is_terminal and total < 1)
    with Progress(*columns, console=console, transient=False, disable=hidden) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    alerts.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# What `pip install 'llm-contamination-auditor[service]'` brings: the commands that need it say so.
SERVICE_MODULES = ("fastapi_offline", "fastapi", "uvicorn", "multipart", "sqlalchemy", "alembic", "prometheus_client")


def require_extra(extra: str, *modules: str) -> None:
    """Stop with the install command when a command needs an extra that is not installed."""
    import importlib.util

    from rich.markup import escape

    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        fail(
            escape(
                f"this command needs the [{extra}] extra ({', '.join(missing)} not installed): "
                f"pip install 'llm-contamination-auditor[{extra}]'"
            )
        )


def warn(message: str) -> None:
    alerts.print(f"[yellow]warning:[/] {message}", highlight=False)


def report_problems(problems: list[Problem], limit: int = 10) -> None:
    if not problems:
        return
    alerts.print(f"[yellow]{len(problems)} row(s) could not be read as given and were skipped or repaired:[/]")
    for problem in problems[:limit]:
        alerts.print(f"  {problem}", highlight=False)
    if len(problems) > limit:
        alerts.print(f"  ... and {len(problems) - limit} more")


def _quiet_libraries() -> None:
    """Library logs, warnings and progress bars off (unless --verbose): see auditor.python_api."""
    from auditor.python_api import quiet_libraries

    quiet_libraries(flags.verbose, configure_logging=True)


def _scorer(model: Path | None, trust_model: bool, reference: bool = True) -> Scorer:
    from auditor.scoring import cached_scorer
    from detectors.bundle import UntrustedModelFile

    try:
        with console.status("loading models"):
            return cached_scorer(str(model) if model else None, trust_model, reference)
    except (UntrustedModelFile, FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def _read_texts(path: Source, text_col: str, extra: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    try:
        require_columns(path, {"--text-col": text_col, **(extra or {})})
        frame, problems = read_table(path)
    except ReadError as exc:
        fail(str(exc))
    report_problems(problems)
    return frame.drop(columns=["_row"])


@app.command()
def setup() -> None:
    """Provision the embedded models into the cache directory (idempotent) and check they load."""
    _quiet_libraries()
    from detectors.bundle import default_bundle_dir, load_bundle
    from detectors.ngram import NgramClassifier, default_fast_dir
    from detectors.store import EMBEDDED_LM, provision_smollm2

    settings = get_settings()
    with console.status(f"provisioning {EMBEDDED_LM} into {settings.cache_dir}"):
        path = provision_smollm2(settings.cache_dir)
    console.print(f"causal LM: {path}")
    classifier = load_bundle(default_bundle_dir(), cache_dir=str(settings.cache_dir))
    with console.status("loading the LM once"):
        classifier.setup()
    info = classifier.lm_.model_info
    console.print(f"loaded {info['n_parameters'] / 1e6:.0f}M parameters on {info['device']} as {info['dtype']}")
    console.print(f"classifier bundle: {default_bundle_dir()}")
    fast = NgramClassifier.load(default_fast_dir())
    console.print(f"fast n-gram classifier (the gate's scorer, part of the bundle): {fast.directory_}")


STDIO = "-"


class TableFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


FORMATS = tuple(f.value for f in TableFormat)
FormatOpt = Annotated[
    TableFormat | None,
    typer.Option(
        "--format",
        help="format of `-` (standard input/output) and of paths without an extension; a path's own extension wins",
    ),
]


def _named_format(source: str) -> tuple[str | None, str]:
    """The table format a path's name declares, or None and why not (``-``, no or an unknown extension)."""
    from auditor.reader import describe_format

    if source == STDIO:
        return None, "standard input/output"
    try:
        return describe_format(source)[0], ""
    except ReadError as exc:
        return None, exc.reason


@contextmanager
def _staged_input(source: str, fmt: str | None, option: str) -> Iterator[str]:
    """``source`` as the reader takes it: standard input, or a path without an extension, is
    copied to a temporary file named after ``fmt``."""
    named, why = _named_format(source)
    if named is not None:
        yield source
        return
    if fmt is None:
        what = "standard input" if source == STDIO else f"{source} ({why})"
        fail(f"cannot tell the format of {what}: give {option} {'|'.join(FORMATS)}")
    with tempfile.TemporaryDirectory(prefix="auditor-stdin-") as tmp:
        staged = Path(tmp) / f"{'stdin' if source == STDIO else source_name(source) or 'input'}.{fmt}"
        if source == STDIO:
            staged.write_bytes(sys.stdin.buffer.read())
        else:
            import fsspec

            try:
                with fsspec.open(source, "rb") as raw, staged.open("wb") as copy:
                    shutil.copyfileobj(raw, copy)
            except OSError as exc:
                fail(f"{source}: cannot read: {exc}")
        yield str(staged)


def _write_scored(scored: pd.DataFrame, out: str, fmt: str) -> None:
    """Write by format (Parquet typed by the schema: a column of nulls stays a string column);
    ``-`` writes the bytes to standard output."""
    from auditor.scoring import SCORED

    def write(path: Path) -> None:
        if fmt == "parquet":
            SCORED.write_parquet(scored, path)
        else:
            write_table(scored, path)

    if out != STDIO:
        write(Path(out))
        return
    with tempfile.TemporaryDirectory(prefix="auditor-stdout-") as tmp:
        path = Path(tmp) / f"scored.{fmt}"
        write(path)
        sys.stdout.flush()
        with path.open("rb") as data:
            shutil.copyfileobj(data, sys.stdout.buffer)
        sys.stdout.buffer.flush()


@app.command()
def score(
    input: Annotated[
        str,
        typer.Argument(help="CSV, JSONL or Parquet file (by extension), an fsspec URL, or - for standard input"),
    ],
    text_col: TextColOpt,
    out: Annotated[
        str, typer.Option("--out", help="output file: CSV, JSONL or Parquet (by extension), or - for standard output")
    ],
    fmt: FormatOpt = None,
    input_format: Annotated[
        TableFormat | None,
        typer.Option("--input-format", help="format of the input when it differs from --format"),
    ] = None,
    model: ModelOpt = None,
    trust_model: TrustOpt = False,
) -> None:
    """Score every row: llm_probability, flagged (at the calibrated threshold) and one column per signal.

    `auditor score - --text-col text --out - --format jsonl < in.jsonl > scored.jsonl` reads standard
    input and writes standard output (messages go to stderr)."""
    _quiet_libraries()
    from auditor.scoring import FLAGGED, NotCalibratedError, score_table

    named, why = _named_format(out)
    out_format = named or (fmt.value if fmt else None)
    if out_format is None:
        fail(f"--out {out}: {why}; give --format {'|'.join(FORMATS)}")
    if out_format not in (*FORMATS, "tsv"):
        fail(f"--out {out}: cannot write {out_format}; write .csv, .tsv, .jsonl or .parquet")
    given = input_format or fmt
    with _staged_input(input, given.value if given else None, "--input-format or --format") as source:
        frame = _read_texts(source, text_col)
    scorer = _scorer(model, trust_model)
    try:
        scorer.require_calibration()
    except NotCalibratedError as exc:
        fail(str(exc))
    name = "standard input" if input == STDIO else source_name(input)
    with progress_bar(f"scoring {name}", len(frame)) as advance:
        scored = score_table(scorer, frame, text_col, advance)
    _write_scored(scored, out, out_format)
    skipped = scored["skip_reason"].notna().sum()
    console.print(
        f"scored {len(scored) - skipped} of {len(scored)} rows ({skipped} skipped, see skip_reason); "
        f"{int(scored[FLAGGED].sum())} flagged -> {'standard output' if out == STDIO else out}"
    )


@app.command()
def calibrate(
    human: Annotated[Path, typer.Option("--human", help="human-written reference texts (file)")],
    text_col: TextColOpt,
    machine: Annotated[
        Path | None, typer.Option("--machine", help="LLM-written texts, to measure the true-positive rate")
    ] = None,
    target_fpr: Annotated[float, typer.Option("--target-fpr", min=0.0001, max=0.5)] = 0.01,
    heldout_fraction: Annotated[
        float, typer.Option(min=0.1, max=0.9, help="share of human texts kept to measure the false-positive rate")
    ] = 0.5,
    source_col: Annotated[
        str | None,
        typer.Option(
            "--source-col",
            help="column naming each text's source (task, dataset, domain): rates are also measured per source, "
            "and audits widen their intervals by how much the rates vary between sources",
        ),
    ] = None,
    model: ModelOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the calibrated bundle here (default: in place)")
    ] = None,
    trust_model: TrustOpt = False,
) -> None:
    """Choose the operating threshold for a target false-positive rate and store it next to the model."""
    _quiet_libraries()
    from auditor.calibration import calibrate as run_calibration
    from auditor.calibration import heldout_mask, save_calibration, signal_reference
    from auditor.scoring import SIGNAL_PREFIX
    from detectors.bundle import copy_bundle, default_bundle_dir
    from detectors.perplexity import MACHINE_DIRECTION

    source = model or get_settings().model_dir or default_bundle_dir()
    if out is None and Path(source).resolve() == default_bundle_dir().resolve():
        fail("the shipped model is read-only: pass --out DIR to write a calibrated copy, then use it with --model DIR")
    extra = {"--source-col": source_col} if source_col else None
    humans = _read_texts(human, text_col, extra)
    machines = _read_texts(machine, text_col, extra) if machine else None
    scorer = _scorer(model, trust_model, reference=False)
    total = len(humans) + (len(machines) if machines is not None else 0)
    with progress_bar("scoring calibration texts", total) as advance:
        human_frame = scorer.detect_all(humans[text_col].tolist(), on_progress=advance)
        machine_frame = (
            scorer.detect_all(machines[text_col].tolist(), on_progress=advance) if machines is not None else None
        )
    human_scores = human_frame["llm_probability"].to_numpy()
    machine_scores = machine_frame["llm_probability"].to_numpy() if machine_frame is not None else None
    human_sources = humans[source_col].astype(str).to_numpy() if source_col else None
    machine_sources = machines[source_col].astype(str).to_numpy() if source_col and machines is not None else None
    scored = ~np.isnan(human_scores)
    human_scores = human_scores[scored]
    human_sources = human_sources[scored] if human_sources is not None else None
    heldout = heldout_mask(len(human_scores), heldout_fraction)
    try:
        result = run_calibration(
            human_scores[~heldout],
            human_scores[heldout],
            machine_scores,
            target_fpr,
            data=f"human: {human}" + (f"; machine: {machine}" if machine else ""),
            model=str(scorer.model_dir),
            human_sources=human_sources[heldout] if human_sources is not None else None,
            machine_sources=machine_sources,
        )
    except ValueError as exc:
        fail(str(exc))
    result.signal_reference = signal_reference(
        {k: human_frame[SIGNAL_PREFIX + k].to_numpy() for k in MACHINE_DIRECTION}
    )
    target = copy_bundle(scorer.model_dir, out) if out else scorer.model_dir
    path = save_calibration(result, target)
    if target == scorer.model_dir:
        scorer.calibration = result
    tpr = f", TPR {result.heldout_tpr.estimate:.3f}" if result.heldout_tpr else ""
    console.print(
        f"threshold {result.threshold:.4f} for FPR {target_fpr:g}: held-out FPR {result.heldout_fpr.estimate:.4f} "
        f"({result.heldout_fpr.k}/{result.heldout_fpr.n}){tpr} -> {path}"
    )


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="labelled texts: CSV, JSONL or Parquet")],
    text_col: TextColOpt,
    label_col: Annotated[str, typer.Option("--label-col", help="column saying who wrote each text")],
    out: Annotated[Path, typer.Option("--out", help="directory for the trained bundle")],
    machine_label: Annotated[
        str, typer.Option(help="label value meaning LLM-written; every other value means human")
    ] = "machine",
    model_kind: Annotated[str, typer.Option("--model-kind", help="mlp or logistic")] = "mlp",
    target_fpr: Annotated[float, typer.Option("--target-fpr", min=0.0001, max=0.5)] = 0.01,
    calibration_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="share of rows held out to calibrate the threshold (0: skip)")
    ] = 0.3,
    seed: int = 0,
) -> None:
    """Train the LM-text classifier on your own labelled texts and calibrate its threshold."""
    _quiet_libraries()
    from auditor.training import train_bundle

    frame = _read_texts(data, text_col, {"--label-col": label_col})
    labels = (frame[label_col].astype(str).str.strip() == machine_label).astype(int).to_numpy()
    if labels.min() == labels.max():
        fail(
            f"{data}: every row of {label_col!r} is {'equal to' if labels[0] else 'different from'} "
            f"--machine-label {machine_label!r}; training needs both human and LLM-written texts"
        )
    settings = get_settings()
    with progress_bar("computing LM features", len(frame)) as advance:
        try:
            result = train_bundle(
                frame[text_col].tolist(),
                labels,
                out,
                settings,
                model_kind=model_kind,
                target_fpr=target_fpr,
                calibration_fraction=calibration_fraction,
                seed=seed,
                data_description=str(data),
                on_progress=advance,
            )
        except ValueError as exc:
            fail(str(exc))
    console.print(result.summary())


AUDIT_EPILOG = _exit_code_epilog(
    AUDIT_EXIT_CODES,
    "\n\nWhen several apply, the first of 4, 5, 3 is the exit code. Exit 3 reads the verdicts in the report "
    "(vendors[].verdict.decision): above when the share's lower end (vendors[].verdict.at_least: the low end of the "
    "headline interval, vendors[].prevalence.ci_low, or the one-sided bound from a human reference of the task, "
    "vendors[].prevalence_lower_bound.bound, when that is larger) is above the tolerance; within when the interval's "
    "upper end is at or below it; undetermined otherwise (the vendor's verdict then says cannot tell).",
)


@app.command(epilog=AUDIT_EPILOG)
def audit(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="CSV, JSONL or Parquet files, optionally .gz or .zst: paths or fsspec URLs (file://, s3:// ...)"
        ),
    ],
    text_col: TextColOpt,
    vendor_col: Annotated[str, model_option(AuditColumns, "vendor", "--vendor-col")],
    out: Annotated[Path, typer.Option("--out", help="directory for report.json/.html/.md and items.parquet")],
    worker_col: Annotated[str | None, model_option(AuditColumns, "worker", "--worker-col")] = None,
    id_col: Annotated[str | None, model_option(AuditColumns, "id", "--id-col")] = None,
    batch_col: Annotated[str | None, model_option(AuditColumns, "batch", "--batch-col")] = None,
    time_col: Annotated[str | None, model_option(AuditColumns, "time", "--time-col")] = None,
    paste_col: Annotated[str | None, model_option(AuditColumns, "paste", "--paste-col")] = None,
    keystrokes_col: Annotated[str | None, model_option(AuditColumns, "keystrokes", "--keystrokes-col")] = None,
    human_reference: Annotated[
        str | None, model_option(AuditOptions, "human_reference", "--human-reference")
    ] = AUDIT_DEFAULTS["human_reference"],
    machine_reference: Annotated[
        str | None, model_option(AuditOptions, "machine_reference", "--machine-reference")
    ] = AUDIT_DEFAULTS["machine_reference"],
    reference_text_col: Annotated[
        str, model_option(AuditOptions, "reference_text_col", "--reference-text-col")
    ] = AUDIT_DEFAULTS["reference_text_col"],
    task: Annotated[
        str | None,
        model_option(
            AuditOptions,
            "task",
            "--task",
            note="; files given with --human-reference/--machine-reference replace a role",
        ),
    ] = AUDIT_DEFAULTS["task"],
    level: Annotated[float, model_option(AuditOptions, "level", "--level")] = AUDIT_DEFAULTS["level"],
    tolerance: Annotated[
        float | None,
        model_option(
            AuditOptions,
            "tolerance",
            "--tolerance",
            "--fail-above",
            note="; the audit exits 3 (after writing the report) when some vendor is above",
        ),
    ] = AUDIT_DEFAULTS["tolerance"],
    top_items: Annotated[int, model_option(AuditOptions, "top_items", "--top-items")] = AUDIT_DEFAULTS["top_items"],
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial", help="exit 0 with a warning when rows were lost to damaged input or none was scored"
        ),
    ] = False,
    resume: Annotated[bool, model_option(AuditOptions, "resume", "--resume/--no-resume")] = AUDIT_DEFAULTS["resume"],
    model: ModelOpt = None,
    trust_model: TrustOpt = False,
    scheduler: SchedulerOpt = None,
    dask_workers: DaskWorkersOpt = None,
    workers: OldWorkersOpt = None,
) -> None:
    """Audit a delivery: per-vendor and per-worker LLM prevalence with intervals, evidence and warnings."""
    _quiet_libraries()
    from auditor.auditing import plan, run_audit
    from auditor.execution import executor
    from auditor.report.render import write_report
    from auditor.scoring import NotCalibratedError

    dask_workers = renamed("--dask-workers", dask_workers, "--workers", workers)
    if scheduler and dask_workers:
        fail("give --scheduler or --dask-workers, not both")
    if scheduler or dask_workers:
        require_extra("dask", "distributed")
    options = AuditOptions(
        columns=AuditColumns(
            text=text_col,
            vendor=vendor_col,
            worker=worker_col,
            id=id_col,
            batch=batch_col,
            time=time_col,
            paste=paste_col,
            keystrokes=keystrokes_col,
        ),
        level=level,
        resume=resume,
        human_reference=human_reference,
        machine_reference=machine_reference,
        reference_text_col=reference_text_col,
        task=task,
        tolerance=tolerance,
        top_items=top_items,
    )
    sources: list[Source] = list(inputs)
    try:
        options.columns, unreadable, expected = plan(sources, options.columns)
    except ReadError as exc:
        fail(str(exc))
    for reason in unreadable.values():
        warn(f"{reason}; auditing the other files")
    if options.columns.autodetected:
        console.print(f"behavioural columns found by name: {', '.join(options.columns.autodetected)}")
    scorer = _scorer(model, trust_model)
    try:
        with executor(scheduler, dask_workers) as runner, progress_bar("scoring", expected) as advance:
            report = run_audit(
                sources, options, out, scorer, get_settings(), unreadable, advance, executor=runner, tasks=_task_store()
            )
    except (NotCalibratedError, ReadError, ValueError) as exc:
        fail(str(exc))
    with console.status("writing the report"):
        paths = write_report(report, out)
    _print_vendors(report)
    console.print(f"report: {paths['html']} (+ report.json, report.md, items.parquet)")
    code = audit_exit_code(report, allow_partial)
    if code != EXIT_OK:
        raise typer.Exit(code)


def _print_vendors(report: Report) -> None:
    for vendor in report.vendors:
        p = vendor.prevalence
        console.print(
            f"{vendor.vendor}: {vendor.n_scored} scored, {vendor.n_flagged} flagged; "
            f"prevalence {p.estimate:.1%} [{p.ci_low:.1%}, {p.ci_high:.1%}]"
            + (f"; at least {vendor.prevalence_lower_bound.bound:.1%}" if vendor.prevalence_lower_bound else "")
            + ("; [yellow]calibration does not fit this vendor's task[/]" if vendor.calibration_advice else ""),
            highlight=False,
        )
        if vendor.verdict is not None:
            console.print(f"  verdict: {vendor.verdict.headline}", highlight=False, markup=False)
    if report.warnings:
        alerts.print(
            f"[yellow]{len(report.warnings)} warning(s)[/]: "
            + ", ".join(f"{w.kind} ({w.count})" for w in report.warnings)
        )


def audit_exit_code(report: Report, allow_partial: bool) -> int:
    """The exit code of :data:`AUDIT_EXIT_CODES` for a written report; says why on stderr. Exit 3
    reads the decisions stored in the report's verdicts (auditor/report/verdict.py), so the code,
    the headline and report.json cannot disagree."""
    by_status = report.totals.get("by_status", {})
    scored, lost = int(by_status.get("scored", 0)), int(by_status.get("unreadable", 0))
    codes = []
    if scored == 0:
        rows = int(report.totals.get("rows", 0))
        codes.append(EXIT_NOTHING_SCORED)
        said = f"no row was scored ({rows} row(s) read; empty or missing texts are `skipped` in items.parquet)"
        if allow_partial:
            warn(said)
        else:
            alerts.print(f"[bold red]error:[/] {said}; --allow-partial accepts it", highlight=False)
    if lost:
        codes.append(EXIT_ROWS_LOST)
        said = (
            f"{lost} row(s) or file(s) could not be read (status `unreadable` in items.parquet, "
            "see the report's warnings); the estimates cover the rows that were read"
        )
        if allow_partial:
            warn(said)
        else:
            alerts.print(f"[bold red]error:[/] {said}; --allow-partial accepts it", highlight=False)
    above = [v for v in report.vendors if v.verdict is not None and v.verdict.decision == "above"]
    for vendor in above:
        assert vendor.verdict is not None
        alerts.print(
            f"[bold red]above --tolerance {vendor.verdict.tolerance:g}:[/] {vendor.vendor} ({vendor.verdict.headline})",
            highlight=False,
        )
    if above:
        codes.append(EXIT_ABOVE)
    if allow_partial:
        codes = [c for c in codes if c not in (EXIT_NOTHING_SCORED, EXIT_ROWS_LOST)]
    return codes[0] if codes else EXIT_OK


class OnInconclusive(StrEnum):
    ESTIMATE = "estimate"
    PASS = "pass"
    REJECT = "reject"


@app.command(epilog=_exit_code_epilog(GATE_EXIT_CODES))
def gate(
    shards: Annotated[list[str], typer.Argument(help="JSONL (.gz, .zst) or Parquet shards: paths or fsspec URLs")],
    max_synthetic: Annotated[
        float,
        model_option(
            GatePolicy,
            "max_synthetic",
            "--max-synthetic",
            "--tolerance",
            note=": shards above it are rejected (the tolerance; --tolerance is the name `auditor audit`, the Python "
            "API and REST use)",
        ),
    ],
    manifest: Annotated[Path, typer.Option("--manifest", help="where to write the JSON manifest of decisions")],
    benchmark_index: Annotated[
        str | None,
        typer.Option(
            "--benchmark-index", help="evaluation-set index (.npz from `auditor index-benchmarks`) or a JSONL of items"
        ),
    ] = None,
    max_benchmark_hits: Annotated[
        int, model_option(GatePolicy, "max_benchmark_hits", "--max-benchmark-hits", note=" per shard")
    ] = GATE_DEFAULTS["max_benchmark_hits"],
    quarantine: Annotated[
        Path | None, typer.Option("--quarantine", help="directory for the offending documents of rejected shards")
    ] = None,
    text_col: Annotated[str, typer.Option("--text-col", help="field (or column) holding the text")] = "text",
    scorer: Annotated[
        str, typer.Option("--scorer", help="fast: n-gram classifier (default); lm: the LM classifier (slow, stronger)")
    ] = "fast",
    level: Annotated[float, model_option(GatePolicy, "confidence", "--level")] = GATE_DEFAULTS["confidence"],
    on_inconclusive: Annotated[
        OnInconclusive,
        typer.Option(
            "--on-inconclusive",
            help="a shard whose interval still contains --max-synthetic after the whole sample: decide on the "
            "point estimate (estimate, the default), pass it, or reject it (its flagged documents then go to "
            "--quarantine)",
        ),
    ] = OnInconclusive.ESTIMATE,
    max_scored: Annotated[int, model_option(GatePolicy, "max_scored", "--max-scored")] = GATE_DEFAULTS["max_scored"],
    seed: Annotated[int, typer.Option(help="seed of the random sample")] = GATE_DEFAULTS["seed"],
    model: Annotated[Path | None, typer.Option("--model", help="model directory for the chosen scorer")] = None,
    human_reference: Annotated[
        str | None,
        typer.Option(help="human-written texts of the corpus's kind (path or URL): re-measure the false-positive rate"),
    ] = None,
    machine_reference: Annotated[
        str | None,
        typer.Option(help="LLM-written texts of the corpus's kind (path or URL): re-measure the true-positive rate"),
    ] = None,
    reference_text_col: Annotated[str, typer.Option(help="text column of the reference files")] = "text",
    scheduler: SchedulerOpt = None,
    dask_workers: DaskWorkersOpt = None,
    workers: OldWorkersOpt = None,
    text_field: OldTextFieldOpt = None,
    confidence: Annotated[
        float | None,
        model_option(GatePolicy, "confidence", "--confidence", hidden=True, note="; deprecated: use --level"),
    ] = None,
) -> None:
    """Judge pre-training shards: reject those whose LLM-written share is above --max-synthetic or that contain evaluation items.

    A shard that cannot be read is an "error"; the others are still judged."""
    from auditor.execution import executor
    from auditor.gate import SCORERS, GatePolicy, LeakageIndexError, load_index, load_scorer, run_gate
    from auditor.reader import read_texts
    from detectors.bundle import UntrustedModelFile

    text_col = renamed("--text-col", text_col, "--text-field", text_field, default="text")
    level = renamed("--level", level, "--confidence", confidence, default=GATE_DEFAULTS["confidence"])
    dask_workers = renamed("--dask-workers", dask_workers, "--workers", workers)
    if scorer not in SCORERS:
        fail(f"--scorer must be one of {', '.join(SCORERS)}, not {scorer!r}")
    if scheduler and dask_workers:
        fail("give --scheduler or --dask-workers, not both")
    if scheduler or dask_workers:
        require_extra("dask", "distributed")
    if scorer == "lm":
        _quiet_libraries()
    policy = GatePolicy(
        max_synthetic=max_synthetic,
        max_benchmark_hits=max_benchmark_hits,
        confidence=level,
        max_scored=max_scored,
        seed=seed,
        on_inconclusive=on_inconclusive.value,
    )
    try:
        with console.status("loading the scorer, the evaluation-set index and any references"):
            load_scorer(scorer, str(model) if model else None)
            if benchmark_index:
                load_index(benchmark_index)
            references = {
                role: read_texts(path, reference_text_col) if path else None
                for role, path in (("human", human_reference), ("machine", machine_reference))
            }
    except (ReadError, LeakageIndexError, UntrustedModelFile, FileNotFoundError, ValueError) as exc:
        fail(str(exc))

    def said(result: ShardResult) -> None:
        colour = {"pass": "green", "reject": "red", "error": "yellow"}[result.decision]
        share = result.synthetic
        estimate = (
            f"synthetic {share.estimate:.1%} [{share.ci_low:.1%}, {share.ci_high:.1%}], "
            if share and share.estimate is not None
            else ""
        )
        console.print(
            f"[{colour}]{result.decision}[/] {result.shard}: {estimate}{result.documents_scored} scored of "
            f"{result.documents_read} read" + (f"; {'; '.join(result.reasons)}" if result.reasons else ""),
            highlight=False,
        )

    with executor(scheduler, dask_workers) as runner:
        result = run_gate(
            shards,
            policy,
            scorer,
            str(model) if model else None,
            benchmark_index,
            text_col,
            quarantine,
            executor=runner,
            on_shard=said,
            human_reference=references["human"],
            machine_reference=references["machine"],
        )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(result.model_dump_json(indent=2) + "\n")
    console.print(f"manifest: {manifest}")
    raise typer.Exit(result.exit_code())


@app.command("index-benchmarks")
def index_benchmarks(
    items: Annotated[list[str], typer.Argument(help="JSONL files of evaluation items (.gz/.zst too)")],
    out: Annotated[Path, typer.Option("--out", help="index file to write (.npz)")],
    text_col: Annotated[
        str | None, typer.Option("--text-col", help="field holding the item text (default: text, else all strings)")
    ] = None,
    id_col: Annotated[
        str | None, typer.Option("--id-col", help="field holding the item id (default: id, item_id, else file:line)")
    ] = None,
    ngram: Annotated[int, typer.Option(min=5, max=50, help="words per n-gram")] = 13,
    text_field: OldTextFieldOpt = None,
    id_field: Annotated[str | None, typer.Option("--id-field", hidden=True, help="deprecated: use --id-col")] = None,
) -> None:
    """Index evaluation sets once, for `auditor gate --benchmark-index`."""
    from auditor.gate.leakage import LeakageIndex, LeakageIndexError

    text_col = renamed("--text-col", text_col, "--text-field", text_field)
    id_col = renamed("--id-col", id_col, "--id-field", id_field)
    if out.suffix != ".npz":
        fail(f"--out {out}: the index is written as .npz")
    try:
        with console.status("indexing evaluation items"):
            index = LeakageIndex.build(items, text_field=text_col, id_field=id_col, n=ngram)
    except LeakageIndexError as exc:
        fail(str(exc))
    index.save(out)
    info = index.describe()
    console.print(f"indexed {info} -> {out}", highlight=False)
    for problem in index.problems[:10]:
        alerts.print(f"  [yellow]skipped[/] {problem}", highlight=False)


@app.command()
def compare(
    reports: Annotated[
        list[Path], typer.Argument(help="report.json files (or their directories) of successive audits")
    ],
    vendor: Annotated[str | None, typer.Option(help="only this vendor")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="also write the trend as .md, .csv or .json")] = None,
) -> None:
    """The same vendors across successive audits, oldest first, so a trend is visible."""
    from rich.table import Table

    from auditor.report.trend import load_reports, trend_table, write_trend

    try:
        loaded = load_reports(reports)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    trend = trend_table(loaded, vendor)
    if trend.empty:
        fail(f"vendor {vendor!r} is in none of these reports" if vendor else "the reports hold no vendors")
    table = Table("vendor", "audit", "created", "scored", "flag rate", "prevalence", "change")
    for row in trend.itertuples():
        table.add_row(
            str(row.vendor),
            str(row.audit),
            str(row.created_at),
            str(row.n_scored),
            f"{row.flag_rate:.1%}",
            f"{row.prevalence:.1%} [{row.ci_low:.1%}, {row.ci_high:.1%}]",
            str(row.change),
        )
    Console().print(table)
    if out:
        write_trend(trend, out)
        console.print(f"trend -> {out}")


def _reference_index() -> ReferenceIndex:
    """The shared reference index, opened the way the scorer opens it."""
    from detectors import create
    from detectors.duplicates import NearDuplicateDetector

    settings = get_settings()
    detector = create("minhash", threshold=settings.dedup_threshold, reference=settings.reference_location)
    assert isinstance(detector, NearDuplicateDetector)
    index = detector.index
    if index is None:
        fail("no reference index is configured")
    return index


@reference_app.command("add")
def reference_add(
    input: Annotated[Path, typer.Argument(help="texts to index: CSV, JSONL or Parquet")],
    text_col: TextColOpt,
    id_col: Annotated[
        str | None, typer.Option("--id-col", help="column with a stable id (default: file name and row)")
    ] = None,
    label: Annotated[
        str, typer.Option(help="what these texts are: machine (known LLM output), human, eval, ...")
    ] = "machine",
    source: Annotated[str | None, typer.Option(help="where they come from (default: the file name)")] = None,
) -> None:
    """Add texts to the near-duplicate reference index (skipping ids already there)."""
    from detectors.reference import ReferenceEntry

    settings = get_settings()
    try:
        require_columns(input, {"--text-col": text_col, "--id-col": id_col})
        frame, problems = read_table(input)
    except ReadError as exc:
        fail(str(exc))
    report_problems(problems)
    index = _reference_index()
    entries = [
        ReferenceEntry(
            key=str(row[id_col]) if id_col else f"{input.name}:{row['_row']}",
            text=str(row[text_col]),
            label=label,
            source=source or input.name,
        )
        for _, row in frame.iterrows()
        if isinstance(row[text_col], str) and row[text_col].strip()
    ]
    added = index.add(entries)
    console.print(f"added {added} of {len(entries)} texts to {settings.reference_location} ({len(index)} entries)")


@reference_app.command("info")
def reference_info() -> None:
    """Show where the reference index is and what it holds."""
    import json

    typer.echo(json.dumps(_reference_index().describe(), indent=2))


def _task_store():
    from auditor.tasks.store import TaskStore

    return TaskStore(get_settings().task_store_dir)


TaskOpt = Annotated[str, typer.Option("--task", help="task name (letters, digits, '.', '_', '-')")]


@references_app.command("add")
def references_add(
    task: TaskOpt,
    human: Annotated[list[Path] | None, typer.Option("--human", help="human-written texts of the task")] = None,
    machine: Annotated[list[Path] | None, typer.Option("--machine", help="LLM-written texts of the task")] = None,
    text_col: Annotated[str, typer.Option("--text-col", help="text column of the files")] = "text",
    replace: Annotated[bool, typer.Option(help="drop the role's stored texts first")] = False,
    model: ModelOpt = None,
    trust_model: TrustOpt = False,
) -> None:
    """Store a task's human and/or LLM-written reference texts, scored once."""
    _quiet_libraries()
    from auditor.tasks.store import TaskError, check_name, scorer_identity

    if not human and not machine:
        fail("give --human FILE and/or --machine FILE")
    try:
        check_name(task)
        files = [("human", path) for path in human or []] + [("machine", path) for path in machine or []]
        texts = {(role, path): _reference_texts(path, text_col) for role, path in files}
    except (ReadError, TaskError) as exc:
        fail(f"task {task!r}: {exc}")
    store, scorer = _task_store(), _scorer(model, trust_model, reference=False)
    identity = scorer_identity(scorer.classifier.describe())
    cleared: set[str] = set()
    for (role, path), rows in texts.items():
        with console.status(f"scoring {len(rows)} {role} texts of {path.name}"):
            try:
                info = store.add(
                    task, role, rows, scorer.probabilities, identity, str(path), replace=replace and role not in cleared
                )
            except TaskError as exc:
                fail(str(exc))
        cleared.add(role)
    console.print(f"task {task}: {info.summary()['human']} human, {info.summary()['machine']} LLM-written references")


def _reference_texts(path: Path, text_col: str) -> list[str]:
    from auditor.reader import read_texts

    try:
        texts = read_texts(path, text_col)
    except ReadError as exc:
        raise ReadError(str(exc).replace("--reference-text-col", "--text-col")) from None
    if not texts:
        raise ReadError(f"{path}: column {text_col!r} holds no non-blank text")
    return texts


@references_app.command("list")
def references_list() -> None:
    """The stored tasks and how many references each holds."""
    from rich.table import Table

    store = _task_store()
    table = Table("task", "human", "LLM-written", "generator", "created")
    for name in store.names():
        row = store.info(name).summary()
        table.add_row(name, str(row["human"]), str(row["machine"]), row["generator"] or "", row["created_at"])
    Console().print(table if store.names() else "no tasks yet: add one with `auditor references add`")


@references_app.command("show")
def references_show(task: TaskOpt) -> None:
    """Everything stored about one task (JSON)."""
    from auditor.tasks.store import TaskError

    try:
        typer.echo(_task_store().info(task).model_dump_json(indent=2))
    except TaskError as exc:
        fail(str(exc))


@references_app.command("remove")
def references_remove(task: TaskOpt) -> None:
    """Delete a task's references."""
    from auditor.tasks.store import TaskError

    try:
        _task_store().remove(task)
    except TaskError as exc:
        fail(str(exc))
    console.print(f"removed task {task}")


@references_app.command("generate")
def references_generate(
    task: TaskOpt,
    prompts: Annotated[Path, typer.Option("--prompts", help="file of the task's prompts (CSV, JSONL, Parquet)")],
    prompt_col: Annotated[str, typer.Option("--prompt-col", help="column holding the prompt")],
    per_prompt: Annotated[int, typer.Option("--per-prompt", min=1, help="answers per prompt")] = 1,
    generator: Annotated[
        str,
        typer.Option(
            "--generator",
            help="`embedded` (SmolLM2, default), a local transformers model directory, or openai:MODEL "
            "(AUDITOR_OPENAI_BASE_URL / AUDITOR_OPENAI_API_KEY, or OPENAI_*)",
        ),
    ] = "embedded",
    max_new_tokens: Annotated[int, typer.Option(min=8, help="length limit of each answer")] = 200,
    model: ModelOpt = None,
    trust_model: TrustOpt = False,
) -> None:
    """Write LLM answers to the task's own prompts and store them as its LLM-written references.
    An interrupted run keeps what it made; running the same command again resumes."""
    _quiet_libraries()
    from auditor.tasks.generate import GenerationError, generate_answers, make_generator
    from auditor.tasks.store import TaskError, check_name, scorer_identity

    try:
        check_name(task)
        texts = _reference_texts(prompts, prompt_col)
    except (ReadError, TaskError) as exc:
        fail(f"task {task!r}: {str(exc).replace('--text-col', '--prompt-col')}")
    store = _task_store()
    try:
        with console.status(f"loading generator {generator}"):
            writer = make_generator(generator, cache_dir=get_settings().cache_dir, max_new_tokens=max_new_tokens)
    except (ValueError, OSError, RuntimeError) as exc:
        fail(f"task {task!r}: generator {generator!r}: {exc}")
    answers_file = store.work_dir(task) / f"generated-{_slug(writer.info.model)}.jsonl"
    try:
        with progress_bar(f"generating for {task}", len(texts) * per_prompt) as advance:
            result = generate_answers(texts, writer, answers_file, per_prompt, on_progress=advance)
    except (GenerationError, ValueError) as exc:
        fail(f"task {task!r}: {exc}")
    for problem in result.problems[:10]:
        warn(str(problem))
    if result.empty_prompts:
        warn(f"{result.empty_prompts} empty prompt(s) skipped")
    answers = read_table(answers_file)[0]["text"].tolist()
    scorer = _scorer(model, trust_model, reference=False)
    origin = f"generated by {writer.info.model} from {prompts}"
    with console.status(f"scoring {len(answers)} answers"):
        info = store.add(
            task,
            "machine",
            answers,
            scorer.probabilities,
            scorer_identity(scorer.classifier.describe()),
            origin,
            generator=writer.info.to_dict(),
        )
    console.print(
        f"task {task}: {result.written} answers written, {result.resumed} resumed; "
        f"{info.machine.n_texts if info.machine else 0} LLM-written references stored"
    )
    if writer.info.small_local_model:
        alerts.print(
            "[yellow]note:[/] a small local model wrote these answers; its style is not that of the LLMs "
            "crowd workers use, and the report says so"
        )


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-60:] or "generator"


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="audit worker processes to start alongside the web server (0: run them yourself with `auditor worker`)"
        ),
    ] = 1,
) -> None:
    """Run the REST service (FastAPI under /v1, docs at /docs) and its audit workers."""
    require_extra("service", *SERVICE_MODULES)
    import signal
    import subprocess

    import uvicorn

    from api.main import create_app
    from api.outages import KEEP_ALIVE_S
    from api.settings import get_service_settings

    _quiet_libraries()
    logging.getLogger("api").setLevel(logging.INFO)
    app_ = create_app(get_service_settings())
    children = [subprocess.Popen([sys.executable, "-m", "auditor.cli", "worker"]) for _ in range(workers)]
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into an exit so that the
    # `finally` below still stops the workers instead of leaving them orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Idle connections stay open well past Retry-After: a client that waits as told and sends
        # its retry on the same connection must not race the server closing it.
        uvicorn.run(
            app_, host=host, port=port, log_level="info", timeout_graceful_shutdown=30, timeout_keep_alive=KEEP_ALIVE_S
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    poll: Annotated[float, typer.Option(help="seconds between polls of an empty queue")] = 1.0,
) -> None:
    """Run audit jobs from the service's queue (loads the models once)."""
    require_extra("service", *SERVICE_MODULES)
    import signal
    import threading

    from api.db import migrate
    from api.jobs import worker_loop
    from api.settings import get_service_settings
    from auditor.scoring import Scorer

    _quiet_libraries()
    logging.getLogger("api").setLevel(logging.INFO)
    settings = get_service_settings()
    if settings.dask_scheduler:
        require_extra("dask", "distributed")
    migrate(settings.database)
    scorer = Scorer(settings, reference=False).setup()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"worker ready on {settings.database.split('@')[-1]}")
    worker_loop(settings, scorer, poll_seconds=poll, once=once, stop=stop)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant the key belongs to (created if new)")],
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="the key stops working after this long: 90m, 12h, 30d, 2w (default: never)"),
    ] = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line."""
    require_extra("service", *SERVICE_MODULES)
    from api.db import migrate, session_factory, utcnow
    from api.keys import create_key, parse_duration
    from api.settings import get_service_settings

    try:
        expires_at = utcnow() + parse_duration(expires_in) if expires_in else None
    except ValueError as exc:
        fail(f"--expires-in: {exc}")
    settings = get_service_settings()
    migrate(settings.database)
    with session_factory(settings.database)() as session:
        key, record = create_key(session, tenant, expires_at)
    until = f", valid until {expires_at.isoformat(timespec='seconds')} UTC" if expires_at else ""
    typer.echo(
        f"created a key for tenant {tenant!r} (prefix {record.prefix}{until}); store it now, it is not shown again:"
    )
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="the key, or its first 12 characters")]) -> None:
    """Revoke an API key: refused (401) from the next request on."""
    require_extra("service", *SERVICE_MODULES)
    from api.db import migrate, session_factory
    from api.keys import revoke_key
    from api.settings import get_service_settings

    settings = get_service_settings()
    migrate(settings.database)
    with session_factory(settings.database)() as session:
        revoked = revoke_key(session, key)
    if not revoked:
        fail("no active key matches")
    typer.echo(f"revoked {revoked} key(s)")


@keys_app.command("list")
def keys_list() -> None:
    """Tenants and key prefixes (never the keys)."""
    require_extra("service", *SERVICE_MODULES)
    from api.db import migrate, session_factory
    from api.keys import list_keys
    from api.settings import get_service_settings

    settings = get_service_settings()
    migrate(settings.database)
    with session_factory(settings.database)() as session:
        for tenant, prefix, created, revoked, expires in list_keys(session):
            said = f"{tenant}\t{prefix}\tcreated {created}" + (f"\trevoked {revoked}" if revoked else "")
            typer.echo(said + (f"\texpires {expires}" if expires else ""))


if __name__ == "__main__":  # pragma: no cover - `python -m auditor.cli`
    app()
