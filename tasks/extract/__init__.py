"""The extract stage: read files and folders as users' tools really export them, and lose nothing.

`extract_sources` walks the given paths (folders recursively, zips unpacked safely), detects what
each file is, and writes `records/<kind>.parquet` (one per record kind, the columns of
`tasks.records.RECORD_SCHEMAS`), `quarantine.parquet` (every row that could not be read, with
reason and origin) and `files.json` (what was read from each file, or why it could not be).
A file that cannot be read is reported with its reason; the other files still go through.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from tasks.accounting import QUARANTINE_SCHEMA, StageReport, quarantine_rows, write_quarantine
from tasks.config.data import ExtractConfig
from tasks.extract import crm
from tasks.extract.archive import extract_archive
from tasks.extract.chunks import ROW, Chunk
from tasks.extract.csv_stream import read_delimited
from tasks.extract.datasets import parse_dataset, parse_dataset_rows
from tasks.extract.detect import Detected, decode_text, detect, json_kind
from tasks.extract.errors import ExtractError
from tasks.extract.json_stream import read_json_array, read_jsonl
from tasks.extract.pdf import extract_pdf
from tasks.extract.transcript import parse_transcript
from tasks.extract.whatsapp import parse_whatsapp_export
from tasks.records import RECORD_SCHEMAS, SOURCE_KINDS

__all__ = ["FileReport", "extract_sources"]

STAGE = "extract"
TOP_REASONS = 3
log = logging.getLogger(__name__)
# attachments that ride along in WhatsApp zips: not data afinar reads, so counted and skipped
MEDIA_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".opus", ".ogg", ".mp3", ".m4a", ".aac", ".wav",
    ".mp4", ".3gp", ".mov", ".vcf", ".docx", ".pptx",
}  # fmt: skip


@dataclass
class FileReport:
    """What extract read from one file (the `files.json` entry, and a line of `afinar extract`)."""

    path: str
    kind: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    encoding: str | None = None
    format: str | None = None
    delimiter: str | None = None
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Extraction:
    """The stage's working state: record parts per kind, quarantine frames and per-file reports."""

    out_dir: Path
    tmp_dir: Path
    cfg: ExtractConfig
    parts: dict[str, list[Path]] = field(default_factory=dict)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)

    def part_path(self, kind: str) -> Path:
        folder = self.tmp_dir / "parts" / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{len(self.parts.get(kind, [])):05d}.parquet"
        self.parts.setdefault(kind, []).append(path)
        return path

    def add(self, report: FileReport, kind: str, records: pl.DataFrame, bad: list[dict[str, object]]) -> None:
        """Keep one file's records and quarantined rows and complete its counts."""
        if records.height:
            records.write_parquet(self.part_path(kind))
        frame = quarantine_rows(STAGE, bad) if bad else pl.DataFrame(schema=QUARANTINE_SCHEMA)
        self.add_counts(report, records.height, frame)

    def add_counts(self, report: FileReport, rows_out: int, quarantined: pl.DataFrame) -> None:
        """Add rows written and rows quarantined to a file's report (rows_in is always their sum)."""
        report.rows_out += rows_out
        report.rows_quarantined += quarantined.height
        report.rows_in = report.rows_out + report.rows_quarantined
        if quarantined.height:
            self.quarantine.append(quarantined.cast(QUARANTINE_SCHEMA))  # type: ignore[arg-type]
            counts = quarantined.group_by("reason").len().iter_rows()
            merged = Counter(dict(report.top_reasons)) + Counter({str(r): int(n) for r, n in counts})
            report.top_reasons = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]

    def snapshot(self) -> tuple[int, dict[str, int]]:
        return len(self.quarantine), {kind: len(parts) for kind, parts in self.parts.items()}

    def roll_back(self, snapshot: tuple[int, dict[str, int]]) -> None:
        """Forget what a file added before it failed: half a file is not passed on."""
        del self.quarantine[snapshot[0] :]
        for kind, parts in self.parts.items():
            del parts[snapshot[1].get(kind, 0) :]


def source_files(paths: list[Path], out_dir: Path) -> list[tuple[Path, str]]:
    """(file, display name) for every file under the paths; hidden files and the output folder are skipped."""
    found: list[tuple[Path, str]] = []
    out_dir = out_dir.resolve()
    for root in paths:
        root = Path(root)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                hidden = any(part.startswith(".") for part in rel.parts)
                if path.is_file() and not hidden and not path.resolve().is_relative_to(out_dir):
                    found.append((path, rel.as_posix()))
        else:
            found.append((root, root.name))
    return found


def read_text(path: Path, encoding: str) -> str:
    """The whole file decoded (bytes invalid in the encoding become U+FFFD, and their rows are quarantined)."""
    return decode_text(path.read_bytes(), encoding)


def read_table(path: Path, name: str, found: Detected, work: Extraction, report: FileReport) -> None:
    """A CRM table of any format → crm records and quarantine (CSV, TSV, JSON Lines and Parquet streamed)."""
    columns = work.cfg.crm
    encoding = found.encoding or "utf-8"
    tables: list[tuple[str | None, dict[str, pl.DataType], Iterator[Chunk], str]] = []
    if found.format in ("csv", "tsv"):
        header, chunks = read_delimited(path, encoding, found.delimiter or ",", name)
        tables.append((None, {ROW: pl.Int64, **dict.fromkeys(header, pl.String)}, chunks, f"{name}#row="))
    elif found.format in ("xlsx", "xlsm", "xls", "xlsb", "ods"):
        sheets = pl.read_excel(path, sheet_id=0, infer_schema_length=0, drop_empty_rows=False, raise_if_empty=False)
        for sheet, frame in sheets.items():
            # Excel row numbers: the header is row 1; fully empty rows are layout, not data
            rows = crm.numbered(crm.strings_frame(frame), 2).filter(~pl.all_horizontal(pl.exclude(ROW).is_null()))
            chunk = Chunk(rows.collect())
            prefix = f"{name}#sheet={sheet}&row=" if len(sheets) > 1 else f"{name}#row="
            tables.append((sheet if len(sheets) > 1 else None, dict(chunk.frame.schema), iter([chunk]), prefix))
    elif found.format == "jsonl":
        tables.append((None, {ROW: pl.Int64}, read_jsonl(path, encoding, name), f"{name}#line="))
    elif found.format == "json":
        chunk = read_json_array(read_text(path, encoding), name)
        tables.append((None, dict(chunk.frame.schema), iter([chunk]), f"{name}#item="))
    else:
        schema, chunks = crm.parquet_chunks(path)
        tables.append((None, schema, chunks, f"{name}#row="))
    skipped: list[ExtractError] = []
    for sheet, schema, chunks, prefix in tables:
        try:
            result = crm.extract_chunks(chunks, schema, columns, name, prefix, work.part_path("crm"))
        except ExtractError as exc:
            if sheet is None:
                raise
            skipped.append(exc)
            report.warnings.append(f"sheet '{sheet}' skipped: {exc}")
            work.parts["crm"].pop()
            continue
        report.warnings += result.info["warnings"]  # type: ignore[operator]
        work.add_counts(report, result.rows_out, result.quarantine)
    if skipped and len(skipped) == len(tables):
        raise skipped[0]


def read_file(path: Path, name: str, work: Extraction, conversation_id: str | None = None) -> None:
    """Read one file into `work`; an unreadable file is reported with its reason, never raised."""
    report = FileReport(path=name)
    work.files.append(report)
    snapshot = work.snapshot()
    try:
        found = detect(path, name)
        report.kind, report.format = found.kind, found.format
        report.encoding, report.delimiter = found.encoding, found.delimiter
        if found.kind == "archive":
            read_archive(path, name, work, report)
            return
        if found.format == "parquet":
            columns = set(pl.scan_parquet(path).collect_schema().names())
            found.kind = report.kind = json_kind(columns)
            if found.kind != "crm":
                frame = pl.read_parquet(path)
                rows = ((i, f"row={i}", r) for i, r in enumerate(frame.iter_rows(named=True), start=1))
                result = parse_dataset_rows(rows, name, found.kind)
                work.add(report, found.kind, result.records, result.quarantine)
                return
        if found.kind == "crm":
            read_table(path, name, found, work, report)
        elif found.kind == "whatsapp":
            chat = parse_whatsapp_export(read_text(path, found.encoding or "utf-8"), name, conversation_id or path.stem)
            report.format = str(chat.info["format"])
            work.add(report, "whatsapp", chat.records, chat.quarantine)
        elif found.kind == "transcript":
            result = parse_transcript(read_text(path, found.encoding or "utf-8"), name, srt=found.format == "srt")
            report.format = f"{result.info['format']} ({result.info['cues']} cues → {result.records.height} segments)"
            work.add(report, "transcript", result.records, result.quarantine)
        elif found.kind == "pdf":
            pages = extract_pdf(path, name)
            report.format = str(pages.info["format"])
            work.add(report, "pdf", pages.records, pages.quarantine)
        else:
            data = parse_dataset(read_text(path, found.encoding or "utf-8"), found.format, name, found.kind)
            work.add(report, found.kind, data.records, data.quarantine)
        if report.rows_in == 0:
            report.warnings.append("no rows: the file has no data (only a header?)")
        report.warnings = list(dict.fromkeys(report.warnings))
    except ExtractError as exc:
        report.error = str(exc)
    except Exception as exc:  # a parser library failing on odd input: still one clear line, never a traceback
        log.debug("extract failed on %s", name, exc_info=True)
        report.error = f"{name}: could not be read ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
    if report.error:
        work.roll_back(snapshot)
        report.rows_in = report.rows_out = report.rows_quarantined = 0
        report.top_reasons = []


def read_archive(path: Path, name: str, work: Extraction, report: FileReport) -> None:
    """Unpack a zip safely and read each file in it (`archive.zip!member` names); attachments are skipped."""
    dest = Path(tempfile.mkdtemp(prefix="zip-", dir=work.tmp_dir))
    files = extract_archive(path, dest, name, work.cfg.max_archive_bytes, work.cfg.max_archive_files)
    members = [f for f in files if not f.relative_to(dest).as_posix().startswith("__MACOSX/")]
    members = [f for f in members if not f.name.startswith(".")]
    media = [f for f in members if f.suffix.lower() in MEDIA_SUFFIXES]
    texts = [f for f in members if f.suffix.lower() == ".txt"]
    for member in members:
        if member in media:
            continue
        # a WhatsApp zip holds one chat (`_chat.txt` on iOS, `WhatsApp Chat with X.txt` on Android):
        # the conversation is named after the zip; a zip of several chats keeps each chat's own name
        single_chat = member.name == "_chat.txt" or texts == [member]
        read_file(member, f"{name}!{member.relative_to(dest).as_posix()}", work,
                  conversation_id=Path(name).stem if single_chat else member.stem)  # fmt: skip
    report.warnings.append(f"{len(files)} files in the archive; {len(media)} media attachments not read")
    shutil.rmtree(dest, ignore_errors=True)


def write_records(work: Extraction) -> dict[str, int]:
    """Merge each kind's parts into `records/<kind>.parquet` (an empty file with the schema for absent kinds)."""
    records_dir = work.out_dir / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for kind in SOURCE_KINDS:
        target = records_dir / f"{kind}.parquet"
        parts = [p for p in work.parts.get(kind, []) if p.exists()]
        if len(parts) == 1:
            shutil.move(parts[0], target)  # written with the kind's schema already
        elif parts:
            pl.scan_parquet(parts).cast(RECORD_SCHEMAS[kind]).sink_parquet(target)  # type: ignore[arg-type]
        else:
            pl.DataFrame(schema=RECORD_SCHEMAS[kind]).write_parquet(target)
        counts[kind] = pl.scan_parquet(target).select(pl.len()).collect().item()
    return counts


def extract_sources(paths: list[Path], cfg: ExtractConfig, out_dir: Path) -> StageReport:
    """Read every file under `paths` into records + quarantine + files.json in `out_dir`; report the counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="extract-", dir=out_dir) as tmp:
        work = Extraction(out_dir, Path(tmp), cfg)
        for path, name in source_files([Path(p) for p in paths], out_dir):
            if not path.exists():
                work.files.append(FileReport(path=name, error=f"{name}: no such file or folder; check data.paths"))
                continue
            read_file(path, name, work)
        counts = write_records(work)
    rows_quarantined = write_quarantine(work.quarantine, out_dir / "quarantine.parquet")
    files = [asdict(f) for f in work.files]
    (out_dir / "files.json").write_text(json.dumps(files, indent=2, ensure_ascii=False))
    report = StageReport(
        stage=STAGE,
        rows_in=sum(counts.values()) + rows_quarantined,
        rows_out=sum(counts.values()),
        rows_quarantined=rows_quarantined,
        metrics={
            "files_read": float(sum(1 for f in work.files if not f.error and f.kind != "archive")),
            "files_failed": float(sum(1 for f in work.files if f.error)),
            **{f"records_{kind}": float(n) for kind, n in counts.items()},
        },
        artifacts={"quarantine": "quarantine.parquet", "files": "files.json"},
        notes=[f.error for f in work.files if f.error],
    )
    return report.check()
