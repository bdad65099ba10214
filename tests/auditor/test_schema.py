"""The scored-items table is defined once (auditor/scoring/schema.py) and checked where it is written."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from auditor.scoring import ITEMS, SCORED, SchemaError


def scored_rows(n: int = 2) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "llm_probability": [0.9, None][:n],
            "flagged": [True, False][:n],
            "flag_reason": ["llm_probability 0.900 > threshold 0.500", None][:n],
            "skip_reason": [None, "empty"][:n],
            "text_truncated": [False, False][:n],
            "spans": [json.dumps([{"start": 0, "end": 4}]), "[]"][:n],
            "dup_cluster": pd.array([-1, None][:n], dtype="Int64"),
            "dup_cluster_size": pd.array([1, None][:n], dtype="Int64"),
            "dup_nearest": pd.array([-1, None][:n], dtype="Int64"),
            "dup_jaccard": [0.0, None][:n],
            "ref_key": [None, None][:n],
            "ref_jaccard": [0.0, None][:n],
            "ref_label": [None, None][:n],
            "ref_source": [None, None][:n],
        }
    )
    return frame


def test_conform_orders_input_columns_first_then_the_schema():
    frame = scored_rows()
    frame.insert(3, "answer", ["a text", ""])
    conformed = SCORED.conform(frame.iloc[:, ::-1])
    assert list(conformed.columns) == ["answer", *[n for n in SCORED.names if n in frame]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["flagged"]), "lacks required column"),
        (lambda f: f.assign(flagged=[True, None]), "'flagged' has 1 null"),
        (lambda f: f.assign(llm_probability=["high", "low"]), "'llm_probability' does not hold double"),
    ],
)
def test_a_table_that_breaks_the_schema_is_refused(change, message):
    with pytest.raises(SchemaError, match=message):
        SCORED.conform(change(scored_rows()))


def test_lm_signals_are_optional_but_typed_when_present():
    SCORED.conform(scored_rows())  # the fast n-gram model computes no LM signals
    with pytest.raises(SchemaError, match="ppl_ll_mean"):
        SCORED.conform(scored_rows().assign(ppl_ll_mean=["x", "y"]))


def test_items_parquet_is_written_with_the_schema_types(tmp_path):
    items = scored_rows().assign(
        item_id=["a", "b"],
        file="d.csv",
        row=[1.0, 2.0],  # pandas makes a float column of rows once an unreadable row is among them
        status=["scored", "skipped"],
        problem=[None, "empty"],
        vendor="v",
        worker=None,
        batch=None,
        source_id=["a", "b"],
        duplicate_id=False,
        text=["a text", ""],
        dup_nearest=[None, None],
    )
    path = ITEMS.write_parquet(items, tmp_path / "items.parquet")
    schema = pq.read_schema(path)
    assert schema.names[:4] == ["item_id", "file", "row", "status"]
    assert str(schema.field("row").type) == "int64" and str(schema.field("dup_nearest").type) == "string"
    assert str(schema.field("dup_cluster").type) == "int64" and not schema.field("flagged").nullable


def test_rest_results_and_score_output_share_the_decision_columns():
    from api.schemas import ScoreResult

    assert set(SCORED.role("decision")) <= set(ScoreResult.model_fields)


LM_SIGNALS = (
    "ll_mean", "ll_std", "logrank_mean", "entropy_mean", "fast_detectgpt", "binoculars", "min_k_prob", "rank1_frac",
    "rank10_frac", "ll_volatility", "lastde",
)  # fmt: skip


def test_the_signal_columns_come_from_the_detectors_declarations_in_todays_layout():
    """The registry builds the signal columns; items.parquet keeps the names, order and types it had
    when they were listed here by hand."""
    double, signals = "double", [c for c in ITEMS.columns if c.role == "signal"]
    assert [(c.name, str(c.type)) for c in signals] == [
        ("ppl_n_tokens", "int64"),
        *[(f"ppl_{name}", double) for name in LM_SIGNALS],
        ("ppl_token_truncated", "bool"),
        ("lm_probability", double),
        ("ngram_probability", double),
        ("text_truncated", "bool"),
        ("spans", "string"),
    ]
    assert all(c.nullable and not c.required for c in signals[:-2])
    assert ITEMS.names[:11] == ["item_id", "file", "row", "status", "problem", "vendor", "worker", "batch",
                                "source_id", "duplicate_id", "text"]  # fmt: skip
    assert ITEMS.names[11:15] == SCORED.names[:4] == ["llm_probability", "flagged", "flag_reason", "skip_reason"]
    assert ITEMS.names[-4:] == ["time_on_task_s", "chars_per_second", "pasted", "keystrokes_per_char"]
