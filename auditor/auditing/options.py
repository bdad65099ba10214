"""What an audit is asked to do: one options object for the command line, the Python API, the
REST service and its job workers (it is stored with a job as JSON, and read back the same).

:class:`AuditOptions` is where each option is defined, once: its type, bounds, default and help
text. The surfaces take them from here: ``auditor audit``'s options (:mod:`auditor.cli`, through
:func:`field_help` and :func:`check_field`), :func:`auditor.audit` (which validates its keyword
arguments through :class:`AuditOptions` before anything loads) and the REST request
(:class:`api.schemas.AuditRowsRequest` inherits :class:`AuditSettings`; multipart fields are
validated through :class:`AuditOptions`). Each surface keeps its public names: ``--level``,
``level=``, ``"level"``; the columns are ``--text-col``, ``text_col=``, ``"text_col"``
(:data:`COLUMN_ROLES`, :func:`column_field`; :func:`options_from` takes the public names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

# Behavioural columns recognised by name when not given explicitly (lower-cased).
BEHAVIOUR_NAMES = {
    "time": ("time_on_task", "worktimeinseconds", "timespent", "time_spent", "duration_seconds", "seconds_spent"),
    "paste": ("paste_events", "pastes", "pasted", "copied", "paste_count"),
    "keystrokes": ("keystrokes", "keystroke_count", "key_strokes", "n_keystrokes"),
}
COLUMN_ROLES = ("text", "vendor", "worker", "id", "batch", "time", "paste", "keystrokes")


class AuditColumns(BaseModel):
    """The input column playing each role: ``--text-col``, ``text_col=`` and ``"text_col"`` name ``text``."""

    text: str = Field(min_length=1, description="column holding the text")
    vendor: str = Field(min_length=1, description="column naming the vendor (or crowd platform)")
    worker: str | None = Field(None, min_length=1, description="column naming the worker")
    id: str | None = Field(None, min_length=1, description="column holding each row's id")
    batch: str | None = Field(None, min_length=1, description="column naming the batch")
    time: str | None = Field(None, min_length=1, description="time on task, in seconds")
    paste: str | None = Field(None, min_length=1, description="paste events (count or true/false)")
    keystrokes: str | None = Field(None, min_length=1, description="keystroke count")
    autodetected: list[str] = Field(default_factory=list, description="behavioural columns found by name")

    def options(self) -> dict[str, str | None]:
        """The command-line option naming each role's column, for messages."""
        return {f"--{role}-col": getattr(self, role) for role in COLUMN_ROLES}

    def roles(self) -> dict[str, str | None]:
        return {role: getattr(self, role) for role in COLUMN_ROLES}

    def behaviour(self) -> dict[str, str]:
        return {role: col for role in ("time", "paste", "keystrokes") if (col := getattr(self, role))}


class AuditSettings(BaseModel):
    """The options every surface takes under the same name and type: ``--level`` / ``level=`` /
    ``"level"`` ... The REST request inherits them."""

    level: float = Field(0.9, ge=0.5, lt=1.0, description="interval coverage")
    tolerance: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the largest acceptable LLM share: each vendor's verdict is above, within or undetermined "
        "against it (vendors[].verdict.decision in the report)",
    )
    top_items: int = Field(20, ge=0, description="flagged items shown per vendor in the report")
    task: str | None = Field(
        None,
        description="use the stored references of this task (`auditor references add`, POST "
        "/v1/tasks/{task}/references)",
    )


class AuditOptions(AuditSettings):
    """Everything ``auditor audit`` takes besides its input files and output directory."""

    columns: AuditColumns
    resume: bool = Field(True, description="reuse chunks scored by an interrupted run of the same audit")
    human_reference: str | None = Field(
        None,
        description="human-written texts of the same task, to measure false positives and diversity on (path or URL)",
    )
    machine_reference: str | None = Field(
        None, description="LLM-written texts of the same task, to measure true positives on (path or URL)"
    )
    reference_text_col: str = Field("text", min_length=1, description="text column of the reference files")

    @field_validator("task")
    @classmethod
    def _task_name(cls, task: str | None) -> str | None:
        """A name a task can have (the service checks it first, answering with the task named)."""
        from auditor.tasks.store import check_name

        return None if task is None else check_name(task)


def column_field(role: str) -> str:
    """The public name of the option naming ``role``'s column: ``text_col`` (``--text-col``)."""
    return f"{role}_col"


def public_name(location: tuple[int | str, ...]) -> str:
    """The public name (``text_col``, ``level``) of a field of :class:`AuditOptions` at ``location``
    (``("columns", "text")``, ``("level",)``), as a validation error gives it."""
    if location[:1] == ("columns",) and len(location) > 1:
        return column_field(str(location[1]))
    return ".".join(map(str, location))


def options_from(values: Mapping[str, Any]) -> AuditOptions:
    """:class:`AuditOptions` from the options under their public names (``text_col``, ``level``
    ...: the Python API's keywords, the REST fields); absent or None options take their defaults.
    A ``ValidationError`` names the options it is about by their public names."""
    columns = {role: values.get(column_field(role)) for role in COLUMN_ROLES}
    given = {name: value for name, value in values.items() if name in AuditOptions.model_fields and value is not None}
    try:
        return AuditOptions.model_validate({**given, "columns": columns})
    except ValidationError as exc:
        details: list[Any] = [
            {"type": e["type"], "loc": (public_name(e["loc"]),), "input": e["input"]}
            | ({"ctx": e["ctx"]} if "ctx" in e else {})
            for e in exc.errors()
        ]
        raise ValidationError.from_exception_data("audit options", details) from None


def option_field(model: type[BaseModel], name: str) -> FieldInfo:
    """Option ``name`` of ``model`` (:class:`AuditOptions` or :class:`AuditColumns`)."""
    return model.model_fields[name]


def bounds(field: FieldInfo) -> str:
    """The field's numeric bounds as ``0.5<=x<1`` (empty without bounds)."""
    low = high = ""
    for rule in field.metadata:
        for attribute, template in (("ge", "{:g}<="), ("gt", "{:g}<")):
            if (value := getattr(rule, attribute, None)) is not None:
                low = template.format(value)
        for attribute, template in (("le", "<={:g}"), ("lt", "<{:g}")):
            if (value := getattr(rule, attribute, None)) is not None:
                high = template.format(value)
    return f"{low}x{high}" if low or high else ""


def field_help(model: type[BaseModel], name: str, note: str = "") -> str:
    """The option's description (and a surface's ``note``) with its bounds: the ``--help`` of its
    command-line option."""
    field = option_field(model, name)
    rule = bounds(field)
    return (field.description or "") + note + (f" [{rule}]" if rule else "")


def check_field(model: type[BaseModel], name: str, value: Any) -> Any:
    """``value`` validated as ``model``'s field ``name`` (bounds and validators included), as the
    model itself validates it; raises ``ValueError`` with pydantic's message otherwise."""
    try:
        checked = model.__pydantic_validator__.validate_assignment(model.model_construct(), name, value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return getattr(checked, name)
