"""Exports of each split for other tools: OpenAI chat JSONL, alpaca JSON, ShareGPT JSONL.

The chat formats carry the prompt exactly as the model sees it (`tasks.chat_format.example_messages`:
instruction and context in one user turn); alpaca keeps instruction and input apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tasks.chat_format import example_messages
from tasks.records import SPLITS

SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def openai_record(row: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*example_messages(row), {"role": "assistant", "content": row["output"]}]}


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    turns = openai_record(row)["messages"]
    return {"conversations": [{"from": SHAREGPT_ROLES[t["role"]], "value": t["content"]} for t in turns]}


def alpaca_record(row: dict[str, Any]) -> dict[str, Any]:
    record = {"instruction": row["instruction"], "input": row["input"] or "", "output": row["output"]}
    if row.get("system"):
        record["system"] = row["system"]
    return record


def write_exports(examples: pl.DataFrame, out_dir: Path) -> dict[str, str]:
    """Write `train.openai.jsonl`, `train.alpaca.json`, `train.sharegpt.jsonl` (and val/test); name → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for split in SPLITS:
        rows = examples.filter(pl.col("split") == split).to_dicts()
        for fmt, make, suffix in (
            ("openai", openai_record, "jsonl"),
            ("sharegpt", sharegpt_record, "jsonl"),
            ("alpaca", alpaca_record, "json"),
        ):
            path = out_dir / f"{split}.{fmt}.{suffix}"
            if suffix == "jsonl":
                path.write_text("".join(json.dumps(make(r), ensure_ascii=False) + "\n" for r in rows))
            else:
                path.write_text(json.dumps([make(r) for r in rows], ensure_ascii=False, indent=1))
            written[f"{split}.{fmt}"] = path.name
    return written
