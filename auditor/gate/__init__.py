"""The pre-training gate: judge shards pass/reject/error (:mod:`auditor.gate.judge`) with an
evaluation-set leakage index (:mod:`auditor.gate.leakage`); shards are read by
:mod:`auditor.reader` and scored by the one scorer (:mod:`auditor.scoring`)."""

from auditor.gate.judge import (
    SCORERS,
    GateManifest,
    GatePolicy,
    ShardResult,
    judge_shard,
    load_index,
    load_scorer,
    run_gate,
)
from auditor.gate.leakage import LeakageIndex, LeakageIndexError

__all__ = [
    "SCORERS",
    "GateManifest",
    "GatePolicy",
    "LeakageIndex",
    "LeakageIndexError",
    "ShardResult",
    "judge_shard",
    "load_index",
    "load_scorer",
    "run_gate",
]
