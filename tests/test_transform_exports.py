"""Exports round-trip through extract's dataset readers (alpaca, ShareGPT, OpenAI chat)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tasks.chat_format import example_messages
from tasks.config.data import ExtractConfig
from tasks.extract import extract_sources
from tasks.records import EXAMPLE_SCHEMA
from tasks.transform.exports import write_exports

ROWS = [
    {"instruction": "Responda ao cliente.", "input": "Cliente: Quanto custa o plano anual?",
     "output": "R$ 450 à vista.", "system": None, "split": "train"},
    {"instruction": "How do I reset my password?", "input": "", "output": "Open Settings → Security → Reset.",
     "system": "You are a helpful assistant.", "split": "train"},
    {"instruction": "Answer using the document.\n\nWhat does the annual plan include?",
     "input": "O plano anual inclui suporte prioritário.", "output": "Suporte prioritário.", "system": None,
     "split": "test"},
]  # fmt: skip


@pytest.fixture()
def examples() -> pl.DataFrame:
    rows = [
        {**r, "id": f"{i:016x}", "source": "crm", "origin": f"x#row={i}", "synthetic": False, "parent_id": None,
         "score": None, "n_tokens": 10} for i, r in enumerate(ROWS)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)


def read_back(path: Path, tmp_path: Path) -> list[dict[str, object]]:
    report = extract_sources([path], ExtractConfig(), tmp_path / f"extract-{path.name}")
    assert report.rows_quarantined == 0, report
    return pl.read_parquet(tmp_path / f"extract-{path.name}" / "records" / "dataset.parquet").sort("line").to_dicts()


@pytest.mark.parametrize("fmt", ["openai.jsonl", "sharegpt.jsonl"])
def test_chat_exports_read_back_as_the_same_prompt_and_reply(examples, tmp_path, fmt) -> None:
    written = write_exports(examples, tmp_path / "exports")
    assert set(written.values()) >= {f"train.{fmt}", f"test.{fmt}"}
    for split in ("train", "test"):
        back = read_back(tmp_path / "exports" / f"{split}.{fmt}", tmp_path)
        original = examples.filter(pl.col("split") == split).to_dicts()
        assert [example_messages(r) for r in back] == [example_messages(r) for r in original]
        assert [r["output"] for r in back] == [r["output"] for r in original]


def test_alpaca_export_reads_back_field_by_field(examples, tmp_path) -> None:
    write_exports(examples, tmp_path / "exports")
    back = read_back(tmp_path / "exports" / "train.alpaca.json", tmp_path)
    original = examples.filter(pl.col("split") == "train").to_dicts()
    fields = ("system", "instruction", "input", "output")
    assert [{k: r[k] or None for k in fields} for r in back] == [{k: r[k] or None for k in fields} for r in original]


def test_an_empty_split_still_gets_its_files(examples, tmp_path) -> None:
    write_exports(examples.filter(pl.col("split") == "train"), tmp_path / "exports")
    assert (tmp_path / "exports" / "val.openai.jsonl").read_text() == ""
    assert (tmp_path / "exports" / "val.alpaca.json").read_text() == "[]"
