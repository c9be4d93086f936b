"""CRM and sales exports: encodings, delimiters, quoting, headers, dates and column mapping."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from tasks.config.data import CrmColumns, ExtractConfig
from tasks.records import RECORD_SCHEMAS

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"
PT_COLUMNS = CrmColumns(
    text="Descrição", author="Vendedor/Cliente", timestamp="Data", conversation="Negócio", outcome="Situação"
)


def crm_records(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "records" / "crm.parquet")


def quarantine(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "quarantine.parquet")


def test_utf8_bom_csv_with_crlf_keeps_the_line_break_inside_a_quoted_value(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_utf8_bom.csv"])
    info = files["crm_utf8_bom.csv"]
    assert (info["encoding"], info["delimiter"], info["rows_out"]) == ("utf-8-sig", ",", 4)
    rows = crm_records(out)
    assert rows.columns == list(RECORD_SCHEMAS["crm"])
    assert rows["conversation_id"].to_list() == ["D-1", "D-1", "D-2", "D-2"]  # BOM not glued to the header
    assert rows["text"][1] == "Yes! It ships today.\nFree delivery over $500."
    assert rows["origin"][1] == "crm_utf8_bom.csv#row=2"
    assert rows["timestamp"][0] == datetime(2025, 1, 6, 9, 0)


def test_cp1252_semicolon_export_maps_configured_columns_and_normalises_decimal_commas(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_cp1252_semicolon.csv"], ExtractConfig(crm=PT_COLUMNS))
    info = files["crm_cp1252_semicolon.csv"]
    assert (info["encoding"], info["delimiter"]) == ("cp1252", ";")
    assert (info["rows_out"], info["rows_quarantined"]) == (4, 1)
    rows = crm_records(out)
    assert rows["author"].to_list()[:2] == ["Cliente Zé", "Ana (Vendas)"]
    assert "Ação válida até sexta!" in rows["text"][1]
    assert rows["timestamp"][0] == datetime(2025, 2, 3, 10, 15)  # day first
    assert rows["outcome"].to_list() == ["ganho", "ganho", "perdido", "perdido"]
    extra = json.loads(rows["extra"][0])
    assert extra["Valor"] == "1299.90"  # "1.299,90" with a decimal comma
    bad = quarantine(out)
    assert bad["origin"].to_list() == ["crm_cp1252_semicolon.csv#row=5"]
    assert bad["reason"][0] == "empty text in column 'Descrição'"


def test_utf16_tab_separated_export_is_detected_and_read(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_utf16.tsv"])
    assert (files["crm_utf16.tsv"]["encoding"], files["crm_utf16.tsv"]["delimiter"]) == ("utf-16", "\t")
    assert crm_records(out)["author"].to_list() == ["Müller", "Sales Team"]


def test_pipe_export_with_duplicated_and_blank_headers_keeps_every_column(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_pipe_duplicate_headers.csv"])
    assert files["crm_pipe_duplicate_headers.csv"]["delimiter"] == "|"
    rows = crm_records(out)
    assert rows["text"].to_list() == ["Do you sell beans?", "Yes, 1 kg bags."]
    assert json.loads(rows["extra"][0]) == {"text_2": "note A", "column_6": "x"}


def test_utf8_file_with_pasted_windows_1252_lines_is_repaired_line_by_line(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_mixed_encoding.csv"])
    assert files["crm_mixed_encoding.csv"]["encoding"] == "utf-8+cp1252"
    assert crm_records(out)["text"].to_list() == [
        "Olá! Você está aí?", "Não sei o preço", "Promoção até amanhã", "Até já",
    ]  # fmt: skip


def test_invalid_bytes_after_the_detection_sample_are_quarantined_not_mangled(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    good = "".join(f"C-{i},2025-01-01 10:00,Ana,Mensagem número {i},won\n" for i in range(3000))
    path.write_bytes(
        ("conversation_id,timestamp,author,text,outcome\n" + good).encode()
        + "C-x,2025-01-01 10:00,Bruno,Não sei,won\n".encode("cp1252")
    )
    _, files, out = extract_run([path])
    assert files["big.csv"]["encoding"] == "utf-8"
    assert (files["big.csv"]["rows_out"], files["big.csv"]["rows_quarantined"]) == (3000, 1)
    bad = quarantine(out)
    assert bad["origin"][0] == "big.csv#row=3001"
    assert "encoding" in bad["reason"][0]


def test_row_with_more_fields_than_the_header_is_quarantined_and_the_others_kept(extract_run) -> None:
    _, _, out = extract_run([DATA / "crm_ragged_row.csv"])
    assert crm_records(out)["text"].to_list() == ["Hello there", "Great choice"]
    bad = quarantine(out)
    assert bad["origin"].to_list() == ["crm_ragged_row.csv#row=2"]
    assert "7 fields but the header has 5" in bad["reason"][0]
    assert "I want two" in bad["payload"][0]


def test_truncated_export_quarantines_the_cut_off_row(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_truncated.csv"])
    assert files["crm_truncated.csv"]["rows_out"] == 3
    bad = quarantine(out)
    assert bad["origin"].to_list() == ["crm_truncated.csv#row=4"]
    assert "truncated" in bad["reason"][0]


def test_us_dates_with_am_pm_are_read_month_first(extract_run) -> None:
    _, _, out = extract_run([DATA / "crm_us_dates.csv"])
    assert crm_records(out)["timestamp"].to_list() == [datetime(2025, 3, 14, 14, 5), datetime(2025, 3, 14, 14, 9)]


def test_xlsx_reads_every_sheet_with_excel_row_numbers_and_skips_empty_rows(extract_run) -> None:
    _, files, out = extract_run([DATA / "crm_export.xlsx"])
    assert files["crm_export.xlsx"]["rows_out"] == 3
    rows = crm_records(out)
    assert rows["origin"].to_list() == [
        "crm_export.xlsx#sheet=Interações&row=2",
        "crm_export.xlsx#sheet=Interações&row=4",
        "crm_export.xlsx#sheet=Notas&row=2",
    ]
    assert rows["timestamp"].to_list() == [
        datetime(2025, 6, 2, 10, 0), datetime(2025, 6, 2, 10, 4), datetime(2025, 6, 2, 11, 0),
    ]  # fmt: skip


def test_jsonl_export_converts_utc_offsets_and_keeps_nested_values_as_json(extract_run) -> None:
    _, _, out = extract_run([DATA / "crm_records.json", DATA / "crm_records.jsonl"])
    rows = crm_records(out)
    assert rows["origin"].to_list() == [
        "crm_records.json#item=1", "crm_records.json#item=2", "crm_records.jsonl#line=1", "crm_records.jsonl#line=2",
    ]  # fmt: skip
    assert rows["timestamp"][2] == datetime(2025, 4, 1, 10, 0)
    assert json.loads(rows["extra"][2]) == {"tags": '["lead","web"]', "amount": "10.5"}


def test_parquet_export_keeps_its_typed_timestamps(extract_run) -> None:
    _, _, out = extract_run([DATA / "crm_export.parquet"])
    rows = crm_records(out)
    assert rows["timestamp"].to_list() == [datetime(2025, 5, 1, 9, 0), datetime(2025, 5, 1, 9, 1)]
    assert json.loads(rows["extra"][0]) == {"amount": "649.0"}


def test_configured_columns_absent_fall_back_to_common_names_with_a_warning(extract_run) -> None:
    cfg = ExtractConfig(crm=CrmColumns(text="Mensagem", author="Autor"))
    _, files, out = extract_run([DATA / "crm_utf8_bom.csv"], cfg)
    assert crm_records(out)["author"][0] == "Joana"
    assert any("guessed by name: text='text', author='author'" in w for w in files["crm_utf8_bom.csv"]["warnings"])


def test_table_without_a_text_column_fails_naming_its_columns_and_the_setting(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "invoices.csv"
    path.write_text("invoice,total\n1,10\n")
    report, files, _ = extract_run([path])
    error = files["invoices.csv"]["error"]
    assert "invoices.csv: no column 'text'" in error
    assert "['invoice', 'total']" in error and "data.extract.crm.text" in error
    assert report.metrics["files_failed"] == 1


def test_header_only_export_gives_no_rows_and_a_warning(extract_run) -> None:
    _, files, _ = extract_run([DATA / "crm_header_only.csv"])
    assert files["crm_header_only.csv"]["rows_in"] == 0
    assert files["crm_header_only.csv"]["error"] is None
    assert any("no rows" in w for w in files["crm_header_only.csv"]["warnings"])


def test_demo_crm_sample_quarantines_the_empty_and_impossible_rows(extract_run) -> None:
    from tasks.config import compose, section_as

    cfg = section_as(compose([]).data.extract, ExtractConfig)
    _, files, out = extract_run([SAMPLES / "crm_interacoes.csv"], cfg)
    info = files["crm_interacoes.csv"]
    assert (info["encoding"], info["delimiter"]) == ("cp1252", ";")
    rows = crm_records(out)
    assert rows.height >= 150
    assert rows["conversation_id"].n_unique() >= 25
    assert set(rows["outcome"].unique()) == {"ganho", "perdido"}
    assert "Ana (Vendas)" in set(rows["author"])
    reasons = dict(zip(quarantine(out)["origin"], quarantine(out)["reason"], strict=True))
    assert reasons["crm_interacoes.csv#row=31"] == "empty text in column 'Mensagem'"
    assert "does not match %d/%m/%Y %H:%M" in reasons["crm_interacoes.csv#row=62"]


@pytest.mark.parametrize("fmt", ["%d/%m/%Y %H:%M", None])
def test_configured_timestamp_format_wins_over_detection(extract_run, tmp_path: Path, fmt: str | None) -> None:
    path = tmp_path / "ambiguous.csv"
    path.write_text("text,timestamp\nhello,01/02/2025 10:00\n")
    cfg = ExtractConfig(crm=CrmColumns(timestamp_format=fmt or "%m/%d/%Y %H:%M"))
    _, _, out = extract_run([path], cfg)
    expected = datetime(2025, 2, 1, 10, 0) if fmt else datetime(2025, 1, 2, 10, 0)
    assert crm_records(out)["timestamp"][0] == expected


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_tiny_chunks_give_the_same_records_and_quarantine_as_one_chunk(
    extract_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    import tasks.extract.csv_stream as csv_stream

    lines = ["conversation_id;timestamp;author;text;outcome"]
    for i in range(60):
        text = f'"Linha {i}; com ""aspas""\ne quebra de linha — ação"' if i % 7 == 0 else f"Mensagem {i} à vista"
        lines.append(f"C-{i // 6};0{1 + i % 9}/02/2025 10:{i % 60:02d};Ana;{text};ganho")
    lines.insert(20, "C-x;01/02/2025 10:00;Ana;um;dois;três")  # more fields than the header
    path = tmp_path / f"chunks_{encoding}.csv"
    path.write_bytes(("\r\n".join(lines) + '\r\nC-9;01/02/2025 11:00;Ana;"cortado no meio').encode(encoding))

    _, whole_files, whole = extract_run([path])
    monkeypatch.setattr(csv_stream, "CHUNK_BYTES", 37)  # cuts inside quoted values and multi-byte characters
    _, files, chunked = extract_run([path])

    assert files == whole_files
    assert crm_records(chunked).equals(crm_records(whole))
    assert quarantine(chunked).equals(quarantine(whole))
    assert crm_records(whole).height == 60
    assert crm_records(whole)["text"][0] == 'Linha 0; com "aspas"\ne quebra de linha — ação'
    assert quarantine(whole)["reason"].to_list() == [
        "row has 6 fields but the header has 5 (an unquoted delimiter inside a value?)",
        "the file ends inside a quoted value: the export looks truncated",
    ]
