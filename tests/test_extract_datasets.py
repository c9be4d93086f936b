"""Existing datasets: alpaca, ShareGPT, OpenAI chat, prompt/completion and preference pairs."""

from __future__ import annotations

from pathlib import Path

import polars as pl

DATA = Path(__file__).parent / "data" / "extract"


def read(out: Path, kind: str) -> tuple[pl.DataFrame, dict[str, str]]:
    bad = pl.read_parquet(out / "quarantine.parquet")
    return pl.read_parquet(out / "records" / f"{kind}.parquet"), dict(zip(bad["origin"], bad["reason"], strict=True))


def test_alpaca_json_array_rows_are_numbered_by_item(extract_run) -> None:
    _, _, out = extract_run([DATA / "alpaca.json"])
    rows, bad = read(out, "dataset")
    assert rows["origin"].to_list() == ["alpaca.json#item=1", "alpaca.json#item=2"]
    assert (rows["system"][1], rows["input"][1], rows["output"][1]) == ("Seja breve.", "Bom dia", "Good morning")
    assert bad == {"alpaca.json#item=3": "missing key(s) ['output']"}


def test_alpaca_jsonl_reports_malformed_lines_with_their_numbers(extract_run) -> None:
    _, _, out = extract_run([DATA / "alpaca.jsonl"])
    rows, bad = read(out, "dataset")
    assert rows["line"].to_list() == [1, 5]
    assert rows["output"][1] == "Brasília."  # prompt/completion rows read as instruction/output
    assert bad["alpaca.jsonl#line=2"].startswith("invalid JSON")
    assert bad["alpaca.jsonl#line=3"] == "empty 'instruction'"


def test_sharegpt_gives_one_row_per_assistant_turn_with_system_and_context(extract_run) -> None:
    _, _, out = extract_run([DATA / "sharegpt.jsonl"])
    rows, bad = read(out, "dataset")
    assert rows["system"].to_list() == ["You are Afinar's sales assistant."] * 2
    assert rows["instruction"].to_list() == ["Do you ship to Rio?", "Free shipping?"]
    assert rows["input"][1] == "user: Do you ship to Rio?\nassistant: Yes, in 3 to 5 business days."
    assert bad == {
        "sharegpt.jsonl#line=2": "conversations[2] has unrecognized role 'robot'",
        "sharegpt.jsonl#line=3": "no assistant message",
    }


def test_openai_chat_rows_are_checked_like_the_openai_data_prep_guide(extract_run) -> None:
    _, _, out = extract_run([DATA / "openai_chat.jsonl"])
    rows, bad = read(out, "dataset")
    assert rows.select("system", "instruction", "output").row(0) == (
        "Be concise.",
        "Is the grinder quiet?",
        "About 68 dB.",
    )
    assert bad == {
        "openai_chat.jsonl#line=2": "messages[2] has no 'content'",
        "openai_chat.jsonl#line=3": "messages[2] has unrecognized role 'customer'",
        "openai_chat.jsonl#line=4": "'messages' must be a non-empty list",
        "openai_chat.jsonl#line=5": "no assistant message",
    }


def test_preference_pairs_accept_text_and_message_lists(extract_run) -> None:
    _, files, out = extract_run([DATA / "preferences.jsonl"])
    assert files["preferences.jsonl"]["kind"] == "preference"
    rows, bad = read(out, "preference")
    assert rows.select("prompt", "chosen", "rejected").rows() == [
        ("Qual a garantia?", "Dois anos contra defeitos.", "Não sei."),
        ("user: Frete grátis?", "Acima de R$ 500.", "Nunca."),
    ]
    assert bad == {
        "preferences.jsonl#line=3": "'chosen' and 'rejected' are identical",
        "preferences.jsonl#line=4": "missing key(s) ['rejected']",
    }


def test_dataset_in_parquet_is_read_by_its_columns(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pl.DataFrame({"instruction": ["Oi?", "Tchau?"], "input": ["", ""], "output": ["Olá!", ""]}).write_parquet(path)
    _, files, out = extract_run([path])
    rows, bad = read(out, "dataset")
    assert files["train.parquet"]["kind"] == "dataset"
    assert rows["output"].to_list() == ["Olá!"]
    assert bad == {"train.parquet#row=2": "empty 'output'"}
