"""The one reader: rows of deliveries, documents of shards and benchmark items, from CSV,
TSV, JSON, JSON Lines and Parquet, plain or ``.gz``/``.zst`` (``.bz2``/``.xz`` through
fsspec), from local paths or fsspec URLs.

- :mod:`auditor.reader.core`: naming, opening through fsspec, decompression with damage
  detection, decoding; :class:`ReadError`, :class:`Problem`, :class:`ProblemCounter`.
- :mod:`auditor.reader.tables`: rows as pandas frames (deliveries, references), writing tables.
- :mod:`auditor.reader.documents`: texts of shards in batches (the gate), JSON Lines records
  (benchmark items for the leakage index).
"""

from auditor.reader.core import (
    MAX_EXAMPLES,
    Problem,
    ProblemCounter,
    ReadError,
    compression_of,
    describe_format,
    source_name,
)
from auditor.reader.documents import DocumentBatch, iter_documents, iter_json_lines, read_records
from auditor.reader.tables import (
    ROW_COLUMN,
    count_records,
    fingerprint,
    iter_batches,
    read_columns,
    read_table,
    read_texts,
    require_columns,
    write_table,
)

__all__ = [
    "MAX_EXAMPLES",
    "ROW_COLUMN",
    "DocumentBatch",
    "Problem",
    "ProblemCounter",
    "ReadError",
    "compression_of",
    "count_records",
    "describe_format",
    "fingerprint",
    "iter_batches",
    "iter_documents",
    "iter_json_lines",
    "read_columns",
    "read_records",
    "read_table",
    "read_texts",
    "require_columns",
    "source_name",
    "write_table",
]
