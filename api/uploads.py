"""Reading uploads within the size limits, and naming uploaded files safely (shared by the routes
that take files: audits and task references).

Two limits: the bytes sent (``max_upload_bytes``), and the bytes the request's files hold once
decompressed (``max_decompressed_bytes``): a small ``.gz``/``.zst``/``.bz2``/``.xz`` file can
hold gigabytes (a decompression bomb). :func:`check_decompressed` streams each file through its
decompressor in pieces of :data:`PIECE` bytes, counting, and answers 413 as soon as the count
passes the limit: nothing is ever decompressed whole into memory."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from fastapi import Request

from api.problems import Problem
from auditor.reader import ReadError, compression_of, describe_format

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MULTIPART_OVERHEAD = 65536  # boundaries and form fields around the files of a multipart upload


def too_large(declared: int, limit: int) -> Problem:
    return Problem(413, f"the upload is {declared} bytes; the limit is {limit} bytes", limit=limit)


def exceeds(limit: int) -> Problem:
    return Problem(413, f"the upload exceeds the limit of {limit} bytes", limit=limit)


PIECE = 1 << 18  # decompressed bytes per read while counting (256 KiB)


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _decompressing(compression: str, data: bytes) -> _Reader:
    """A reader of ``data`` decompressed; each ``read(n)`` returns at most ``n`` bytes."""
    raw = io.BytesIO(data)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(raw)
    if compression == "xz":
        return lzma.LZMAFile(raw)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


def decompressed_size(name: str, data: bytes, most: int) -> int:
    """The size of ``data`` decompressed (by the compression its name declares; its own size when
    none), counted up to just past ``most``: the count stops there. Damaged data is counted up to
    the damage (the reader reports it when the file is read)."""
    compression = compression_of(name)
    if compression is None:
        return len(data)
    import zstandard

    size = 0
    stream = _decompressing(compression, data)
    try:
        while size <= most:
            try:
                piece = stream.read(PIECE)
            except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError):
                break
            if not piece:
                break
            size += len(piece)
    finally:
        stream.close()
    return size


def check_decompressed(files: Iterable[tuple[str, bytes]], limit: int) -> None:
    """413 when the files (name, bytes) of one request hold more than ``limit`` bytes once decompressed."""
    total = 0
    for name, data in files:
        total += decompressed_size(name, data, limit - total)
        if total > limit:
            raise Problem(
                413,
                f"{name} decompresses to more than the request's limit of {limit} bytes of decompressed data; "
                "split the delivery, or send it uncompressed within the upload limit",
                limit=limit,
                file=name,
            )


def check_multipart_size(request: Request, limit: int) -> None:
    """413 before reading anything when a multipart upload declares more than ``limit`` bytes
    of files (plus room for its boundaries and form fields)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise too_large(int(declared), limit)


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise exceeds(limit)
    return bytes(body)


def stored_name(filename: str, what: str) -> str:
    """The upload's own file name, made safe (so item ids match the command line's), or 415."""
    name = SAFE_NAME.sub("_", Path(filename or "").name)[-200:].lstrip(".") or "upload"
    try:
        describe_format(name)
    except ReadError:
        raise Problem(
            415,
            f"cannot tell the format of {what} {filename!r}: name the file *.csv, *.tsv, *.json, *.jsonl or "
            "*.parquet (optionally .gz or .zst)",
        ) from None
    return name
