"""What an audit is asked to do: one options object for the command line, the REST service
and its job workers (it is stored with a job as JSON, and read back the same)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# Behavioural columns recognised by name when not given explicitly (lower-cased).
BEHAVIOUR_NAMES = {
    "time": ("time_on_task", "worktimeinseconds", "timespent", "time_spent", "duration_seconds", "seconds_spent"),
    "paste": ("paste_events", "pastes", "pasted", "copied", "paste_count"),
    "keystrokes": ("keystrokes", "keystroke_count", "key_strokes", "n_keystrokes"),
}
COLUMN_ROLES = ("text", "vendor", "worker", "id", "batch", "time", "paste", "keystrokes")


class AuditColumns(BaseModel):
    """The input column playing each role (``--text-col``, ``--vendor-col`` ...)."""

    text: str
    vendor: str
    worker: str | None = None
    id: str | None = None
    batch: str | None = None
    time: str | None = None
    paste: str | None = None
    keystrokes: str | None = None
    autodetected: list[str] = Field(default_factory=list, description="behavioural columns found by name")

    def options(self) -> dict[str, str | None]:
        """The command-line option naming each role's column, for messages."""
        return {f"--{role}-col": getattr(self, role) for role in COLUMN_ROLES}

    def roles(self) -> dict[str, str | None]:
        return {role: getattr(self, role) for role in COLUMN_ROLES}

    def behaviour(self) -> dict[str, str]:
        return {role: col for role in ("time", "paste", "keystrokes") if (col := getattr(self, role))}


class AuditOptions(BaseModel):
    """Everything ``auditor audit`` takes besides its input files and output directory."""

    columns: AuditColumns
    level: float = Field(0.9, ge=0.5, lt=1.0, description="interval coverage")
    resume: bool = Field(True, description="reuse chunks scored by an interrupted run of the same audit")
    top_items: int = Field(20, ge=0, description="flagged items shown per vendor")
    human_reference: str | None = Field(None, description="human-written texts of the same task (path or URL)")
    machine_reference: str | None = Field(None, description="LLM-written texts of the same task (path or URL)")
    reference_text_col: str = Field("text", description="text column of the reference files")
    task: str | None = Field(None, description="stored task references to use (`auditor references add`)")
    tolerance: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the largest acceptable LLM share: each vendor is above, within or undetermined against it",
    )
