"""Decompression bombs: a small .gz/.zst/.bz2/.xz upload that decompresses past
AUDITOR_MAX_DECOMPRESSED_BYTES is refused with 413 by the routes that take files (audits, task
references), counted while streaming, so memory stays flat; compressed files within the limit
are read as before.

In-process on an app without models, with a limit of 16 MiB and bombs of 64 MiB built here."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tracemalloc

import pytest
import zstandard
from fastapi.testclient import TestClient

MiB = 1024 * 1024
LIMIT = 16 * MiB
BOMB_SIZE = 64 * MiB
CSV_LINE = b"It rained all day, so we stayed in and read.,acme\n"


def zeros(size: int, piece: int = MiB):
    for start in range(0, size, piece):
        yield b"\0" * min(piece, size - start)


def compressed(kind: str, chunks) -> bytes:
    """``chunks`` compressed as ``kind``, without ever holding them whole."""
    out = io.BytesIO()
    if kind == "gz":
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as stream:
            for chunk in chunks:
                stream.write(chunk)
    elif kind == "zst":
        with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as stream:
            for chunk in chunks:
                stream.write(chunk)
    else:
        # xz at preset 1: its decoder allocates the stream's dictionary (1 MiB; 8 MiB at the default preset)
        compressor = bz2.BZ2Compressor() if kind == "bz2" else lzma.LZMACompressor(preset=1)
        for chunk in chunks:
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())
    return out.getvalue()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """64 MiB of zeros, compressed each way (tens of KB at most)."""
    made = {kind: compressed(kind, zeros(BOMB_SIZE)) for kind in ("gz", "zst", "bz2", "xz")}
    assert all(len(bomb) < 200_000 for bomb in made.values()), {k: len(v) for k, v in made.items()}
    return made


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from api.main import create_app
    from api.settings import ServiceSettings

    tmp = tmp_path_factory.mktemp("decompression")
    settings = ServiceSettings(
        cache_dir=tmp, database_url=f"sqlite:///{tmp / 'auditor.db'}", max_decompressed_bytes=LIMIT
    )
    return create_app(settings, load_models=False)


@pytest.fixture(scope="module")
def client(app):
    from api.keys import create_key

    with app.state.sessions() as session:
        key = create_key(session, "decompression")[0]
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": key}) as client:
        yield client


def assert_refused(response, name: str) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 413 and body["limit"] == LIMIT and body["file"] == name
    assert "decompresses to more than" in body["detail"] and str(LIMIT) in body["detail"]


def job_count(app) -> int:
    import sqlalchemy as sa

    with app.state.sessions() as session:
        return session.execute(sa.text("SELECT count(*) FROM audit_jobs")).scalar_one()


@pytest.mark.parametrize("kind", ["gz", "zst", "bz2", "xz"])
def test_a_bomb_delivery_is_413_and_queues_nothing(app, client, bombs, kind):
    before = job_count(app)
    name = f"delivery.csv.{kind}"
    response = client.post(
        "/v1/audits", files={"file": (name, bombs[kind])}, data={"text_col": "text", "vendor_col": "vendor"}
    )
    assert_refused(response, name)
    assert job_count(app) == before


def test_a_bomb_among_the_references_of_an_audit_is_413(client, bombs):
    delivery = b"text,vendor\n" + CSV_LINE * 20
    files = {"file": ("delivery.csv", delivery), "human_reference": ("human.csv.gz", bombs["gz"])}
    response = client.post("/v1/audits", files=files, data={"text_col": "text", "vendor_col": "vendor"})
    assert_refused(response, "human.csv.gz")


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_a_bomb_task_reference_is_413_and_stores_nothing(client, bombs, kind):
    name = f"human.jsonl.{kind}"
    response = client.post("/v1/tasks/bombed/references", files={"human": (name, bombs[kind])})
    assert_refused(response, name)
    assert client.get("/v1/tasks/bombed").status_code == 404


def test_the_limit_is_on_the_request_s_files_together(client):
    """Two files of 10 MiB each decompressed: each within the 16 MiB limit, together past it."""
    header, rows = b"text,vendor\n", CSV_LINE * (10 * MiB // len(CSV_LINE))
    half = compressed("gz", [header, rows])
    files = {"file": ("delivery.csv.gz", half), "machine_reference": ("machine.csv.gz", half)}
    response = client.post("/v1/audits", files=files, data={"text_col": "text", "vendor_col": "vendor"})
    assert_refused(response, "machine.csv.gz")


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_compressed_uploads_within_the_limit_are_accepted(client, kind):
    delivery = compressed(kind, [b"text,vendor\n", CSV_LINE * 200])
    response = client.post(
        "/v1/audits",
        files={"file": (f"delivery.csv.{kind}", delivery)},
        data={"text_col": "text", "vendor_col": "vendor"},
    )
    assert response.status_code == 202, response.text
    human = compressed(kind, [b'{"text": "one human text of the task"}\n{"text": "another human text"}\n'])
    added = client.post(f"/v1/tasks/small-{kind}/references", files={"human": (f"human.jsonl.{kind}", human)})
    assert added.status_code == 201, added.text
    assert added.json()["human"] == 2


def test_damaged_compressed_data_is_left_to_the_reader(client):
    """A cut-short .gz within the limit is not a 413: the reader says what is wrong with it."""
    whole = compressed("gz", [b"text,vendor\n", CSV_LINE * 2000])
    response = client.post(
        "/v1/audits",
        files={"file": ("delivery.csv.gz", whole[: len(whole) // 2])},
        data={"text_col": "text", "vendor_col": "vendor"},
    )
    assert response.status_code in (202, 422), response.text


@pytest.mark.parametrize("kind", ["gz", "zst", "bz2", "xz"])
def test_counting_a_bomb_keeps_memory_flat(bombs, kind):
    """The count stops just past the limit, and the peak of the allocations while counting stays
    a few pieces (and the decoder's own buffers) big: far below even the bytes counted, so nothing
    was kept."""
    from api.uploads import PIECE, decompressed_size

    tracemalloc.start()
    try:
        counted = decompressed_size(f"bomb.csv.{kind}", bombs[kind], LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert LIMIT < counted <= LIMIT + PIECE
    assert peak < LIMIT // 4, peak


def test_a_bomb_request_keeps_memory_flat(client, bombs):
    """The whole request (multipart parsing, the count, the Problem) peaks far below the bomb."""
    tracemalloc.start()
    try:
        response = client.post(
            "/v1/audits",
            files={"file": ("delivery.csv.gz", bombs["gz"])},
            data={"text_col": "text", "vendor_col": "vendor"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(response, "delivery.csv.gz")
    assert peak < BOMB_SIZE // 4, peak


def test_the_count_is_exact_for_data_within_the_limit():
    from api.uploads import decompressed_size

    data = CSV_LINE * 1000
    for kind in ("gz", "zst", "bz2", "xz"):
        assert decompressed_size(f"x.csv.{kind}", compressed(kind, [data[:7], data[7:]]), LIMIT) == len(data)
    assert decompressed_size("x.csv", data, LIMIT) == len(data)
    two_members = gzip.compress(data) + gzip.compress(data)  # concatenated gzip members are one stream
    assert decompressed_size("x.csv.gz", two_members, LIMIT) == 2 * len(data)
