"""WhatsApp exports: Android and iOS, six locales, invisible marks, message kinds, zips."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from tasks.extract.whatsapp import parse_whatsapp_export

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"


def messages(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "records" / "whatsapp.parquet")


@pytest.mark.parametrize(
    ("name", "first", "kinds"),
    [
        ("wa_android_en_us.txt", datetime(2024, 1, 15, 9, 41),
         ["system", "text", "text", "media", "deleted", "system", "media"]),
        ("wa_android_en_uk.txt", datetime(2024, 1, 15, 21, 41), ["text", "text", "media"]),
        ("wa_android_pt_pt.txt", datetime(2024, 2, 3, 10, 15), ["text", "text", "media", "deleted"]),
        ("wa_android_es.txt", datetime(2023, 12, 25, 21, 5), ["text", "text", "media", "deleted"]),
        ("wa_android_de.txt", datetime(2023, 12, 31, 21, 41), ["text", "text", "media", "deleted"]),
        ("wa_android_pt_br.txt", datetime(2025, 3, 10, 9, 2),
         ["system", "text", "text", "media", "deleted", "text", "system"]),
        ("wa_ios_en.txt", datetime(2024, 1, 15, 21, 41, 5), ["system", "text", "media", "text", "media"]),
        ("wa_android_utf16.txt", datetime(2024, 1, 15, 21, 41), ["text", "text", "media"]),
    ],
)  # fmt: skip
def test_each_locale_export_parses_every_message_with_its_kind_and_time(
    extract_run, name: str, first: datetime, kinds: list[str]
) -> None:
    _, files, out = extract_run([DATA / name])
    assert files[name]["kind"] == "whatsapp"
    rows = messages(out)
    assert rows["kind"].to_list() == kinds
    assert rows["timestamp"][0] == first
    assert rows["timestamp"].is_sorted()  # timezone-naive, but in order
    assert set(rows["conversation_id"]) == {Path(name).stem}


def test_us_twelve_hour_clock_maps_pm_and_midnight(extract_run) -> None:
    _, _, out = extract_run([DATA / "wa_android_en_us.txt"])
    stamps = messages(out)["timestamp"].to_list()
    assert stamps[3] == datetime(2024, 1, 15, 12, 3)  # 12:03 PM is noon
    assert stamps[-1] == datetime(2024, 1, 16, 0, 30)  # 12:30 AM is just after midnight


def test_spanish_p_m_written_with_narrow_no_break_spaces_is_afternoon(extract_run) -> None:
    _, _, out = extract_run([DATA / "wa_android_es.txt"])
    rows = messages(out)
    assert rows["timestamp"].to_list()[:3] == [
        datetime(2023, 12, 25, 21, 5), datetime(2023, 12, 25, 21, 7), datetime(2023, 12, 26, 0, 1),
    ]  # fmt: skip
    assert rows["sender"][1] == "Afinar Ventas"


def test_multi_line_message_keeps_its_lines_and_the_header_line_number(extract_run) -> None:
    _, _, out = extract_run([DATA / "wa_ios_en.txt"])
    rows = messages(out)
    assert rows["text"][1] == "Hello! Quick question\nabout the warranty: is it 2 years?"
    assert rows["origin"].to_list()[:3] == ["wa_ios_en.txt#line=1", "wa_ios_en.txt#line=2", "wa_ios_en.txt#line=4"]


def test_invisible_marks_are_removed_from_senders_and_text(extract_run) -> None:
    _, _, out = extract_run([DATA / "wa_android_pt_br.txt"])
    rows = messages(out)
    assert rows["sender"][1] == "+55 11 97654-3210"  # phone number without U+202A/U+202C
    assert rows["text"][2] == "Consertamos sim!"  # a stray U+FEFF mid-line
    assert rows["text"][5] == "Orçamento enviado"  # the "<Mensagem editada>" marker dropped
    for value in rows["text"].to_list() + rows["sender"].drop_nulls().to_list():
        assert not set(value) & {"\u200e", "\u202a", "\u202c", "\ufeff", "\u202f"}


def test_text_before_the_first_message_header_is_quarantined_with_its_line(extract_run) -> None:
    _, files, out = extract_run([DATA / "wa_android_pt_br.txt"])
    bad = pl.read_parquet(out / "quarantine.parquet")
    assert bad["origin"].to_list() == ["wa_android_pt_br.txt#line=1"]
    assert bad["reason"][0] == "text before the first message header"
    assert files["wa_android_pt_br.txt"]["rows_in"] == 8


def test_impossible_date_is_quarantined_not_guessed() -> None:
    chat = parse_whatsapp_export("28/02/2025 10:00 - Ana: oi\n31/02/2025 10:01 - Ana: data impossível\n", "c.txt", "c")
    assert chat.records.height == 1
    assert chat.quarantine[0]["origin"] == "c.txt#line=2"
    assert "impossible date" in str(chat.quarantine[0]["reason"])


def test_ambiguous_dates_without_am_pm_are_read_day_first() -> None:
    chat = parse_whatsapp_export("01/02/2025 10:00 - Ana: oi\n01/02/2025 10:05 - Bia: olá\n", "c.txt", "c")
    assert chat.records["timestamp"][0] == datetime(2025, 2, 1, 10, 0)


def test_zip_export_is_named_after_the_zip_and_attachments_are_skipped(extract_run) -> None:
    name = "WhatsApp Chat - Maria Clara.zip"
    _, files, out = extract_run([DATA / name])
    assert files[f"{name}!_chat.txt"]["rows_out"] == 4
    assert any("1 media attachments not read" in w for w in files[name]["warnings"])
    rows = messages(out)
    assert set(rows["conversation_id"]) == {"WhatsApp Chat - Maria Clara"}
    assert rows["kind"].to_list() == ["system", "text", "media", "text"]
    assert rows["origin"][1] == f"{name}!_chat.txt#line=2"


def test_demo_whatsapp_samples_have_store_replies_and_several_days(extract_run) -> None:
    _, _, out = extract_run([SAMPLES / "whatsapp_loja.txt", SAMPLES / "whatsapp_afinar_sales_en.txt"])
    rows = messages(out)
    store = rows.filter(pl.col("sender").is_in(["Loja Afinar", "Afinar Sales"]) & (pl.col("kind") == "text"))
    assert store.height >= 35
    assert rows["timestamp"].dt.date().n_unique() >= 10
    assert {"text", "media", "system", "deleted"} <= set(rows["kind"])
    assert "+55 11 97654-3210" in set(rows["sender"])


def test_chat_whose_first_message_spans_many_lines_is_still_detected(extract_run, tmp_path: Path) -> None:
    path = tmp_path / "lista.txt"
    body = "\n".join(f"- item {i} da lista de preços" for i in range(40))
    path.write_text(f"12/05/2025 10:00 - Loja Afinar: Tabela de maio:\n{body}\n12/05/2025 10:05 - Ana: Obrigada!\n")
    _, files, out = extract_run([path])
    assert files["lista.txt"]["kind"] == "whatsapp"
    assert messages(out)["text"][0].count("\n") == 40
