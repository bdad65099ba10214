"""Reading deliveries: every format, compressed or not; bad rows reported with their place."""

import gzip
import json

import pandas as pd
import pytest

from auditor.reader import ReadError as InputError
from auditor.reader import read_columns, read_table, read_texts, require_columns, write_table

ROWS = pd.DataFrame({"id": ["a", "b", "c"], "answer": ["First text.", "Zweiter Text, ß.", "第三個"], "n": [1, 2, 3]})


@pytest.mark.parametrize(
    "name",
    ["d.csv", "d.tsv", "d.jsonl", "d.jsonl.gz", "d.csv.gz", "d.jsonl.zst", "d.jsonl.bz2", "d.csv.xz", "d.parquet"],
)
def test_round_trip_every_format(tmp_path, name):
    path = write_table(ROWS, tmp_path / name)
    frame, problems = read_table(path)
    assert problems == []
    assert frame["answer"].tolist() == ROWS["answer"].tolist()
    assert frame["_row"].tolist() == [1, 2, 3]
    assert set(read_columns(path)) >= {"id", "answer", "n"}


def test_json_array_files_are_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "one"}, {"text": "two"}, 5]))
    frame, problems = read_table(path)
    assert frame["text"].tolist() == ["one", "two"]
    assert problems[0].row == 3 and "expected a JSON object" in problems[0].message


def test_bad_json_line_is_reported_with_its_line_and_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok 1"}\n{"text": "broken\n{"text": "ok 3"}\n[1, 2]\n')
    frame, problems = read_table(path)
    assert frame["text"].tolist() == ["ok 1", "ok 3"]
    assert [(p.row, p.kind) for p in problems] == [(2, "bad_json"), (4, "not_an_object")]
    assert str(problems[0]).startswith(f"{path}, row 2:")


def test_mixed_encodings_are_read_line_by_line_and_reported(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("text\ncafé\n".encode() + "naïve résumé\n".encode("cp1252") + b"plain\n")
    frame, problems = read_table(path)
    assert frame["text"].tolist() == ["café", "naïve résumé", "plain"]
    assert len(problems) == 1 and problems[0].kind == "encoding" and (problems[0].line, problems[0].row) == (3, 2)


def test_csv_row_with_wrong_field_count_is_reported(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,text\n1,"hello, world"\n2\n3,fine,extra\n')
    frame, problems = read_table(path)
    assert frame["id"].tolist() == ["1", "3"]
    assert [p.row for p in problems] == [2, 3]


def test_truncated_gzip_keeps_the_rows_before_the_damage(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    payload = gzip.compress("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(2000)).encode())
    path.write_bytes(payload[: len(payload) // 2])
    frame, problems = read_table(path)
    assert 0 < len(frame) < 2000
    assert problems[-1].kind == "truncated"


def test_missing_column_names_the_columns_that_exist(tmp_path):
    path = write_table(ROWS, tmp_path / "d.csv")
    with pytest.raises(InputError) as error:
        require_columns(path, {"--text-col": "text"})
    message = str(error.value)
    assert "--text-col 'text'" in message and "'answer'" in message and str(path) in message


@pytest.mark.parametrize("name", ["r.jsonl", "r.json", "r.csv", "r.parquet"])
def test_reference_texts_from_a_column_no_record_has_are_an_error_not_an_empty_list(tmp_path, name):
    path = tmp_path / name
    if name == "r.json":
        path.write_text(json.dumps([{"body": "one text"}, {"body": "two texts"}]))
    else:
        write_table(pd.DataFrame({"body": ["one text", "two texts"]}), path)
    with pytest.raises(InputError, match="no such column.*'text'.*'body'"):
        read_texts(path, "text")
    assert read_texts(path, "body") == ["one text", "two texts"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "no such file"),
        ("data.xlsx", b"PK", "cannot tell the format"),
        ("bad.parquet", b"not parquet at all", "not a readable Parquet file"),
        ("empty.csv", b"", "empty file"),
    ],
)
def test_unreadable_files_say_which_file_and_why(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expected) as error:
        read_columns(path)
    assert str(path) in str(error.value)


def test_nested_values_are_written_as_json_text(tmp_path):
    frame = pd.DataFrame({"spans": [[{"start": 0, "end": 4}], []]})
    frame_back, _ = read_table(write_table(frame, tmp_path / "d.csv"))
    assert json.loads(frame_back["spans"][0]) == [{"start": 0, "end": 4}]
