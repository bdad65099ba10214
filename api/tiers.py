"""The scoring tiers of ``POST /v1/score``: ``lm`` (the LM classifier bundle, loaded in the
background at start-up; see ``api.main``) and ``fast`` (the n-gram classifier the gate scores
with, ``detectors/artifacts/default/ngram``, with its own calibration next to it).

The fast model loads apart from the LM and in a few seconds, so the fast tier answers while
the LM is still loading (/readyz 503): :class:`FastTier` loads it once, in the background at
start-up or on the first request that needs it, whichever comes first."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from api.problems import Problem

if TYPE_CHECKING:
    from api.settings import ServiceSettings
    from auditor.scoring import Scorer

log = logging.getLogger(__name__)

Tier = Literal["lm", "fast"]
TIER_DESCRIPTION = (
    "which model scores the texts: `lm` (default) the LM classifier (the strongest; about a second per text on a "
    "2-core CPU), `fast` the n-gram classifier the pre-training gate uses (tens of milliseconds per text, weaker: "
    "see its model card), with its own calibrated threshold. The fast tier answers while the LM is still loading."
)


def load_fast_scorer(settings: ServiceSettings) -> Scorer:
    """The fast tier's model: the shipped n-gram classifier and its calibration (no LM)."""
    from auditor.scoring import Scorer

    scorer = Scorer(settings, reference=False, kind="fast").setup()
    scorer.require_calibration()  # flagged needs its own threshold: refuse a model without one
    scorer.detect(["warm-up text for the scoring kernels."])
    return scorer


class FastTier:
    """The fast tier's scorer, loaded once by whoever asks first (``start`` or ``get``)."""

    def __init__(self, load: Callable[[], Scorer]):
        self._load = load
        self._lock = threading.Lock()
        self.scorer: Scorer | None = None
        self.error: str | None = None
        self._started = False

    @property
    def state(self) -> str:
        """not loaded, loading, loaded or failed (as /readyz reports it)."""
        if self.scorer is not None:
            return "loaded"
        if self.error is not None:
            return "failed"
        return "loading" if self._started else "not loaded"

    def get(self) -> Scorer:
        """The loaded scorer (loading it first if nobody has); 503 if it cannot be loaded."""
        if self.scorer is None and self.error is None:
            with self._lock:
                if self.scorer is None and self.error is None:
                    self._started = True
                    started = time.monotonic()
                    try:
                        self.scorer = self._load()
                    except Exception as exc:  # noqa: BLE001 - answered as 503 and logged
                        log.exception("loading the fast model failed")
                        self.error = f"{type(exc).__name__}: {exc}"
                    else:
                        log.info("fast model loaded in %.1f s", time.monotonic() - started)
        if self.scorer is None:
            raise Problem(503, f"the fast tier's model could not be loaded ({self.error}); use tier lm")
        return self.scorer

    def start(self) -> None:
        """Load in a background thread (a daemon: stopping the server does not wait for it)."""
        self._started = True

        def load() -> None:
            with contextlib.suppress(Problem):  # logged by get(), answered to each request
                self.get()

        threading.Thread(target=load, name="load-fast-model", daemon=True).start()
