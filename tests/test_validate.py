"""Validate: pandera models per record kind, lazy collection of every failure, quarantine, thresholds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandera.errors as pe
import polars as pl
import pytest

from tasks.config.data import ValidateConfig
from tasks.records import EXAMPLE_SCHEMA, RECORD_SCHEMAS
from tasks.schemas import ExampleModel
from tasks.validate import QuarantineShareError, RecordSchemaError, validate_records

T0 = dt.datetime(2024, 3, 4, 9, 0)


def whatsapp_row(line: int, **overrides: object) -> dict[str, object]:
    row = {
        "source": "whatsapp", "origin": f"chat.txt#line={line}", "file": "chat.txt", "line": line,
        "conversation_id": "chat", "timestamp": T0 + dt.timedelta(minutes=line), "sender": "Ana",
        "text": f"mensagem {line}", "kind": "text",
    }  # fmt: skip
    return {**row, **overrides}


def write(records: Path, kind: str, rows: list[dict[str, object]]) -> Path:
    records.mkdir(parents=True, exist_ok=True)
    path = records / f"{kind}.parquet"
    pl.DataFrame(rows, schema=RECORD_SCHEMAS[kind]).write_parquet(path)
    return path


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """Records with one row per kind of failure next to good rows."""
    records = tmp_path / "records"
    write(records, "whatsapp", [
        whatsapp_row(1),
        whatsapp_row(2, text="   "),  # blank text message
        whatsapp_row(3, kind="sticker", timestamp=None),  # two failures in one row
        whatsapp_row(4, kind="media", text="<Mídia oculta>"),
        whatsapp_row(5, origin=None),  # no origin: the file and position stand in
    ])  # fmt: skip
    write(records, "pdf", [
        {"source": "pdf", "origin": "a.pdf#page=1", "file": "a.pdf", "page": 1, "text": "Manual"},
        {"source": "pdf", "origin": "a.pdf#page=2", "file": "a.pdf", "page": 2, "text": ""},
    ])  # fmt: skip
    write(records, "transcript", [
        {"source": "transcript", "origin": "r.vtt#cue=1", "file": "r.vtt", "cue": 1, "start_s": 5.0, "end_s": 2.0,
         "speaker": "Carlos", "text": "Vamos começar."},
    ])  # fmt: skip
    write(records, "preference", [
        {"source": "preference", "origin": "p.jsonl#line=1", "file": "p.jsonl", "line": 1, "prompt": "Oi",
         "chosen": "Olá!", "rejected": "Olá!"},
    ])  # fmt: skip
    return records


def test_every_quarantined_row_carries_its_failed_checks_and_origin(mixed: Path, tmp_path: Path) -> None:
    report = validate_records(mixed, ValidateConfig(max_quarantine_share=0.9), tmp_path / "out")
    quarantine = pl.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert quarantine.height == report.rows_quarantined == 6
    assert quarantine.filter(pl.col("reason").is_null() | pl.col("origin").is_null()).is_empty()
    reasons = dict(zip(quarantine["origin"], quarantine["reason"], strict=True))
    assert reasons["chat.txt#line=2"] == "row:text_message_has_sender_and_text"
    assert "kind:isin" in reasons["chat.txt#line=3"] and "timestamp:not_nullable" in reasons["chat.txt#line=3"]
    assert reasons["whatsapp.parquet#index=4"] == "origin:not_nullable"
    assert reasons["a.pdf#page=2"] == "text:page_has_text"
    assert reasons["r.vtt#cue=1"] == "row:cue_ends_after_it_starts"
    assert reasons["p.jsonl#line=1"] == "row:chosen_differs_from_rejected"
    # the payload keeps the whole row, so it can be fixed and fed back
    assert json.loads(quarantine.filter(pl.col("origin") == "a.pdf#page=2")["payload"][0])["page"] == 2
    assert set(quarantine["stage"]) == {"validate"}


def test_rows_in_equal_rows_out_plus_quarantined_per_kind(mixed: Path, tmp_path: Path) -> None:
    report = validate_records(mixed, ValidateConfig(max_quarantine_share=0.9), tmp_path / "out")
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_deduplicated == 9
    for kind in ("whatsapp", "pdf", "transcript", "preference"):
        valid = pl.read_parquet(tmp_path / "out" / "records" / f"{kind}.parquet")
        assert report.metrics[f"rows_in_{kind}"] == valid.height + report.metrics[f"quarantined_{kind}"]


def test_valid_rows_are_written_unchanged_with_the_record_schema(mixed: Path, tmp_path: Path) -> None:
    validate_records(mixed, ValidateConfig(max_quarantine_share=0.9), tmp_path / "out")
    valid = pl.read_parquet(tmp_path / "out" / "records" / "whatsapp.parquet")
    assert valid.schema == pl.Schema(RECORD_SCHEMAS["whatsapp"])
    assert valid["line"].to_list() == [1, 4]  # a media message is a valid record (transform never targets it)
    assert valid.row(0, named=True) == pl.read_parquet(mixed / "whatsapp.parquet").row(0, named=True)


def test_a_missing_column_stops_the_stage_naming_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "records", "pdf", [{"source": "pdf", "origin": "a#page=1", "file": "a", "page": 1,
                                                "text": "x"}])  # fmt: skip
    pl.read_parquet(path).drop("page").write_parquet(path)
    with pytest.raises(RecordSchemaError, match=r"pdf\.parquet: column 'page' is missing"):
        validate_records(tmp_path / "records", ValidateConfig(), tmp_path / "out")


def test_a_column_of_the_wrong_type_stops_the_stage(tmp_path: Path) -> None:
    path = write(tmp_path / "records", "whatsapp", [whatsapp_row(1)])
    pl.read_parquet(path).with_columns(pl.col("line").cast(pl.String)).write_parquet(path)
    with pytest.raises(RecordSchemaError, match=r"column 'line' has type String.*needs Int64"):
        validate_records(tmp_path / "records", ValidateConfig(), tmp_path / "out")


def test_an_unknown_records_file_is_not_ignored_silently(tmp_path: Path) -> None:
    write(tmp_path / "records", "pdf", [])
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "records" / "emails.parquet")
    with pytest.raises(RecordSchemaError, match="unknown record kind 'emails'"):
        validate_records(tmp_path / "records", ValidateConfig(), tmp_path / "out")


def test_more_quarantined_than_allowed_fails_and_leaves_the_quarantine_to_inspect(mixed: Path, tmp_path: Path) -> None:
    with pytest.raises(QuarantineShareError, match=r"6 of 9 records \(67%\).*max_quarantine_share=50%"):
        validate_records(mixed, ValidateConfig(max_quarantine_share=0.5), tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / "quarantine.parquet").height == 6


def test_no_records_is_an_empty_but_valid_stage(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    report = validate_records(tmp_path / "records", ValidateConfig(), tmp_path / "out")
    assert (report.rows_in, report.rows_out) == (0, 0)
    assert pl.read_parquet(tmp_path / "out" / "quarantine.parquet").is_empty()


def example(**overrides: object) -> dict[str, object]:
    row = {"id": "0123456789abcdef", "system": None, "instruction": "Reply.", "input": "", "output": "Olá!",
           "source": "crm", "origin": "x.csv#row=1", "split": "train", "synthetic": False, "parent_id": None,
           "score": None, "n_tokens": 12}  # fmt: skip
    return {**row, **overrides}


def test_example_model_accepts_the_contract_and_rejects_broken_rows() -> None:
    ExampleModel.validate(pl.DataFrame([example()], schema=EXAMPLE_SCHEMA))
    broken = [
        example(id="abc"),
        example(id="1123456789abcdef", output=" "),
        example(id="2123456789abcdef", split="dev"),
        example(id="3123456789abcdef", synthetic=True),
        example(id="4123456789abcdef", n_tokens=0),
    ]
    with pytest.raises(pe.SchemaErrors) as errors:
        ExampleModel.validate(pl.DataFrame(broken, schema=EXAMPLE_SCHEMA), lazy=True)
    failed = set(errors.value.failure_cases["check"].to_list())
    assert {"not_blank", "synthetic_rows_have_a_parent", "greater_than_or_equal_to(1)"} <= failed
    blank = errors.value.failure_cases.filter(pl.col("check") == "not_blank")
    assert blank["column"].to_list() == ["output"]
    assert any(c.startswith("isin") for c in failed) and any(c.startswith("str_matches") for c in failed)
