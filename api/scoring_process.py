"""The fast tier's scoring in a process of its own.

A web process is one Python interpreter: parsing requests, looking up keys and scoring all
take turns on one core. The fast model's scoring is pure Python and pandas work, so it runs in
a child process (spawned, loaded once) and the web process's second core does the rest. Batches
go to the child whole (see :mod:`api.batcher`); a child that dies is replaced and the batch it
held is scored again by the new one (scoring has no side effects)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.batcher import Batched
    from api.schemas import ScoreResult
    from api.settings import ServiceSettings
    from auditor.scoring import Scorer
    from detectors import Detector

log = logging.getLogger(__name__)

_scorer: Scorer | None = None  # the child's own


def _load(settings: ServiceSettings, detectors: list[type[Detector]]) -> None:
    global _scorer
    from api.tiers import load_fast_scorer
    from detectors import register, registered

    # The parent's registry, plug-ins included (classes travel by reference: their modules are
    # imported here), so that the child computes and declares the same columns.
    known = registered()
    for cls in detectors:
        if known.get(cls.name) is not cls:
            register(cls)
    _scorer = load_fast_scorer(settings)


def _answer(requests: list[Batched]) -> list[list[ScoreResult]]:
    from api.routes.score import answer_requests

    assert _scorer is not None, "the initializer loads the scorer"
    return answer_requests(_scorer, requests)


def _ready() -> bool:
    return _scorer is not None


class ScoringProcess:
    """Calls :func:`api.routes.score.answer_requests` with the fast scorer in a child process."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                from detectors import registered

                self._pool = ProcessPoolExecutor(
                    1,
                    multiprocessing.get_context("spawn"),
                    initializer=_load,
                    initargs=(self.settings, list(registered().values())),
                )
            return self._pool

    def start(self) -> None:
        """Start the child and load its model now (blocks until it is ready)."""
        self._run(_ready)

    def __call__(self, requests: list[Batched]) -> list[list[ScoreResult]]:
        return self._run(_answer, requests)

    def _run(self, function: Any, *args: Any) -> Any:
        try:
            return self._executor().submit(function, *args).result()
        except BrokenProcessPool:
            log.warning("the fast tier's scoring process died; starting another and scoring its batch again")
            self._discard()
            return self._executor().submit(function, *args).result()

    def _discard(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self._discard()
