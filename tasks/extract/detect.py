"""What a file is: its kind (crm, whatsapp, pdf, transcript, dataset, preference, archive), encoding and delimiter.

Detection reads only the first 64 KiB: magic bytes first (a PDF, zip or parquet is known by its
first bytes whatever its name), then the text's encoding, then the shape of its first lines.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes

from tasks.extract.errors import (
    BinaryFileError,
    CorruptFileError,
    EmptyFileError,
    EncodingError,
    UnsupportedFileError,
)

SAMPLE_BYTES = 1 << 16
DELIMITERS = (",", ";", "\t", "|")
TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".psv"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
TRANSCRIPT_SUFFIXES = {".vtt", ".srt"}
# single-byte code pages of Latin-script languages: charset-normalizer often names cp1250 for
# Portuguese text that is really Windows-1252, so any of these means "Western legacy" to us
LATIN_SINGLE_BYTE = {
    "cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_9", "iso8859_13",
    "iso8859_15", "iso8859_16", "mac_roman", "mac_latin2", "cp850", "cp858", "cp437", "cp1258", "ascii",
}  # fmt: skip
MAGIC = {
    b"%PDF": "pdf",
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"PAR1": "parquet",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"\xd0\xcf\x11\xe0": "an old Office document (OLE)",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"Rar!": "a RAR archive",
    b"\x7fELF": "an executable",
    b"MZ\x90\x00": "a Windows executable",
    b"SQLite format 3": "an SQLite database",
    b"OggS": "an Ogg audio file",
    b"ID3": "an MP3 audio file",
}
WHATSAPP_HEADER = re.compile(
    r"^\[?\d{1,4}[./-]\d{1,2}[./-]\d{1,4}[,.]?\s+\d{1,2}[:.]\d{2}(?:[:.]\d{2})?"
    r"(?:\s*[AaPp]\.?\s?[Mm]\.?)?(?:\]\s*|\s[-–]\s)"
)
INVISIBLE_MARKS = dict.fromkeys(
    map(ord, "\u200e\u200f\ufeff\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u202e\u200b"), None
)
ODD_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u2009": " ", "\u2007": " "})


# a UTF-8 file with lines pasted from a Windows-1252 tool: each line is decoded on its own
MIXED = "utf-8+cp1252"
UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def decode_mixed_line(line: bytes) -> str:
    """One line of a mixed file: UTF-8 if it decodes, else Windows-1252, else Latin-1 (never fails)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return line.decode(encoding)
        except UnicodeDecodeError:
            continue
    return line.decode("latin-1")


def decode_text(data: bytes, encoding: str) -> str:
    """Decode a whole file; bytes invalid in the encoding become U+FFFD (their rows are quarantined)."""
    if encoding == MIXED:
        return "".join(decode_mixed_line(line) for line in data.splitlines(keepends=True))
    return data.decode(encoding, errors="replace")


@dataclass
class Detected:
    """How to read one file: `kind` is a record kind or "archive"; `format` the container."""

    kind: str
    format: str
    encoding: str | None = None
    delimiter: str | None = None


def clean_line(line: str) -> str:
    """Remove invisible direction marks and turn narrow/no-break spaces into plain spaces."""
    return line.translate(INVISIBLE_MARKS).translate(ODD_SPACES)


def detect_encoding(head: bytes, name: str) -> str:
    """The encoding of a text sample: BOMs, UTF-16 without BOM, strict UTF-8, else charset-normalizer."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    even, odd = head[0:4096:2], head[1:4096:2]
    if len(head) >= 4 and odd.count(0) > 0.3 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if len(head) >= 4 and even.count(0) > 0.3 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    valid_utf8 = [m.group() for m in UTF8_MULTIBYTE.finditer(head)]
    if sum(_decodes(m) for m in valid_utf8) >= 2:
        return MIXED
    best = from_bytes(head).best()
    if best is None:
        raise EncodingError(f"{name}: the bytes do not decode as text in any known encoding; re-export as UTF-8")
    if best.encoding in LATIN_SINGLE_BYTE:
        try:
            head.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            return "latin-1"
    return best.encoding


def _decodes(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def sniff_delimiter(text: str) -> str:
    """The delimiter among , ; tab | that splits the sample's rows into the most consistent field count."""
    best, best_score = ",", (0.0, 0)
    for delim in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter=delim))[:-1] or list(
                csv.reader(io.StringIO(text), delimiter=delim)
            )
        except csv.Error:
            continue
        counts = [len(r) for r in rows[:200] if r]
        if not counts:
            continue
        modal = max(set(counts), key=counts.count)
        if modal < 2:
            continue
        score = (counts.count(modal) / len(counts), modal)
        if score > best_score:
            best, best_score = delim, score
    return best


def json_kind(keys: set[str]) -> str:
    """Record kind of a JSON row by its keys: preference pairs, instruction/chat datasets, else CRM records."""
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys or "conversations" in keys:
        return "dataset"
    if {"instruction", "output"} <= keys or {"prompt", "completion"} <= keys:
        return "dataset"
    return "crm"


def first_json_row(text: str) -> tuple[str, dict]:
    """("json" | "jsonl", first object) of a JSON array or JSON Lines sample."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        obj, _ = json.JSONDecoder().raw_decode(stripped[1:].lstrip())
        return "json", obj if isinstance(obj, dict) else {}
    for line in stripped.splitlines():
        if line.strip():
            obj = json.loads(line)
            return "jsonl", obj if isinstance(obj, dict) else {}
    return "jsonl", {}


def json_sample(path: Path, head: str, encoding: str) -> str:
    """Enough of a big JSON file to hold its first row: the first line of JSON Lines, else up to 64 MiB."""
    with path.open(encoding="utf-8" if encoding == MIXED else encoding, errors="replace") as handle:
        if head.lstrip().startswith("["):
            return handle.read(1 << 26)
        return next((line for line in handle if line.strip()), "")


def detect(path: Path, name: str) -> Detected:
    """Detect how to read `path` (`name` is how messages refer to it); raises an ExtractError if it can't be."""
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(f"{name}: the file is empty (0 bytes); export it again")
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    suffix = path.suffix.lower()
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            if what == "pdf":
                return Detected("pdf", "pdf")
            if what == "zip":
                return Detected("crm", "xlsx") if suffix in EXCEL_SUFFIXES else Detected("archive", "zip")
            if what == "parquet":
                return Detected("table", "parquet")  # kind decided from its columns when read
            if suffix in EXCEL_SUFFIXES and what.startswith("an old Office"):
                return Detected("crm", "xls")
            raise BinaryFileError(f"{name}: this is {what}, not a {suffix or 'text'} file; pick the right export")
    if suffix in EXCEL_SUFFIXES:
        return Detected("crm", suffix.lstrip("."))
    if suffix == ".pdf":
        raise CorruptFileError(f"{name}: does not start with %PDF, so it is not a PDF (or is damaged)")
    encoding = detect_encoding(head, name)
    if not encoding.startswith("utf-16") and b"\x00" in head:
        raise BinaryFileError(f"{name}: holds binary data (NUL bytes), not text; export the table as CSV or XLSX")
    text = decode_text(head, encoding)
    if "\ufffd" in text[:4096] and text[:4096].count("\ufffd") > 0.1 * min(len(text), 4096):
        raise BinaryFileError(f"{name}: holds binary data, not text; export the table as CSV or XLSX")
    lines = [clean_line(x) for x in text.splitlines()[:50] if x.strip()]
    if suffix in TRANSCRIPT_SUFFIXES or (lines and lines[0].startswith("WEBVTT")):
        return Detected("transcript", "vtt" if lines and lines[0].startswith("WEBVTT") else "srt", encoding)
    if suffix in JSON_SUFFIXES:
        try:
            fmt, row = first_json_row(text if size <= SAMPLE_BYTES else json_sample(path, text, encoding))
        except json.JSONDecodeError as exc:
            raise CorruptFileError(
                f"{name}: not valid JSON at its start ({exc.msg}, line {exc.lineno}); check the export"
            ) from exc
        return Detected(json_kind(set(row)), fmt, encoding)
    headers = sum(bool(WHATSAPP_HEADER.match(x)) for x in lines)
    if headers and (WHATSAPP_HEADER.match(lines[0]) or headers >= 2):  # a long first message spans lines
        return Detected("whatsapp", "txt", encoding)
    if suffix in TABLE_SUFFIXES or suffix == ".txt":
        delimiter = "\t" if suffix == ".tsv" else sniff_delimiter(text)
        if suffix == ".txt" and len(next(csv.reader([lines[0] if lines else ""], delimiter=delimiter), [])) < 2:
            raise UnsupportedFileError(
                f"{name}: plain text that is neither a WhatsApp export nor a table; "
                "save documents as PDF, chats as the WhatsApp .txt/.zip export"
            )
        return Detected("crm", "tsv" if delimiter == "\t" else "csv", encoding, delimiter)
    raise UnsupportedFileError(
        f"{name}: afinar does not read '{suffix or 'extension-less'}' files; supported: CSV, TSV, XLSX, JSON, "
        "JSONL, Parquet, WhatsApp .txt/.zip, PDF, WebVTT, SRT"
    )
