"""Reading uploads within the size limit, and naming uploaded files safely (shared by the routes
that take files: audits and task references)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import Request

from api.problems import Problem
from auditor.reader import ReadError, describe_format

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MULTIPART_OVERHEAD = 65536  # boundaries and form fields around the files of a multipart upload


def too_large(declared: int, limit: int) -> Problem:
    return Problem(413, f"the upload is {declared} bytes; the limit is {limit} bytes", limit=limit)


def exceeds(limit: int) -> Problem:
    return Problem(413, f"the upload exceeds the limit of {limit} bytes", limit=limit)


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
