"""PDFs and books → one `pdf` record per page with its text; pages without text are quarantined, flagged.

An encrypted PDF is opened with the empty password (as viewers do) or reported; a corrupt or truncated
file is reported by name; an image-only page (a scan) goes to the quarantine as "needs OCR".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from tasks.extract.errors import CorruptFileError, EncryptedPdfError
from tasks.records import RECORD_SCHEMAS


@dataclass
class PdfResult:
    """Pages with text as records; pages without (scans, blanks, failures) as quarantine rows."""

    records: pl.DataFrame
    quarantine: list[dict[str, object]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def open_pdf(path: Path, name: str) -> PdfReader:
    """Open a PDF, decrypting it with the empty password if that is all it needs."""
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise EncryptedPdfError(
                        f"{name}: the PDF is password-protected; save an unprotected copy and extract that"
                    )
            except (FileNotDecryptedError, NotImplementedError) as exc:
                raise EncryptedPdfError(
                    f"{name}: the PDF is encrypted ({exc}); save an unprotected copy and extract that"
                ) from exc
        _ = len(reader.pages)  # forces the page tree: truncated files fail here
        return reader
    except EncryptedPdfError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, OSError, AttributeError, TypeError) as exc:
        raise CorruptFileError(
            f"{name}: the PDF is damaged or truncated ({type(exc).__name__}: {exc}); download or export it again"
        ) from exc


def page_has_images(page: object) -> bool:
    """Whether a page draws any image (an image-only page is a scan that needs OCR)."""
    try:
        return len(page.images) > 0  # type: ignore[attr-defined]
    except Exception:  # a broken image still means "there is an image here"
        return True


def extract_pdf(path: Path, name: str) -> PdfResult:
    """Text per page (origin `name#page=N`, 1-based); raises EncryptedPdfError / CorruptFileError."""
    reader = open_pdf(path, name)
    rows: list[dict[str, object]] = []
    quarantine: list[dict[str, object]] = []
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns per odd object; we report per page
    for number, page in enumerate(reader.pages, start=1):
        origin = f"{name}#page={number}"
        try:
            text = (page.extract_text() or "").strip()
        except Exception as exc:  # pypdf raises many types on a damaged content stream
            quarantine.append({"source": "pdf", "origin": origin,
                               "reason": f"text extraction failed ({type(exc).__name__}: {exc})"})  # fmt: skip
            continue
        if not text:
            reason = (
                "image-only page (a scan): no text layer; run OCR (e.g. ocrmypdf) and extract again"
                if page_has_images(page)
                else "blank page: no text"
            )
            quarantine.append({"source": "pdf", "origin": origin, "reason": reason})
            continue
        rows.append({"source": "pdf", "origin": origin, "file": name, "page": number, "text": text})
    info = {"format": f"pdf {reader.pdf_header.lstrip('%')}", "pages": len(reader.pages)}
    if reader.is_encrypted:
        info["format"] = f"{info['format']} (encrypted, empty password)"
    return PdfResult(pl.DataFrame(rows, schema=RECORD_SCHEMAS["pdf"]), quarantine, info)
