"""Token counts in bulk equal chat_format.count_tokens; truncation cuts the oldest context first."""

from __future__ import annotations

import polars as pl

from tasks.chat_format import count_tokens
from tasks.transform.tokens import TokenCounter, fit_to_length

ROWS = [
    {
        "system": None,
        "instruction": "Responda ao cliente.",
        "input": "Cliente: Oi!\nAtendente: Olá",
        "output": "Tudo bem?",
    },
    {"system": "Você é educado.", "instruction": "Reply.", "input": "", "output": "Sure — 20% off, à vista."},
    {"system": None, "instruction": "  Espaços  ", "input": " ", "output": "x"},
]


def test_bulk_counts_equal_count_tokens_for_each_row(tokenizer) -> None:
    counted = TokenCounter(tokenizer).count(pl.DataFrame(ROWS))
    assert counted.tolist() == [count_tokens(tokenizer, r) for r in ROWS]


def test_truncation_keeps_the_latest_context_and_fits(tokenizer) -> None:
    turns = "\n".join(f"Cliente: pergunta número {i} sobre o plano" for i in range(60))
    row = {"system": None, "instruction": "Responda.", "input": turns, "output": "Resposta final."}
    cut = fit_to_length(tokenizer, row, 120)
    assert cut is not None and count_tokens(tokenizer, cut) <= 120
    assert cut["input"].endswith("pergunta número 59 sobre o plano") and cut["output"] == "Resposta final."


def test_an_instruction_too_long_to_fit_cannot_be_truncated(tokenizer) -> None:
    row = {"system": None, "instruction": "palavra " * 200, "input": "", "output": "ok"}
    assert fit_to_length(tokenizer, row, 50) is None
