"""The near-duplicate detector: clusters of near-identical texts within a batch (many
workers pasting the same LLM answer) and matches against a persistent reference index.

It composes :mod:`detectors.minhash` (signatures, LSH candidates verified with exact
Jaccard) and :mod:`detectors.reference` (the index); neither of those imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import SCORE, SKIP_REASON, Detector, expand_to_inputs, register
from detectors.minhash import MinHasher, cluster_near_duplicates, lsh_params
from detectors.reference import ReferenceIndex, open_reference_index
from detectors.text import prepare_texts

DUPLICATE_COLUMNS = (
    "dup_cluster",
    "dup_cluster_size",
    "dup_nearest",
    "dup_jaccard",
    "ref_key",
    "ref_jaccard",
    "ref_label",
    "ref_source",
)


@register
class NearDuplicateDetector(Detector):
    """Near-duplicates within the scored batch and against a reference index.

    ``score`` is the strongest verified near-duplicate evidence: the Jaccard similarity
    to a reference entry labelled ``machine`` or to another text of the batch, else 0.
    Whether that means anything (a pasted LLM answer, or a quoted source) is the
    auditor's call, which is why the matches themselves are returned as signals.
    """

    name = "minhash"
    version = "1"

    def __init__(
        self,
        threshold: float = 0.4,
        num_perm: int = 128,
        seed: int = 1,
        shingle: str = "char",
        n: int = 5,
        normalisation: str = "alnum",
        reference: str | None = None,
    ):
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed
        self.shingle = shingle
        self.n = n
        self.normalisation = normalisation
        self.reference = reference

    def setup(self) -> NearDuplicateDetector:
        if getattr(self, "hasher_", None) is None:
            hasher = MinHasher(self.num_perm, self.seed, self.shingle, self.n, self.normalisation)
            self.lsh_params_ = lsh_params(self.threshold, self.num_perm)
            self.index_ = open_reference_index(self.reference, hasher, self.threshold) if self.reference else None
            # Set last: when the index cannot be opened (Redis down), the next call tries again
            # instead of finding a detector without an index.
            self.hasher_ = hasher
        return self

    @property
    def index(self) -> ReferenceIndex | None:
        index: ReferenceIndex | None = self.setup().index_
        return index

    def detect(self, texts: Sequence[Any], groups: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """As :meth:`Detector.detect`. ``groups``: a group number per text, each group one
        contiguous run (independent requests scored together). Near-duplicates are then looked
        for within each group only, and ``dup_cluster`` and ``dup_nearest`` count from the
        group's first row: each group's rows are what detecting it alone would give."""
        prepared = prepare_texts(texts, self.limits)
        labels = np.zeros(len(texts), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        valid_labels = labels[prepared.valid_index]
        found = self._find(prepared.valid_texts, valid_labels) if prepared.valid_texts else self._empty_frame()
        frame = expand_to_inputs(found, prepared)
        # Within-batch neighbours were found among valid texts; point them at the group's input rows.
        valid = np.flatnonzero(frame[SKIP_REASON].isna().to_numpy())
        nearest = frame["dup_nearest"].to_numpy(dtype=float, copy=True)
        has = ~np.isnan(nearest) & (nearest >= 0)
        nearest[has] = valid[nearest[has].astype(int)]
        if groups is not None:
            run_start, first_cluster = _group_offsets(labels, frame["dup_cluster"])
            nearest[has] -= run_start[has]
            cluster = frame["dup_cluster"].astype("Int64")
            frame["dup_cluster"] = cluster.mask(cluster.ge(0).fillna(False), cluster - first_cluster)
        # Unscored rows keep <NA>, as every other signal does; -1 means "scored, no near-duplicate".
        frame["dup_nearest"] = pd.array(nearest, dtype="Int64")
        return frame

    def _score_valid(self, texts: list[str]) -> pd.DataFrame:
        return self._find(texts, None)

    def _find(self, texts: list[str], groups: np.ndarray | None) -> pd.DataFrame:
        self.setup()
        signatures = self.hasher_.signatures(texts)
        clusters = cluster_near_duplicates(signatures, self.threshold, *self.lsh_params_, groups=groups)
        frame = pd.DataFrame(
            {
                "dup_cluster": clusters.cluster,
                "dup_cluster_size": clusters.size,
                "dup_nearest": clusters.nearest,
                "dup_jaccard": clusters.nearest_jaccard,
            }
        )
        matches = self.index_.query(signatures) if self.index_ is not None else [None] * len(texts)
        frame["ref_key"] = [m.key if m else None for m in matches]
        frame["ref_jaccard"] = [m.jaccard if m else 0.0 for m in matches]
        frame["ref_label"] = [m.label if m else None for m in matches]
        frame["ref_source"] = [m.source if m else None for m in matches]
        machine_ref = np.where(frame["ref_label"].eq("machine"), frame["ref_jaccard"], 0.0)
        frame[SCORE] = np.maximum(machine_ref, frame["dup_jaccard"].to_numpy())
        return frame

    def _empty_frame(self) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in (*DUPLICATE_COLUMNS, SCORE)})


def _group_offsets(groups: np.ndarray, cluster: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its group's first row, and its group's smallest cluster id. Clusters never
    cross groups and are numbered in order of first appearance, so each group's ids are one
    consecutive run starting there."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    run = np.cumsum(np.r_[True, groups[1:] != groups[:-1]]) - 1
    ids = cluster.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    first = np.minimum.reduceat(np.where(ids >= 0, ids, np.iinfo(np.int64).max), starts)
    return starts[run], first[run]
