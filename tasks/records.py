"""The Record contract (extract → validate) and the Example contract (transform → … → evaluate).

Extract writes one parquet per source kind under `records/<kind>.parquet`, with these columns;
validate holds each kind to its pandera model. Every record carries `source` and `origin`.
"""

from __future__ import annotations

import hashlib

import polars as pl

SOURCE_KINDS = ("crm", "whatsapp", "pdf", "transcript", "dataset", "preference")

COMMON = {"source": pl.String, "origin": pl.String, "file": pl.String}

RECORD_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    # one row per message of a conversation (CRM interaction or WhatsApp message)
    "crm": {
        **COMMON,
        "row": pl.Int64,
        "conversation_id": pl.String,
        "timestamp": pl.Datetime("us"),
        "author": pl.String,
        "text": pl.String,
        "outcome": pl.String,
        "extra": pl.String,  # the row's other columns as JSON
    },
    "whatsapp": {
        **COMMON,
        "line": pl.Int64,
        "conversation_id": pl.String,
        "timestamp": pl.Datetime("us"),
        "sender": pl.String,
        "text": pl.String,
        "kind": pl.String,  # text | media | system | deleted
    },
    "pdf": {**COMMON, "page": pl.Int64, "text": pl.String},
    "transcript": {
        **COMMON,
        "cue": pl.Int64,
        "start_s": pl.Float64,
        "end_s": pl.Float64,
        "speaker": pl.String,
        "text": pl.String,
    },
    # instruction datasets (alpaca, ShareGPT, OpenAI chat): one row per assistant turn
    "dataset": {
        **COMMON,
        "line": pl.Int64,
        "system": pl.String,
        "instruction": pl.String,
        "input": pl.String,
        "output": pl.String,
    },
    "preference": {
        **COMMON,
        "line": pl.Int64,
        "prompt": pl.String,
        "chosen": pl.String,
        "rejected": pl.String,
    },
}

EXAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,
    "system": pl.String,
    "instruction": pl.String,
    "input": pl.String,
    "output": pl.String,
    "source": pl.String,
    "origin": pl.String,
    "split": pl.String,
    "synthetic": pl.Boolean,
    "parent_id": pl.String,
    "score": pl.Float64,
    "n_tokens": pl.Int64,
}

SPLITS = ("train", "val", "test")


def example_id(system: str | None, instruction: str, input_: str, output: str) -> str:
    """Stable content hash: same content, same id."""
    payload = "\x1f".join([system or "", instruction, input_, output])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def empty_records(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMAS[kind])
