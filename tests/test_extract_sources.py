"""The extract stage as a whole: folders, broken files, archives, the record contract, accounting."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest

from tasks.accounting import QUARANTINE_SCHEMA
from tasks.config.data import ExtractConfig
from tasks.records import RECORD_SCHEMAS, SOURCE_KINDS

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"


def demo_cfg() -> ExtractConfig:
    from tasks.config import compose, section_as

    return section_as(compose([]).data.extract, ExtractConfig)


def test_demo_samples_give_every_source_kind_and_no_failures(extract_run) -> None:
    report, files, out = extract_run([SAMPLES], demo_cfg())
    assert report.stage == "extract"
    assert report.metrics["files_failed"] == 0 and report.metrics["files_read"] == 5
    counts = {kind: pl.read_parquet(out / "records" / f"{kind}.parquet").height for kind in SOURCE_KINDS}
    assert counts["crm"] >= 150 and counts["whatsapp"] >= 90 and counts["pdf"] == 7 and counts["transcript"] >= 10
    assert report.artifacts == {"quarantine": "quarantine.parquet", "files": "files.json"}
    assert {f["kind"] for f in files.values()} == {"crm", "whatsapp", "pdf", "transcript"}


def test_every_record_file_has_exactly_the_contract_columns(extract_run) -> None:
    _, _, out = extract_run([DATA])
    for kind in SOURCE_KINDS:
        frame = pl.read_parquet(out / "records" / f"{kind}.parquet")
        assert dict(frame.schema) == RECORD_SCHEMAS[kind], kind
        assert frame["source"].is_in([kind]).all()
        assert frame["origin"].str.contains("#").all()


def test_broken_files_are_reported_with_actionable_reasons_and_the_rest_extracted(extract_run) -> None:
    report, files, _ = extract_run([DATA])
    errors = {path: f["error"] for path, f in files.items() if f["error"]}
    assert errors["empty.csv"] == "empty.csv: the file is empty (0 bytes); export it again"
    assert "this is a PNG image, not a .csv file" in errors["binary_named.csv"]
    assert "password-protected" in errors["encrypted.pdf"]
    assert "damaged or truncated" in errors["truncated.pdf"]
    assert "'../../evil.txt' would be written outside the extraction folder" in errors["zip_slip.zip"]
    assert "neither a WhatsApp export nor a table" in errors["notes.txt"]
    assert "does not read '.bin' files" in errors["unknown.bin"]
    assert report.metrics["files_failed"] == len(errors)
    assert report.notes == list(errors.values())
    read = [f for f in files.values() if not f["error"] and f["kind"] != "archive"]
    assert len(read) >= 25 and all(f["rows_in"] >= 0 for f in read)
    assert report.rows_out > 50


def test_zip_with_parent_paths_writes_nothing_outside(extract_run, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run" / "extract"
    extract_run([DATA / "zip_slip.zip"], out=out)
    assert not list(tmp_path.rglob("evil.txt"))


def test_archive_over_the_size_limit_is_refused_as_a_possible_zip_bomb(extract_run, tmp_path: Path) -> None:
    bomb = tmp_path / "chats.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("chat.txt", "0" * 1_000_000)
    _, files, _ = extract_run([bomb], ExtractConfig(max_archive_bytes=100_000))
    assert "exceed the limit of 100,000" in files["chats.zip"]["error"]


def test_archive_with_too_many_files_is_refused(extract_run, tmp_path: Path) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(5):
            archive.writestr(f"chat{i}.txt", "1/1/24, 10:00 AM - A: hi\n")
    _, files, _ = extract_run([many], ExtractConfig(max_archive_files=3))
    assert "5 files exceed the limit of 3" in files["many.zip"]["error"]


def test_folder_of_mixed_exports_inside_a_zip_is_read_member_by_member(extract_run, tmp_path: Path) -> None:
    bundle = tmp_path / "export.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(DATA / "crm_utf8_bom.csv", "crm/interactions.csv")
        archive.write(DATA / "talk.vtt", "calls/talk.vtt")
        archive.writestr("__MACOSX/._talk.vtt", b"\x00\x05\x16\x07")
    _, files, out = extract_run([bundle])
    assert files["export.zip!crm/interactions.csv"]["rows_out"] == 4
    assert files["export.zip!calls/talk.vtt"]["rows_out"] == 4
    assert not any("__MACOSX" in path for path in files)
    origins = pl.read_parquet(out / "records" / "crm.parquet")["origin"]
    assert origins[0] == "export.zip!crm/interactions.csv#row=1"


def test_quarantine_rows_carry_stage_reason_origin_and_payload(extract_run) -> None:
    _, _, out = extract_run([DATA])
    bad = pl.read_parquet(out / "quarantine.parquet")
    assert dict(bad.schema) == QUARANTINE_SCHEMA
    assert bad.height >= 15
    assert (bad["stage"] == "extract").all()
    assert bad["reason"].is_not_null().all() and bad["origin"].str.contains("#").all()


def test_missing_path_and_hidden_files(extract_run, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "config.csv").write_text("text\nhidden\n")
    (folder / "visible.csv").write_text("text\nhello\n")
    report, files, _ = extract_run([folder, tmp_path / "nope.csv"])
    assert set(files) == {"visible.csv", "nope.csv"}
    assert "no such file or folder" in files["nope.csv"]["error"]
    assert report.rows_out == 1


def test_a_file_that_fails_midway_leaves_no_partial_records(extract_run, tmp_path: Path) -> None:
    book = tmp_path / "book.xlsx"
    book.write_bytes(b"PK\x03\x04" + b"\x00" * 200)  # a zip signature, then garbage
    report, files, _ = extract_run([book, DATA / "crm_utf8_bom.csv"])
    assert files["book.xlsx"]["error"].startswith("book.xlsx: could not be read")
    assert files["book.xlsx"]["rows_in"] == 0
    assert report.rows_out == 4


@pytest.mark.parametrize("name", ["crm_utf8_bom.csv", "wa_ios_en.txt", "talk.vtt", "sharegpt.jsonl"])
def test_extracting_twice_gives_identical_records(extract_run, name: str) -> None:
    _, _, first = extract_run([DATA / name])
    _, _, second = extract_run([DATA / name])
    for kind in SOURCE_KINDS:
        a = pl.read_parquet(first / "records" / f"{kind}.parquet")
        b = pl.read_parquet(second / "records" / f"{kind}.parquet")
        assert a.equals(b)


def test_output_folder_inside_an_input_folder_is_not_read_back(extract_run, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "visible.csv").write_text("text\nhello\n")
    extract_run([folder], out=folder / "out")
    report, files, _ = extract_run([folder], out=folder / "out")  # the first run's parquet files are there now
    assert set(files) == {"visible.csv"}
    assert report.rows_out == 1


def test_zip_of_several_chats_keeps_each_chats_name(extract_run, tmp_path: Path) -> None:
    bundle = tmp_path / "chats.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(DATA / "wa_android_de.txt", "WhatsApp Chat mit Jonas.txt")
        archive.write(DATA / "wa_android_en_uk.txt", "WhatsApp Chat with Olivia.txt")
    _, _, out = extract_run([bundle])
    chats = pl.read_parquet(out / "records" / "whatsapp.parquet")["conversation_id"].unique().sort()
    assert chats.to_list() == ["WhatsApp Chat mit Jonas", "WhatsApp Chat with Olivia"]
