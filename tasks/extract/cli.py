"""`afinar extract PATH... [--out DIR] [--json] [overrides]`: what afinar reads from your files, before a run.

Reads the paths exactly as a run's extract stage would (the same `data` config, so the CRM column
mapping applies; Hydra overrides such as `data.extract.crm.text=Notes` change it), writes the records
and quarantine as parquet under `--out`, and prints one line per file: kind, format and encoding,
rows extracted, rows quarantined with the top reasons, or why the file could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tasks.config import compose, section_as
from tasks.config.data import ExtractConfig
from tasks.extract import extract_sources


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="afinar extract",
        description="Show what afinar reads from files or folders (as a run would), and why rows are quarantined.",
    )
    parser.add_argument("paths", nargs="+", help="files or folders; KEY=VALUE items are Hydra config overrides")
    parser.add_argument("--out", type=Path, default=Path("work/extract"), help="where records/ and quarantine go")
    parser.add_argument("--json", action="store_true", help="print one machine-readable summary object on stdout")
    return parser.parse_args(argv)


def render(files: list[dict[str, Any]], out: Path, console: Console) -> None:
    """A table of what was read from each file, then one line per file with its error or quarantine reasons."""
    table = Table(title=f"afinar extract → {out}")
    for column in ("file", "kind", "format", "encoding", "rows", "quarantined", "status"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("file", "format"))
    for f in files:
        fmt = str(f["format"] or "")
        if f["delimiter"]:
            fmt += f" ({'tab' if f['delimiter'] == chr(9) else f['delimiter']})"
        noted = f["warnings"] or f["top_reasons"]
        status = "[red]not read[/red]" if f["error"] else "[yellow]see below[/yellow]" if noted else "ok"
        table.add_row(
            str(f["path"]), str(f["kind"] or "?"), fmt, str(f["encoding"] or ""),
            str(f["rows_out"]), str(f["rows_quarantined"]), status,
        )  # fmt: skip
    console.print(table)
    for f in files:
        if f["error"]:
            console.print(f"[red]✗[/red] {f['error']}", highlight=False)
            continue
        if f["top_reasons"]:
            reasons = "; ".join(f"{reason} ×{count}" for reason, count in f["top_reasons"])
            console.print(f"• {f['path']}: quarantined: {reasons}", highlight=False)
        for warning in f["warnings"]:
            console.print(f"• {f['path']}: {warning}", highlight=False)


def main(argv: list[str]) -> int:
    """Run extract on the paths; exit code 0 if every file was read, 1 if any could not be, 2 on usage errors."""
    args = parse_args(argv)
    overrides = [p for p in args.paths if "=" in p and not Path(p).exists()]
    paths = [Path(p) for p in args.paths if p not in overrides]
    if not paths:
        print("afinar extract: give at least one file or folder", file=sys.stderr)
        return 2
    try:
        cfg = section_as(compose(overrides).data.extract, ExtractConfig)
    except Exception as exc:  # Hydra reports a bad override with its own exception types
        print(f"afinar extract: bad config override: {exc}", file=sys.stderr)
        return 2
    report = extract_sources(paths, cfg, args.out)
    files = json.loads((args.out / "files.json").read_text())
    if args.json:
        summary = {
            "out": str(args.out),
            "rows_in": report.rows_in,
            "rows_out": report.rows_out,
            "rows_quarantined": report.rows_quarantined,
            "files": files,
        }
        print(json.dumps(summary, ensure_ascii=False))
    else:
        render(files, args.out, Console(width=None if sys.stdout.isatty() else 160))
        print(
            f"{report.rows_out} rows extracted, {report.rows_quarantined} quarantined "
            f"({args.out / 'quarantine.parquet'}), {int(report.metrics['files_failed'])} files not read"
        )
    return 1 if report.metrics["files_failed"] else 0
