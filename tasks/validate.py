"""Validate: hold every record kind to its pandera model; valid rows go on, the rest are quarantined.

Reads `records/<kind>.parquet` (extract's output), checks the column set first (a missing or
mistyped column stops the stage: nothing row-level can be trusted), then validates lazily so
*every* failing check of every row is collected. Valid rows are written unchanged to
`records/<kind>.parquet` under the stage folder; failing rows go to `quarantine.parquet` with
the checks they failed (`reason`) and their `origin`. When more than
`max_quarantine_share` of the rows fail, the stage stops instead of training on the leftovers.
"""

from __future__ import annotations

from pathlib import Path

import pandera.errors as pe
import polars as pl

from tasks.accounting import StageReport, quarantine_frame, top_reasons, write_quarantine
from tasks.config.data import ValidateConfig
from tasks.records import RECORD_SCHEMAS
from tasks.schemas import RECORD_MODELS

STAGE = "validate"
_ROW = "__row_index"


class RecordSchemaError(ValueError):
    """A records file lacks a column its kind needs, has it with the wrong type, or is of an unknown kind."""


class QuarantineShareError(RuntimeError):
    """Too many rows failed validation to train on what is left."""


def check_columns(path: Path, kind: str, frame: pl.DataFrame) -> None:
    """Schema-level check: every column of the kind's contract, with its type (extra columns are fine)."""
    expected = RECORD_SCHEMAS[kind]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise RecordSchemaError(
            f"{path}: column {missing[0]!r} is missing (the '{kind}' record needs {list(expected)}; "
            f"found {frame.columns}). Re-run extract, or fix the column mapping in `data.extract`."
        )
    for column, dtype in expected.items():
        if frame.schema[column] != dtype and frame.schema[column] != pl.Null:
            raise RecordSchemaError(
                f"{path}: column {column!r} has type {frame.schema[column]}, the '{kind}' record needs {dtype}. "
                "Re-run extract with this version of afinar."
            )


def failure_reasons(kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Row index → '; '-joined failed checks (`column:check`), for the rows that fail the kind's model."""
    model = RECORD_MODELS[kind]
    try:
        model.validate(frame, lazy=True)
    except pe.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pl.DataFrame(schema={_ROW: pl.UInt32, "reason": pl.String})
    if cases.filter(pl.col("index").is_null()).height:
        # a frame-wide failure (a check that could not run at all): report it, it is a bug or a schema issue
        first = cases.filter(pl.col("index").is_null()).row(0, named=True)
        raise RecordSchemaError(
            f"records of kind '{kind}': check {first['check']!r} failed on the whole frame: {first['failure_case']}"
        )
    column = pl.when(pl.col("schema_context") == "Column").then(pl.col("column")).otherwise(pl.lit("row"))
    return (
        cases.select(
            pl.col("index").cast(pl.UInt32).alias(_ROW), pl.format("{}:{}", column, pl.col("check")).alias("check")
        )
        .unique(maintain_order=True)
        .group_by(_ROW, maintain_order=True)
        .agg(pl.col("check").sort().str.join("; ").alias("reason"))
    )


def validate_kind(path: Path, kind: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows with the kind's exact columns, quarantine rows) for one records file."""
    frame = pl.read_parquet(path)
    check_columns(path, kind, frame)
    frame = frame.select([pl.col(c).cast(t) for c, t in RECORD_SCHEMAS[kind].items()])
    reasons = failure_reasons(kind, frame)
    indexed = frame.with_row_index(_ROW)
    bad = indexed.join(reasons, on=_ROW, how="inner").sort(_ROW)
    good = indexed.join(reasons, on=_ROW, how="anti").sort(_ROW).drop(_ROW)
    # a row without a usable origin still gets one: the file and its position in it
    bad = bad.with_columns(
        pl.when(pl.col("origin").fill_null("").str.len_chars() > 0)
        .then(pl.col("origin"))
        .otherwise(pl.format("{}#index={}", pl.lit(path.name), pl.col(_ROW)))
        .alias("origin"),
        pl.col("source").fill_null(kind),
    )
    quarantined = quarantine_frame(STAGE, bad.drop(_ROW, "reason"), pl.Series(bad["reason"]))
    return good, quarantined


def validate_records(records_dir: Path, cfg: ValidateConfig, out_dir: Path) -> StageReport:
    """Validate every `<kind>.parquet` of `records_dir` into `out_dir/records/` + `out_dir/quarantine.parquet`."""
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    (out_dir / "records").mkdir(parents=True, exist_ok=True)
    report = StageReport(STAGE)
    quarantine: list[pl.DataFrame] = []
    for path in sorted(records_dir.glob("*.parquet")):
        kind = path.stem
        if kind not in RECORD_SCHEMAS:
            raise RecordSchemaError(
                f"{path}: unknown record kind {kind!r} (known: {list(RECORD_SCHEMAS)}); remove the file or rename it."
            )
        good, bad = validate_kind(path, kind)
        good.write_parquet(out_dir / "records" / path.name)
        quarantine.append(bad)
        rows = good.height + bad.height
        report.rows_in += rows
        report.rows_out += good.height
        report.rows_quarantined += bad.height
        report.metrics[f"rows_in_{kind}"] = rows
        report.metrics[f"quarantined_{kind}"] = bad.height
    write_quarantine(quarantine, out_dir / "quarantine.parquet")
    report.artifacts["quarantine"] = "quarantine.parquet"
    share = report.rows_quarantined / report.rows_in if report.rows_in else 0.0
    report.metrics["quarantine_share"] = round(share, 6)
    if share > cfg.max_quarantine_share:
        reasons = top_reasons(pl.read_parquet(out_dir / "quarantine.parquet"))
        raise QuarantineShareError(
            f"validate: {report.rows_quarantined} of {report.rows_in} records ({share:.0%}) failed validation, "
            f"more than data.validate.max_quarantine_share={cfg.max_quarantine_share:.0%}. "
            f"Top reasons: {reasons}. Inspect {out_dir / 'quarantine.parquet'} and fix the sources "
            "(or raise the threshold if this is expected)."
        )
    if not report.rows_in:
        report.notes.append(f"no records found in {records_dir}")
    return report.check()
