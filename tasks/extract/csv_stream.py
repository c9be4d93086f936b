"""Delimited text read in bounded chunks, so a CSV of any size streams in a few MiB of memory.

The file is decoded to UTF-8 on the fly (any encoding `detect` found), cut into chunks that end at a
record boundary — a newline with an even number of quotes before it, so quoted multi-line values stay
whole — and each chunk is parsed by polars. A chunk polars rejects (rows with extra fields) is parsed
row by row so only the bad rows are quarantined; a file that ends inside a quoted value or mid-row
(a truncated export) has its last row quarantined.

Three threads overlap on a chunk each (`chunks.read_ahead`): reading and decoding the next block, parsing
the chunk after it, and the caller's work on the current one; polars, numpy and file reads release the GIL.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tasks.extract.chunks import ROW, Chunk, cut_at_record_ends, read_ahead, unreadable, utf8_blocks
from tasks.extract.detect import MIXED
from tasks.extract.errors import CorruptFileError, EmptyFileError

REPLACEMENT = "\ufffd".encode()
QUOTE = ord('"')


def count_quotes(data: bytes) -> int:
    """How many `"` bytes the data holds (numpy compares a whole chunk at once, 5x faster than bytes.count)."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == QUOTE))


def record_boundary(data: bytes, quotes_before: int = 0) -> int | None:
    """Index just after the last newline with an even number of quotes before it (None: no such newline).

    `quotes_before`: quotes in what precedes `data` since the last record boundary.
    """
    quotes = quotes_before + count_quotes(data)
    end = len(data)
    while (newline := data.rfind(b"\n", 0, end)) >= 0:
        quotes -= data.count(b'"', newline, end)
        if quotes % 2 == 0:
            return newline + 1
        end = newline
    return None


def first_record_end(data: bytes) -> int | None:
    """Index just after the first newline with an even number of quotes before it (the header's end)."""
    start = 0
    while (newline := data.find(b"\n", start)) >= 0:
        if data.count(b'"', 0, newline) % 2 == 0:
            return newline + 1
        start = newline + 1
    return None


def record_end(block: bytes, pending: bytes) -> int | None:
    """Index just after the block's last record end, quotes counted from the record `pending` starts."""
    return record_boundary(block, count_quotes(pending))


def parse_rows_one_by_one(text: str, header: list[str], delimiter: str, first_row: int, name: str) -> Chunk:
    """Row-by-row parsing of a chunk polars rejected: rows with extra fields are quarantined."""
    csv.field_size_limit(min(sys.maxsize, 1 << 28))
    rows: list[list[str | None]] = []
    bad: list[dict[str, object]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    row = first_row - 1
    try:
        for fields in reader:
            row += 1
            if any(f.strip() for f in fields[len(header) :]):
                reason = (
                    f"row has {len(fields)} fields but the header has {len(header)} "
                    "(an unquoted delimiter inside a value?)"
                )
                bad.append(unreadable(f"{name}#row={row}", reason, fields))
                continue
            padded = fields[: len(header)] + [""] * (len(header) - len(fields))
            rows.append([str(row), *[v if v != "" else None for v in padded]])
    except csv.Error as exc:
        raise CorruptFileError(f"{name}: cannot parse row {row + 1} ({exc}); check the quoting") from exc
    frame = pl.DataFrame(rows, schema=[ROW, *header], orient="row").with_columns(pl.col(ROW).cast(pl.Int64))
    return Chunk(frame, bad)


def parse_chunk(
    data: bytes, header: list[str], delimiter: str, first_row: int, name: str, transcoded: bool = False
) -> Chunk:
    """Parse whole records with polars (strict UTF-8, then lossy), else row by row.

    `transcoded`: the bytes were decoded from another encoding, where an undecodable byte became U+FFFD.
    """
    schema = dict.fromkeys(header, pl.String)
    lossy = transcoded and REPLACEMENT in data
    try:
        try:
            frame = pl.read_csv(
                data, has_header=False, schema=schema, separator=delimiter,
                encoding="utf8-lossy" if lossy else "utf8", raise_if_empty=False,
            )  # fmt: skip
        except pl.exceptions.ComputeError as exc:
            if "utf-8" not in str(exc).lower() or lossy:
                raise
            lossy = True  # invalid bytes: read them as U+FFFD and quarantine their rows
            frame = pl.read_csv(
                data, has_header=False, schema=schema, separator=delimiter, encoding="utf8-lossy", raise_if_empty=False
            )
    except pl.exceptions.PolarsError:  # extra fields: ComputeError mid-chunk, SchemaError on its first row
        chunk = parse_rows_one_by_one(data.decode("utf-8", errors="replace"), header, delimiter, first_row, name)
        chunk.lossy = True
        return chunk
    row = pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64, eager=False)
    return Chunk(frame.select(row.alias(ROW), pl.all()), lossy=lossy)


def truncated_tail(data: bytes, header: list[str], delimiter: str) -> tuple[bytes, bytes | None, str | None]:
    """Split the file's last chunk into (whole records, cut-off last record or None, why it is cut off)."""
    if count_quotes(data) % 2 == 1:
        cut = record_boundary(data) or 0
        return data[:cut], data[cut:], "the file ends inside a quoted value: the export looks truncated"
    if data.endswith((b"\n", b"\r")) or data.isspace() or not data:
        return data, None, None
    cut = record_boundary(data) or 0
    fields = next(csv.reader([data[cut:].decode("utf-8", errors="replace")], delimiter=delimiter), [])
    if len(fields) < len(header):
        reason = f"last row has {len(fields)} of {len(header)} fields and no line break after it: truncated export?"
        return data[:cut], data[cut:], reason
    return data, None, None


def read_delimited(path: Path, encoding: str, delimiter: str, name: str) -> tuple[list[str], Iterator[Chunk]]:
    """(clean header, chunks of parsed rows) of a delimited file; raises EmptyFileError without a header."""
    from tasks.extract.crm import clean_headers  # the one header-cleaning rule for every table format

    chunks = cut_at_record_ends(read_ahead(utf8_blocks(path, encoding)), record_end)
    transcoded = encoding not in ("utf-8", "utf-8-sig", "ascii", MIXED)
    data, last = next(chunks)
    while first_record_end(data) is None and not last:
        more, last = next(chunks)
        data += more
    end = first_record_end(data) or len(data)
    header_text = data[:end].decode("utf-8", errors="replace")
    header = clean_headers(next(csv.reader([header_text.rstrip("\r\n")], delimiter=delimiter), []))
    if not any(h and not h.startswith("column_") for h in header):
        raise EmptyFileError(f"{name}: no header row; export the table with its column names")

    def parsed() -> Iterator[Chunk]:
        nonlocal data, last
        data = data[end:]
        next_row = 1
        while True:
            tail_reason = None
            if last:
                data, tail, tail_reason = truncated_tail(data, header, delimiter)
            if data and not data.isspace():
                chunk = parse_chunk(data, header, delimiter, next_row, name, transcoded)
                data = b""  # parsed: not kept while the chunk waits to be taken
                next_row += chunk.frame.height + len(chunk.bad)
                yield chunk
                del chunk
            if last:
                if tail_reason:
                    payload = json.dumps(tail.decode("utf-8", errors="replace"), ensure_ascii=False)  # type: ignore[union-attr]
                    cut = unreadable(f"{name}#row={next_row}", tail_reason, payload)
                    yield Chunk(pl.DataFrame(schema={ROW: pl.Int64, **dict.fromkeys(header, pl.String)}), [cut])
                return
            data, last = next(chunks)

    return header, read_ahead(parsed())  # parsing overlaps the caller's work on the previous chunk
