"""Seed examples for expansion tests and benchmarks: the bundled support set as an Example parquet with splits."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from transformers import PreTrainedTokenizerBase

from tasks.chat_format import count_tokens
from tasks.records import EXAMPLE_SCHEMA, example_id

SUPPORT = Path(__file__).resolve().parent / "data" / "support_examples.jsonl"


def write_seed_examples(path: Path, tokenizer: PreTrainedTokenizerBase, copies: int = 1) -> pl.DataFrame:
    """Every line of the support set (`copies` times, numbered apart) with splits 8:1:1 by line; written to `path`."""
    rows = []
    lines = SUPPORT.read_text().splitlines()
    for copy in range(copies):
        for i, line in enumerate(lines):
            row = json.loads(line)
            if copy:
                row["instruction"] = f"{row['instruction']} (#{copy})"
            row["system"] = None
            row["id"] = example_id(None, row["instruction"], row["input"], row["output"])
            row["source"], row["origin"] = "dataset", f"{SUPPORT.name}#line={i + 1}"
            row["split"] = {8: "val", 9: "test"}.get(i % 10, "train")
            row["synthetic"], row["parent_id"], row["score"] = False, None, None
            row["n_tokens"] = count_tokens(tokenizer, row)
            rows.append(row)
    frame = pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)
    frame.write_parquet(path)
    return frame
