"""Task references: human and LLM-written texts of one task, stored with their scores.

A detector's error rates move with the task, so an audit of a vendor doing one task is only
as good as the error rates it assumes. A task's references re-measure them on the task's own
kind of text. They are stored once, per task, under ``<cache>/tasks/<name>/`` (per tenant in
the service): ``task.json`` (where each set came from, the generator that made machine
texts, the model that scored them) and ``human.parquet`` / ``machine.parquet`` (text and
``llm_probability``). Scores are kept so that an audit does not re-score its references;
they are re-scored when the scoring model changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

ROLES = ("human", "machine")
MIN_TEXTS = 2
FEW_TEXTS = 30
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ScoreFn = Callable[[Sequence[str]], np.ndarray]
UNSCORED = "unscored"  # stored without scores (the service's web process); scored on first use


class TaskError(ValueError):
    """A task that does not exist, a bad name, or references that cannot be used."""


class ReferenceSet(BaseModel):
    """One role's references: how many, from where, made by what, scored by what."""

    n_texts: int
    origins: list[str] = Field(default_factory=list, description="files or uploads the texts came from")
    generator: dict[str, Any] | None = Field(None, description="the model that wrote machine references, if generated")
    scored_with: str = Field(description="identity of the model whose llm_probability is stored")
    updated_at: str


class TaskInfo(BaseModel):
    name: str
    created_at: str
    human: ReferenceSet | None = None
    machine: ReferenceSet | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "human": self.human.n_texts if self.human else 0,
            "machine": self.machine.n_texts if self.machine else 0,
            "generator": (self.machine.generator or {}).get("model") if self.machine else None,
            "created_at": self.created_at,
        }


class TaskReferences(BaseModel):
    """What an audit needs from a task: its scores per role and where they came from."""

    model_config = {"arbitrary_types_allowed": True}

    info: TaskInfo
    human: np.ndarray | None = None
    machine: np.ndarray | None = None
    human_texts: list[str] | None = None


def scorer_identity(description: dict[str, Any]) -> str:
    """A short stable hash of the classifier's description (what its scores depend on)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(task: str) -> str:
    if not isinstance(task, str) or not _NAME.fullmatch(task) or task.startswith("tenant-"):
        raise TaskError(
            f"task name {task!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit (and not with 'tenant-', which names the service's per-tenant stores)"
        )
    return task


class TaskStore:
    """Task references under one directory (one per tenant in the service)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/task.json"))

    def info(self, task: str) -> TaskInfo:
        path = self._dir(task) / "task.json"
        if not path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise TaskError(
                f"no task {task!r} (known tasks: {known}); add its references with "
                f"`auditor references add --task {task} --human FILE --machine FILE`"
            )
        return TaskInfo.model_validate_json(path.read_text())

    def texts(self, task: str, role: str) -> pd.DataFrame:
        path = self._dir(task) / f"{role}.parquet"
        return pd.read_parquet(path) if path.is_file() else pd.DataFrame({"text": [], "llm_probability": []})

    def add(
        self,
        task: str,
        role: str,
        texts: Sequence[str],
        score: ScoreFn | None,
        identity: str,
        origin: str,
        generator: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> TaskInfo:
        """Score and store ``texts`` as ``role`` references of ``task`` (appended to those
        already there unless ``replace``; repeated texts are kept once). Without ``score`` the
        texts are stored unscored and scored by the first audit that uses them."""
        if role not in ROLES:
            raise TaskError(f"role must be one of {ROLES}, not {role!r}")
        check_name(task)
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            raise TaskError(f"task {task!r}: no {role} texts to add from {origin} (empty, or all blank)")
        info = self._info_or_new(task)
        kept = None if replace else getattr(info, role)
        existing = self.texts(task, role) if kept else pd.DataFrame({"text": [], "llm_probability": []})
        if score is None:
            identity = UNSCORED
        elif kept and kept.scored_with != identity:
            existing = self._rescored(existing, score)
        new = [t for t in dict.fromkeys(texts) if t not in set(existing["text"])]
        frame = pd.concat([existing, self._rescored(pd.DataFrame({"text": new}), score)], ignore_index=True)
        usable = len(frame) if score is None else int(frame["llm_probability"].notna().sum())
        if usable < MIN_TEXTS:
            raise TaskError(
                f"task {task!r}: the {role} reference would hold {usable} scorable text(s); at least {MIN_TEXTS} "
                f"are needed (and {FEW_TEXTS}+ for useful error rates)"
            )
        origins = ([] if kept is None else kept.origins) + [origin]
        made_by = generator or (kept.generator if kept else None)
        setattr(
            info,
            role,
            ReferenceSet(
                n_texts=len(frame), origins=origins, generator=made_by, scored_with=identity, updated_at=now_iso()
            ),
        )
        self._write(info, role, frame)
        return info

    def load(self, task: str, score: ScoreFn, identity: str) -> TaskReferences:
        """A task's reference scores for an audit, re-scored (and stored again) if the model
        that scored them is not the one auditing."""
        info = self.info(task)
        if info.human is None and info.machine is None:
            raise TaskError(f"task {task!r} has no references; add them with `auditor references add --task {task}`")
        scores: dict[str, np.ndarray | None] = {}
        human_texts = None
        for role in ROLES:
            stored = getattr(info, role)
            if stored is None:
                scores[role] = None
                continue
            frame = self.texts(task, role)
            if stored.scored_with != identity:
                frame = self._rescored(frame, score)
                stored.scored_with, stored.updated_at = identity, now_iso()
                self._write(info, role, frame)
            values = frame["llm_probability"].to_numpy(dtype=float)
            scored = values[~np.isnan(values)]
            scores[role] = scored
            if len(scored) < MIN_TEXTS:
                raise TaskError(
                    f"task {task!r}: only {len(scored)} of its {len(frame)} {role} references could be scored "
                    f"(the others are too short); add more with `auditor references add --task {task}`"
                )
            if role == "human":
                human_texts = frame["text"].tolist()
        return TaskReferences(info=info, human=scores["human"], machine=scores["machine"], human_texts=human_texts)

    def remove(self, task: str) -> None:
        self.info(task)  # the same error as any other use of an unknown task
        shutil.rmtree(self._dir(task))

    def work_dir(self, task: str) -> Path:
        """Where a task keeps work in progress (partial generations)."""
        path = self._dir(check_name(task)) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _dir(self, task: str) -> Path:
        return self.root / check_name(task)

    def _info_or_new(self, task: str) -> TaskInfo:
        try:
            return self.info(task)
        except TaskError:
            return TaskInfo(name=task, created_at=now_iso())

    @staticmethod
    def _rescored(frame: pd.DataFrame, score: ScoreFn | None) -> pd.DataFrame:
        texts = frame["text"].tolist()
        scores = np.asarray(score(texts), dtype=float) if texts and score else np.full(len(texts), np.nan)
        return pd.DataFrame({"text": texts, "llm_probability": scores})

    def _write(self, info: TaskInfo, role: str, frame: pd.DataFrame) -> None:
        folder = self._dir(info.name)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{role}.parquet.partial"
        frame.to_parquet(partial, index=False)
        partial.replace(folder / f"{role}.parquet")
        (folder / "task.json.partial").write_text(info.model_dump_json(indent=2))
        (folder / "task.json.partial").replace(folder / "task.json")
