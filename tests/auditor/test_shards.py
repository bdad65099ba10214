"""Streaming shard reader: every format reads the same documents at the same positions, bad
records and damaged streams are reported where they are and never stop the rest, unreadable
shards raise ShardError before any batch, and memory stays bounded on a big shard."""

from __future__ import annotations

import gzip
import json
import pickle
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from auditor.reader import MAX_EXAMPLES, DocumentBatch, iter_documents, read_records
from auditor.reader import Problem as ShardProblem
from auditor.reader import ReadError as ShardError
from auditor.reader import core as shards


def shard_format(shard: str) -> tuple[str, str | None]:
    return shards.describe_format(shard, documents=True)


N_RECORDS = 400


@pytest.fixture(scope="module")
def records(mini_datasets: Path) -> list[dict]:
    """Real records of the shipped mini corpus, 1-1.5 KB per JSON line: CHEAT abstracts with their
    IEEE id and title, then Learning-to-Rewrite texts (id, title, text, label, generator ...)."""
    rows = []
    for name in ("cheat_fusion", "l2r_rewrites"):
        with (mini_datasets / name / f"{name}.jsonl").open(encoding="utf-8") as handle:
            for line, r in enumerate(map(json.loads, handle)):
                rows.append(
                    {
                        "id": r.get("ieee_id") or f"{r['domain']}-{r['pair_idx']}",
                        "title": r.get("title"),
                        **{k: r[k] for k in ("text", "label", "generator", "domain", "source_repo", "source_path")},
                        "line": line,
                    }
                )
    rows = rows[:N_RECORDS]
    assert len(rows) == N_RECORDS and all(isinstance(r["text"], str) and r["text"].strip() for r in rows)
    assert all(r["title"] for r in rows[:100])
    return rows


def jsonl_bytes(rows: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def write_shard(path: Path, payload: bytes) -> str:
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    elif path.name.endswith(".zst"):
        payload = zstandard.ZstdCompressor().compress(payload)
    path.write_bytes(payload)
    return str(path)


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 128) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return str(path)


def read_all(shard: str, **options) -> tuple[list[str], list[int], list[ShardProblem], list[DocumentBatch]]:
    batches = list(iter_documents(shard, **options))
    texts = [t for b in batches for t in b.texts]
    positions = [p for b in batches for p in b.positions]
    problems = [p for b in batches for p in b.problems]
    return texts, positions, problems, batches


# --------------------------------------------------------------------------- formats agree


@pytest.mark.parametrize("name", ["s.jsonl", "s.ndjson", "s.jsonl.gz", "s.jsonl.zst", "s.json.gz", "s.parquet"])
def test_every_format_yields_the_same_documents_positions_and_batches(tmp_path, records, name):
    path = tmp_path / name
    shard = write_parquet(path, records) if name.endswith(".parquet") else write_shard(path, jsonl_bytes(records))
    texts, positions, problems, batches = read_all(shard, batch_size=64)
    assert texts == [r["text"] for r in records]
    assert positions == list(range(1, N_RECORDS + 1))
    assert problems == []
    assert [len(b) for b in batches] == [64] * (N_RECORDS // 64) + [N_RECORDS % 64]
    assert sum(b.rows_seen for b in batches) == N_RECORDS
    assert all(b.records is None for b in batches)


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz", "s.jsonl.zst", "s.parquet"])
def test_lines_longer_than_one_read_are_reassembled(tmp_path, records, monkeypatch, name):
    """Reads of 1,000 bytes cut most of the 1-1.5 KB lines in two; nothing may be lost or split."""
    path = tmp_path / name
    shard = write_parquet(path, records) if name.endswith(".parquet") else write_shard(path, jsonl_bytes(records))
    monkeypatch.setattr(shards, "READ_SIZE", 1000)
    texts, positions, problems, _ = read_all(shard, batch_size=100)
    assert texts == [r["text"] for r in records]
    assert positions == list(range(1, N_RECORDS + 1))
    assert problems == []
    assert read_records(shard, {1, 2, 250, N_RECORDS}) == {p: records[p - 1] for p in (1, 2, 250, N_RECORDS)}


def test_keep_records_carries_the_full_record_of_each_text(tmp_path, records):
    for shard in (
        write_shard(tmp_path / "s.jsonl.gz", jsonl_bytes(records)),
        write_parquet(tmp_path / "s.parquet", records),
    ):
        batches = list(iter_documents(shard, batch_size=50, keep_records=True))
        assert [r for b in batches for r in b.records] == records
        assert all(len(b.records) == len(b.texts) for b in batches)


def test_another_text_field_is_read_in_jsonl_and_parquet(tmp_path, records):
    rows = [{"id": r["id"], "body": r["title"]} for r in records[:100]]
    jsonl = write_shard(tmp_path / "q.jsonl", jsonl_bytes(rows))
    parquet = write_parquet(tmp_path / "q.parquet", rows)
    for shard in (jsonl, parquet):
        texts, positions, problems, _ = read_all(shard, text_field="body")
        assert texts == [r["body"] for r in rows]
        assert positions == list(range(1, 101)) and problems == []
    # the default "text" is not there: every JSON line says so, the Parquet file cannot be read
    _, _, problems, batches = read_all(jsonl)
    assert {p.kind for p in problems} == {"missing_text_field"}
    assert sum(b.problem_counts["missing_text_field"] for b in batches) == 100
    with pytest.raises(ShardError, match="no column 'text'"):
        next(iter_documents(parquet))


# --------------------------------------------------------------------------- bad records


def test_bad_records_are_reported_with_their_line_and_the_rest_is_read(tmp_path, records):
    good = records[:6]
    lines = [
        json.dumps(good[0]),  # 1
        '{"text": "unterminated',  # 2 bad_json
        json.dumps(good[1]),  # 3
        "",  # 4 blank: skipped silently
        "   ",  # 5 blank
        "[1, 2]",  # 6 not_an_object
        json.dumps({"title": "t", "body": "b", "meta": {}, "a": 1, "b": 2, "c": 3}),  # 7 missing_text_field
        json.dumps(good[2]),  # 8
        json.dumps({"text": 42}),  # 9 text_not_string
        json.dumps({"text": "  \n\t "}),  # 10 empty_text
        json.dumps({"text": None}),  # 11 empty_text
        json.dumps(good[3]),  # 12
        '"just a string"',  # 13 not_an_object
        json.dumps(good[4]),  # 14
        json.dumps(good[5])[:-1],  # 15 bad_json, last line without newline
    ]
    shard = write_shard(tmp_path / "bad.jsonl", "\n".join(lines).encode())
    texts, positions, problems, batches = read_all(shard, batch_size=2)
    assert texts == [r["text"] for r in good[:5]]
    assert positions == [1, 3, 8, 12, 14]
    assert [(p.kind, p.line) for p in problems] == [
        ("bad_json", 2),
        ("not_an_object", 6),
        ("missing_text_field", 7),
        ("text_not_string", 9),
        ("empty_text", 10),
        ("empty_text", 11),
        ("not_an_object", 13),
        ("bad_json", 15),
    ]
    assert str(problems[0]).startswith(f"{shard}, line 2: not valid JSON")
    missing = problems[2].message
    assert "'text'" in missing and "'title', 'body', 'meta', 'a', 'b'" in missing and "(6 in all)" in missing
    assert "'c'" not in missing
    assert "a number" in problems[3].message and "an array" in problems[1].message
    assert sum(b.rows_seen for b in batches) == 13  # 15 lines, 2 blank
    assert sum((b.problem_counts for b in batches), start=Counter()) == {
        "bad_json": 2,
        "not_an_object": 2,
        "missing_text_field": 1,
        "text_not_string": 1,
        "empty_text": 2,
    }


def test_many_problems_of_one_kind_are_counted_but_only_the_first_are_itemised(tmp_path, records):
    rows = []
    for i in range(300):
        rows.append({"text": ""} if i % 3 else {"text": records[i % N_RECORDS]["text"]})
    shard = write_shard(tmp_path / "empty.jsonl.zst", jsonl_bytes(rows))
    texts, _, problems, batches = read_all(shard, batch_size=10)
    assert len(texts) == 100
    assert sum(b.problem_counts["empty_text"] for b in batches) == 200
    assert len(problems) == MAX_EXAMPLES
    assert [p.line for p in problems] == [i + 1 for i in range(300) if i % 3][:MAX_EXAMPLES]


def test_a_shard_of_only_bad_records_yields_one_batch_with_the_problems(tmp_path):
    shard = write_shard(tmp_path / "junk.jsonl", b"not json\n{}\n[]\n")
    batches = list(iter_documents(shard))
    assert len(batches) == 1 and batches[0].texts == []
    assert [p.kind for p in batches[0].problems] == ["bad_json", "missing_text_field", "not_an_object"]


def test_a_line_that_is_not_utf8_is_read_as_cp1252_and_reported(tmp_path):
    payload = (
        b"\xef\xbb\xbf"  # UTF-8 byte-order mark
        + '{"text": "café"}\n'.encode()
        + '{"text": "naïve résumé"}\n'.encode("cp1252")
        + b'{"text": "plain"}\n'
    )
    shard = write_shard(tmp_path / "mixed.jsonl.gz", payload)
    texts, positions, problems, _ = read_all(shard)
    assert texts == ["café", "naïve résumé", "plain"]
    assert positions == [1, 2, 3]
    assert [(p.kind, p.line) for p in problems] == [("encoding", 2)]
    assert "Windows-1252" in problems[0].message


def test_utf16_jsonl_raises(tmp_path):
    shard = write_shard(tmp_path / "u16.jsonl", '{"text": "hello"}\n'.encode("utf-16"))
    with pytest.raises(ShardError, match="UTF-16"):
        next(iter_documents(shard))


# --------------------------------------------------------------------------- damaged streams


@pytest.mark.parametrize("name", ["cut.jsonl.gz", "cut.jsonl.zst"])
def test_a_cut_short_stream_yields_the_documents_before_the_cut_then_a_truncated_problem(tmp_path, records, name):
    path = tmp_path / name
    write_shard(path, jsonl_bytes(records))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    texts, positions, problems, batches = read_all(str(path), batch_size=50)
    kept = len(texts)
    assert 0 < kept < N_RECORDS
    assert texts == [r["text"] for r in records[:kept]]
    assert positions == list(range(1, kept + 1))
    assert [(p.kind, p.line) for p in problems] == [("truncated", kept)]
    assert problems[0] in batches[-1].problems
    assert str(problems[0]).startswith(f"{path}, line {kept}: the shard is damaged after this line")


@pytest.mark.parametrize(
    ("name", "compress", "expected"),
    [
        ("crc.jsonl.gz", gzip.compress, "CRC check failed"),
        ("sum.jsonl.zst", zstandard.ZstdCompressor(write_checksum=True).compress, "doesn't match checksum"),
    ],
)
def test_a_checksum_mismatch_is_reported_after_all_the_documents(tmp_path, records, name, compress, expected):
    data = bytearray(compress(jsonl_bytes(records)))
    data[-8 if name.endswith(".gz") else -2] ^= 0xFF  # gzip trailer CRC-32 / zstd content checksum
    path = tmp_path / name
    path.write_bytes(bytes(data))
    texts, _, problems, _ = read_all(str(path))
    assert texts == [r["text"] for r in records]
    assert [(p.kind, p.line) for p in problems] == [("truncated", N_RECORDS)]
    assert expected in problems[0].message


def test_concatenated_gzip_members_and_zstd_frames_are_all_read(tmp_path, records):
    first, second = jsonl_bytes(records[:150]), jsonl_bytes(records[150:])
    gz = tmp_path / "multi.jsonl.gz"
    gz.write_bytes(gzip.compress(first) + gzip.compress(second))
    zst = tmp_path / "multi.jsonl.zst"
    compressor = zstandard.ZstdCompressor()
    zst.write_bytes(compressor.compress(first) + compressor.compress(second))
    for shard in (gz, zst):
        texts, positions, problems, _ = read_all(str(shard))
        assert texts == [r["text"] for r in records] and positions[-1] == N_RECORDS and problems == []


def test_a_gzip_cut_inside_its_header_raises(tmp_path, records):
    path = tmp_path / "stub.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(records))[:6])
    with pytest.raises(ShardError, match="damaged before its first complete line"):
        list(iter_documents(str(path)))


# --------------------------------------------------------------------------- unreadable shards


@pytest.mark.parametrize(
    ("name", "expected"), [("fake.jsonl.gz", "not gzip-compressed"), ("fake.jsonl.zst", "not zstd")]
)
def test_a_shard_not_compressed_as_named_raises_before_any_batch(tmp_path, records, name, expected):
    path = tmp_path / name
    path.write_bytes(jsonl_bytes(records))  # plain text under a compressed name
    documents = iter_documents(str(path))
    with pytest.raises(ShardError, match=expected) as caught:
        next(documents)
    assert str(caught.value).startswith(str(path))
    assert caught.value.shard == str(path)


def test_a_compressed_shard_under_a_plain_name_raises(tmp_path, records):
    path = tmp_path / "hidden.jsonl"
    path.write_bytes(gzip.compress(jsonl_bytes(records)))
    with pytest.raises(ShardError, match=r"gzip-compressed but its name does not end in \.gz"):
        next(iter_documents(str(path)))


def test_missing_files_directories_and_unknown_names_raise(tmp_path):
    cases = {
        str(tmp_path / "missing.jsonl"): "no such file",
        str(tmp_path / "missing.parquet"): "no such file",
        str(tmp_path): "cannot tell the shard format",
        str(tmp_path / "notes.txt"): "accepted extensions: .jsonl .ndjson .jsonl.gz",
        str(tmp_path / "array.json"): "cannot tell the shard format",
        str(tmp_path / "s.parquet.gz"): "compressed internally",
    }
    (tmp_path / "dir.jsonl").mkdir()
    cases[str(tmp_path / "dir.jsonl")] = "is a directory"
    for shard, expected in cases.items():
        with pytest.raises(ShardError, match=expected) as caught:
            list(iter_documents(shard))
        assert str(caught.value).startswith(shard)


def test_parquet_without_the_text_column_raises_listing_the_columns(tmp_path, records):
    shard = write_parquet(tmp_path / "cols.parquet", [{"id": r["id"], "answer": r["text"]} for r in records])
    with pytest.raises(ShardError) as caught:
        next(iter_documents(shard))
    message = str(caught.value)
    assert message.startswith(shard) and "no column 'text'" in message and "'id', 'answer'" in message
    with pytest.raises(ShardError, match="no column 'text'"):
        read_records(shard, {1})
    numbers = write_parquet(tmp_path / "num.parquet", [{"text": i} for i in range(3)])
    with pytest.raises(ShardError, match="holds int64, not text"):
        next(iter_documents(numbers))


def test_a_file_that_is_not_parquet_raises(tmp_path, records):
    shard = write_shard(tmp_path / "fake.parquet", jsonl_bytes(records))
    with pytest.raises(ShardError, match="not a readable Parquet file"):
        next(iter_documents(shard))


def test_an_unreadable_row_group_is_reported_and_the_others_are_read(tmp_path, records):
    rows = [{"text": r["text"], "id": i} for i, r in enumerate(records[:300])]
    path = tmp_path / "broken.parquet"
    write_parquet(path, rows, row_group_size=100)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 64] = b"\xff" * 64  # the first page header of row group 1
    path.write_bytes(bytes(data))
    texts, positions, problems, batches = read_all(str(path), batch_size=64)
    assert positions == list(range(1, 101)) + list(range(201, 301))
    assert texts == [r["text"] for r in rows[:100] + rows[200:]]
    assert [(p.kind, p.row_group, p.row) for p in problems] == [("unreadable_row_group", 1, 101)]
    assert "rows 101-200" in problems[0].message
    assert sum(b.rows_seen for b in batches) == 200
    assert read_records(str(path), {1, 150, 300}) == {1: rows[0], 300: rows[299]}


def test_shard_error_pickles_with_its_message():
    error = pickle.loads(pickle.dumps(ShardError("s3://b/x.jsonl.gz", "no such file")))
    assert str(error) == "s3://b/x.jsonl.gz: no such file" and error.reason == "no such file"


# --------------------------------------------------------------------------- empty shards


def test_empty_shards_yield_no_batch(tmp_path):
    empties = [
        write_shard(tmp_path / "zero.jsonl", b""),
        str(tmp_path / "zero.jsonl.gz"),
        write_shard(tmp_path / "valid-empty.jsonl.gz", b""),  # a real, empty gzip stream
        write_shard(tmp_path / "valid-empty.jsonl.zst", b""),
        write_shard(tmp_path / "blank.jsonl", b"\n\n  \n\r\n"),
        str(tmp_path / "zero.parquet"),
        str(tmp_path / "no-rows.parquet"),
    ]
    (tmp_path / "zero.jsonl.gz").write_bytes(b"")
    (tmp_path / "zero.parquet").write_bytes(b"")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "no-rows.parquet")
    for shard in empties:
        assert list(iter_documents(shard)) == [], shard
        assert read_records(shard, {1}) == {}


# --------------------------------------------------------------------------- fsspec URLs, read_records


def test_fsspec_memory_urls_are_read(records):
    fs = fsspec.filesystem("memory")
    root = f"/shards-test-{uuid.uuid4().hex}"
    try:
        with fs.open(f"{root}/s.jsonl.gz", "wb") as handle:
            handle.write(gzip.compress(jsonl_bytes(records)))
        with fs.open(f"{root}/s.parquet", "wb") as handle:
            pq.write_table(pa.Table.from_pylist(records), handle, row_group_size=100)
        for name in ("s.jsonl.gz", "s.parquet"):
            url = f"memory://{root}/{name}"
            texts, positions, problems, _ = read_all(url, batch_size=128)
            assert texts == [r["text"] for r in records] and positions[-1] == N_RECORDS and problems == []
            assert read_records(url, {7, 333}) == {7: records[6], 333: records[332]}
        with pytest.raises(ShardError, match="no such file"):
            next(iter_documents(f"memory://{root}/missing.jsonl"))
    finally:
        fs.rm(root, recursive=True)


def test_file_urls_are_read(tmp_path, records):
    write_shard(tmp_path / "s.jsonl.zst", jsonl_bytes(records[:10]))
    texts, _, _, _ = read_all((tmp_path / "s.jsonl.zst").as_uri())
    assert texts == [r["text"] for r in records[:10]]


def test_read_records_returns_the_full_records_at_the_positions(tmp_path, records):
    lines = [json.dumps(r) for r in records]
    lines.insert(9, "")  # line 10 blank
    lines.insert(19, "{broken")  # line 20 bad
    shard = write_shard(tmp_path / "r.jsonl.gz", "\n".join(lines).encode() + b"\n")
    _, positions, _, _ = read_all(shard)
    assert 10 not in positions and 20 not in positions and positions[-1] == N_RECORDS + 2
    wanted = {1, 11, 21, positions[-1]}
    got = read_records(shard, wanted | {10, 20, N_RECORDS + 50, 0})
    assert got == {p: json.loads(lines[p - 1]) for p in sorted(wanted)}
    assert got[11] == records[9] and got[positions[-1]] == records[-1]
    parquet = write_parquet(tmp_path / "r.parquet", records, row_group_size=64)
    assert read_records(parquet, {1, 64, 65, 400, 401}) == {p: records[p - 1] for p in (1, 64, 65, 400)}
    assert read_records(shard, set()) == {}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("shard", "expected"),
    [
        ("a.jsonl", ("jsonl", None)),
        ("A.JSONL.GZ", ("jsonl", "gzip")),
        ("dolma-0001.json.gz", ("jsonl", "gzip")),
        ("x.v2.ndjson.zst", ("jsonl", "zstd")),
        ("s3://bucket/dir/part-0.parquet", ("parquet", None)),
        ("simplecache::s3://bucket/part-0.jsonl.zst", ("jsonl", "zstd")),
        ("https://host/p/s.jsonl.gz?token=abc", ("jsonl", "gzip")),
    ],
)
def test_shard_format_from_the_name(shard, expected):
    assert shard_format(shard) == expected


# --------------------------------------------------------------------------- bounded memory


def test_memory_stays_bounded_on_a_200_mb_shard(tmp_path, records):
    block = jsonl_bytes(records)  # ~0.6 MB of real text
    repeats = 200_000_000 // len(block)
    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        for _ in range(repeats):
            handle.write(block)
    documents = batches = 0
    tracemalloc.start()
    try:
        for batch in iter_documents(str(path), batch_size=1_000):
            assert len(batch.texts) <= 1_000
            documents += len(batch.texts)
            batches += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert documents == repeats * N_RECORDS
    assert batches == -(-documents // 1_000)
    # One batch of ~1.5 KB texts, a 1 MiB block with its decoded lines and the decompressor:
    # a few MB. Reading the shard whole would need over 200 MB.
    assert peak < 24_000_000, f"peak traced memory {peak / 1e6:.1f} MB"
