"""PDFs: text per page, scans and blank pages flagged, encrypted and damaged files reported."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tasks.extract.errors import CorruptFileError, EncryptedPdfError
from tasks.extract.pdf import extract_pdf

DATA = Path(__file__).parent / "data" / "extract"
SAMPLES = Path(__file__).parents[1] / "samples"


def test_manual_gives_one_record_per_page_with_its_number_and_accents() -> None:
    pages = extract_pdf(SAMPLES / "manual_produto.pdf", "manual_produto.pdf")
    assert pages.records["page"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    assert pages.records["origin"][5] == "manual_produto.pdf#page=6"
    assert "descalcificação" in pages.records["text"][4].lower()
    assert pages.quarantine == []


def test_image_only_page_is_flagged_for_ocr_and_blank_page_quarantined(extract_run) -> None:
    _, files, out = extract_run([DATA / "faq_scanned_page.pdf"])
    records = pl.read_parquet(out / "records" / "pdf.parquet")
    assert records["page"].to_list() == [1, 3]
    bad = pl.read_parquet(out / "quarantine.parquet").sort("origin")
    assert bad["origin"].to_list() == ["faq_scanned_page.pdf#page=2", "faq_scanned_page.pdf#page=4"]
    assert "image-only page" in bad["reason"][0] and "OCR" in bad["reason"][0]
    assert bad["reason"][1] == "blank page: no text"
    assert files["faq_scanned_page.pdf"]["rows_in"] == 4


def test_password_protected_pdf_raises_encrypted_pdf_error() -> None:
    with pytest.raises(EncryptedPdfError, match=r"encrypted\.pdf: .*password"):
        extract_pdf(DATA / "encrypted.pdf", "encrypted.pdf")


def test_pdf_encrypted_with_an_empty_password_is_read() -> None:
    pages = extract_pdf(DATA / "encrypted_empty_password.pdf", "open.pdf")
    assert "sem senha" in pages.records["text"][0]
    assert "encrypted" in str(pages.info["format"])


def test_truncated_pdf_raises_corrupt_file_error_naming_the_file() -> None:
    with pytest.raises(CorruptFileError, match=r"truncated\.pdf: the PDF is damaged or truncated"):
        extract_pdf(DATA / "truncated.pdf", "truncated.pdf")


def test_broken_pdfs_are_reported_and_the_good_one_still_read(extract_run, tmp_path: Path) -> None:
    fake = tmp_path / "report.pdf"
    fake.write_text("this was saved as text, not PDF")
    paths = [DATA / "encrypted.pdf", DATA / "truncated.pdf", fake, SAMPLES / "manual_produto.pdf"]
    report, files, _ = extract_run(paths)
    assert "password" in files["encrypted.pdf"]["error"]
    assert "truncated" in files["truncated.pdf"]["error"]
    assert "not a PDF" in files["report.pdf"]["error"]
    assert files["manual_produto.pdf"]["rows_out"] == 7
    assert report.metrics["files_failed"] == 3
