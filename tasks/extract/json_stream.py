"""CRM exports in JSON: JSON Lines streamed in chunks of whole lines, a JSON array read whole.

A chunk is parsed by polars. One polars rejects (a line that is not JSON or not an object, a key whose
type changes between lines) is read again item by item with the standard library, so that only the bad
items are quarantined, each with its line or item number. Every key of every item is kept: no schema
is guessed from the first rows and applied to the rest.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from tasks.extract.chunks import ROW, Chunk, cut_at_record_ends, read_ahead, unreadable, utf8_blocks
from tasks.extract.crm import strings_frame
from tasks.extract.datasets import MalformedRow, json_line, load_json_array


def cell(value: object) -> str | None:
    """A JSON value as a string cell: strings as they are, anything else as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def numbered_chunk(frame: pl.DataFrame, numbers: list[int]) -> Chunk:
    """Chunk of a parsed frame: string columns with clean names, then the line or item numbers."""
    strings = strings_frame(frame).collect()
    return Chunk(strings.insert_column(0, pl.Series(ROW, numbers, pl.Int64)))


def items_one_by_one(items: Iterable[tuple[int, object]], name: str, locator: str) -> Chunk:
    """Chunk of (number, decoded item) pairs: objects become rows, anything else is quarantined."""
    rows: list[dict[str, str | None]] = []
    numbers: list[int] = []
    bad: list[dict[str, object]] = []
    for number, item in items:
        origin = f"{name}#{locator}={number}"
        if isinstance(item, MalformedRow):
            bad.append(unreadable(origin, str(item), item.raw))
        elif not isinstance(item, dict):
            bad.append(unreadable(origin, f"{locator} {number} is a JSON {type(item).__name__}, not an object", item))
        else:
            rows.append({key: cell(value) for key, value in item.items()})
            numbers.append(number)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    frame = pl.from_dicts(rows, schema=dict.fromkeys(keys, pl.String)) if rows else pl.DataFrame()
    chunk = numbered_chunk(frame, numbers)
    chunk.bad = bad
    return chunk


def line_end(block: bytes, _pending: bytes) -> int | None:
    """Index just after the block's last line break (JSON text holds no raw one), None if it has none."""
    return block.rfind(b"\n") + 1 or None


def parse_lines(data: bytes, first_line: int, newlines: int, name: str) -> Chunk:
    """Chunk of whole JSON Lines starting at line `first_line` (blank lines are skipped, numbers kept)."""
    lines = newlines + (not data.endswith(b"\n"))
    try:
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
        if frame.height == lines:  # no blank line: the rows are the lines
            return numbered_chunk(frame, list(range(first_line, first_line + lines)))
    except pl.exceptions.PolarsError:
        pass
    kept = [(first_line + i, line) for i, line in enumerate(data.split(b"\n")) if line.strip()]
    if not kept:
        return Chunk(pl.DataFrame(schema={ROW: pl.Int64}))
    try:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(line for _, line in kept)), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return items_one_by_one(((number, json_line(line)) for number, line in kept), name, "line")
    return numbered_chunk(frame, [number for number, _ in kept])


def read_jsonl(path: Path, encoding: str, name: str) -> Iterator[Chunk]:
    """Chunks of a JSON Lines file, each ending at a line break."""

    def chunks() -> Iterator[Chunk]:
        first_line = 1
        for data, _ in cut_at_record_ends(utf8_blocks(path, encoding), line_end):
            if data:
                newlines = data.count(b"\n")
                yield parse_lines(data, first_line, newlines, name)
                first_line += newlines

    return read_ahead(chunks())


def read_json_array(text: str, name: str) -> Chunk:
    """The items of a JSON array (item numbers from 1); a document that is not a JSON array fails."""
    try:
        frame = pl.read_json(io.BytesIO(text.encode()), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return items_one_by_one(enumerate(load_json_array(text, name), start=1), name, "item")
    return numbered_chunk(frame, list(range(1, frame.height + 1)))
