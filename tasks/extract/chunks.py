"""What every streamed table format shares: UTF-8 blocks of a file in any encoding, the `Chunk` of
parsed rows a stream yields, and the read-ahead thread that lets the stages of a stream overlap.

A stream (`csv_stream`, `json_stream`, Parquet batches in `crm`) reads a file in blocks of about
CHUNK_BYTES and yields chunks; `crm.extract_chunks` maps and writes them one by one, so memory depends on
the chunk size, never on the file's size.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from threading import Event, Semaphore, Thread
from typing import BinaryIO, TypeVar

import polars as pl

from tasks.extract.detect import MIXED, decode_mixed_line

ROW = "__row"  # the row number every chunk carries (not "row": an export may have a column of that name)
CHUNK_BYTES = 8 << 20
DECODE_BYTES = 1 << 20
T = TypeVar("T")


@dataclass
class Chunk:
    """Parsed rows of one chunk (the table's columns and its `ROW` numbers) and the rows that could not be parsed."""

    frame: pl.DataFrame
    bad: list[dict[str, object]] = field(default_factory=list)
    lossy: bool = False  # holds U+FFFD from bytes invalid in the encoding: those rows must be quarantined


def unreadable(origin: str, reason: str, payload: object) -> dict[str, object]:
    """A row of a CRM table that could not be parsed, as the quarantine takes it (`quarantine_rows`)."""
    return {"source": "crm", "origin": origin, "reason": reason, "payload": payload}


def utf8_blocks(path: Path, encoding: str) -> Iterator[bytes]:
    """The file's content as UTF-8 bytes, in blocks of about CHUNK_BYTES of the file.

    Bytes invalid in the encoding become U+FFFD when transcoding (their rows are quarantined later).
    """
    with path.open("rb") as src:
        if encoding in ("utf-8", "utf-8-sig", "ascii"):
            first = True
            while block := src.read(CHUNK_BYTES):
                yield block.removeprefix(codecs.BOM_UTF8) if first else block
                first = False
            return
        if encoding == MIXED:
            pieces: Iterator[tuple[bytes, int]] = ((decode_mixed_line(line).encode("utf-8"), len(line)) for line in src)
        else:
            pieces = transcoded_pieces(src, encoding)
        parts: list[bytes] = []
        size = 0
        for text, read in pieces:
            parts.append(text)
            size += read
            if size >= CHUNK_BYTES:
                yield b"".join(parts)
                parts, size = [], 0
        yield b"".join(parts)


def transcoded_pieces(src: BinaryIO, encoding: str) -> Iterator[tuple[bytes, int]]:
    """(UTF-8 bytes, bytes read) a MiB of the file at a time.

    Python's codecs hold the GIL while they work (≈1.3 ms a MiB): between MiBs the GIL is handed to the
    parsing and writing threads, which would otherwise stall for a whole block (measured: 0.65 → 0.75 M
    rows/s on a Windows-1252 export).
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    while piece := src.read(min(DECODE_BYTES, CHUNK_BYTES)):
        yield decoder.decode(piece).encode("utf-8"), len(piece)
        time.sleep(0)  # let a thread waiting for the GIL take it
    yield decoder.decode(b"", final=True).encode("utf-8"), 0


def cut_at_record_ends(
    blocks: Iterator[bytes], last_end: Callable[[bytes, bytes], int | None]
) -> Iterator[tuple[bytes, bool]]:
    """(chunk, is_last): the blocks cut again so that every chunk but the last ends where a record ends.

    `last_end(block, pending)` is the index just after the block's last record end (None: the block has
    none), `pending` being the start of that record carried over from the blocks before. Only what
    precedes the cut is joined to `pending`: a chunk's bytes are copied once.
    """
    pending = b""
    for block in blocks:
        cut = last_end(block, pending) if len(pending) + len(block) >= CHUNK_BYTES else None
        if cut is None:
            pending += block
            continue
        chunk = b"".join((pending, memoryview(block)[:cut])) if pending or cut < len(block) else block
        pending = block[cut:]
        del block
        yield chunk, False
        del chunk
    yield pending, True


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """Produce items in a thread, so producing the next item overlaps the caller's work on this one.

    Decoding holds the GIL but polars and pyarrow release it, so the stages overlap on two cores. The
    producer starts an item only once the caller has taken the one before, so at most two items are
    alive (the caller's and the next); if the caller stops early, the producer stops too.
    """
    ready: Queue[T | BaseException | None] = Queue()
    taken = Semaphore(1)  # the producer may start the next item
    stop = Event()

    def produce() -> None:
        try:
            while True:
                while not taken.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                item = next(items, None)
                ready.put(item)
                if item is None:
                    return
                del item
        except BaseException as exc:  # handed to the caller, which raises it
            ready.put(exc)

    Thread(target=produce, name="extract-read-ahead", daemon=True).start()
    try:
        while (item := ready.get()) is not None:
            taken.release()
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
    finally:
        stop.set()
