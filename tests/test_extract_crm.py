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
    import tasks.extract.chunks as chunks

    lines = ["conversation_id;timestamp;author;text;outcome"]
    for i in range(60):
        text = f'"Linha {i}; com ""aspas""\ne quebra de linha — ação"' if i % 7 == 0 else f"Mensagem {i} à vista"
        lines.append(f"C-{i // 6};0{1 + i % 9}/02/2025 10:{i % 60:02d};Ana;{text};ganho")
    lines.insert(20, "C-x;01/02/2025 10:00;Ana;um;dois;três")  # more fields than the header
    path = tmp_path / f"chunks_{encoding}.csv"
    path.write_bytes(("\r\n".join(lines) + '\r\nC-9;01/02/2025 11:00;Ana;"cortado no meio').encode(encoding))

    _, whole_files, whole = extract_run([path])
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 37)  # cuts inside quoted values and multi-byte characters
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


def test_an_export_with_a_column_named_row_keeps_it_in_extra(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "numbered.csv"
    path.write_text("row,text\n7,hello\n9,world\n")
    _, files, out = extract_run([path])
    assert files["numbered.csv"]["error"] is None
    rows = crm_records(out)
    assert rows["origin"].to_list() == ["numbered.csv#row=1", "numbered.csv#row=2"]
    assert [json.loads(e) for e in rows["extra"]] == [{"row": "7"}, {"row": "9"}]


def values(extra: str | None) -> dict[str, object]:
    return {key: value for key, value in json.loads(extra or "{}").items() if value is not None}


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_bad_lines_are_quarantined_with_their_line_numbers_and_the_rest_kept(extract_run, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "deals.jsonl", [
        '{"text": "Oi, tudo bem?", "author": "Li"}',
        "",
        '{"text": "Quanto custa?", "author": "Li"',
        '["not", "an", "object"]',
        '{"text": "R$ 899,90", "author": "Ana", "amount": 899.9}',
        '{"text": "Fechado!", "author": {"name": "Li"}}',
    ])  # fmt: skip
    _, files, out = extract_run([path])
    assert (files["deals.jsonl"]["rows_out"], files["deals.jsonl"]["rows_quarantined"]) == (3, 2)
    rows = crm_records(out)
    assert rows["origin"].to_list() == ["deals.jsonl#line=1", "deals.jsonl#line=5", "deals.jsonl#line=6"]
    assert rows["author"].to_list() == ["Li", "Ana", '{"name":"Li"}']
    assert json.loads(rows["extra"][1]) == {"amount": "899.9"}
    bad = quarantine(out)
    assert bad["origin"].to_list() == ["deals.jsonl#line=3", "deals.jsonl#line=4"]
    assert bad["reason"][0].startswith("invalid JSON")
    assert bad["reason"][1] == "line 4 is a JSON list, not an object"


def test_jsonl_streams_in_chunks_and_keeps_keys_that_appear_late(
    extract_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.extract.chunks as chunks

    lines = [
        json.dumps({"text": f"mensagem {i} — ação", "deal": f"D-{i // 5}"}, ensure_ascii=False) for i in range(3000)
    ]
    lines[2500] = json.dumps({"text": "tarde", "deal": "D-500", "coupon": "BLACK10"})
    lines[100] = "   "
    path = write_jsonl(tmp_path / "late_keys.jsonl", lines)

    _, _, whole = extract_run([path])
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 50)  # blocks end inside lines and inside characters
    _, files, chunked = extract_run([path])

    assert files["late_keys.jsonl"]["rows_out"] == 2999
    rows = crm_records(chunked)
    assert rows.drop("extra").equals(crm_records(whole).drop("extra"))
    # a key a line lacks is null in its extra when another line of its chunk has it, else absent
    assert [values(e) for e in rows["extra"]] == [values(e) for e in crm_records(whole)["extra"]]
    late = rows.filter(pl.col("origin") == "late_keys.jsonl#line=2501")
    assert (late["conversation_id"][0], json.loads(late["extra"][0])) == ("D-500", {"coupon": "BLACK10"})
    assert rows["origin"][100] == "late_keys.jsonl#line=102"  # the blank line 101 is skipped, not renumbered


def test_json_array_items_that_are_not_objects_are_quarantined(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"text": "Oi"}, 42, {"text": "Tchau", "score": [1, 2]}]))
    _, files, out = extract_run([path])
    assert (files["export.json"]["rows_out"], files["export.json"]["rows_quarantined"]) == (2, 1)
    assert crm_records(out)["origin"].to_list() == ["export.json#item=1", "export.json#item=3"]
    assert quarantine(out)["reason"].to_list() == ["item 2 is a JSON int, not an object"]


def test_truncated_json_array_fails_with_its_name_and_what_to_do(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('[{"text": "Oi"}, {"text": "Tch')
    _, files, _ = extract_run([path])
    error = files["cut.json"]["error"]
    assert error.startswith("cut.json: invalid JSON at line 1") and "truncated — export it again" in error


def test_parquet_streams_by_batches_with_continuous_row_numbers(
    extract_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.extract.crm as crm

    path = tmp_path / "big.parquet"
    pl.DataFrame({
        "text": [f"msg {i}" if i % 97 else "" for i in range(1000)],
        "deal": [i // 10 for i in range(1000)],
        "when": [datetime(2025, 1, 1, 8, 0)] * 1000,
    }).write_parquet(path, row_group_size=128)  # fmt: skip
    monkeypatch.setattr(crm, "PARQUET_BATCH_ROWS", 100)
    _, files, out = extract_run([path])
    assert (files["big.parquet"]["rows_out"], files["big.parquet"]["rows_quarantined"]) == (989, 11)
    rows = crm_records(out)
    assert rows["row"].to_list() == [i + 1 for i in range(1000) if i % 97]
    assert quarantine(out)["origin"][1] == "big.parquet#row=98"
