"""CRM and sales exports (CSV, TSV, XLSX, JSON/JSONL, Parquet) → `crm` records.

Every table arrives as chunks of string columns plus the row number (`Chunk`): CSV/TSV streamed by
`csv_stream`, JSON Lines by `json_stream`, Parquet by row groups, an XLSX sheet or a JSON array whole.
The user's columns are mapped by `CrmColumns` (`plan_table`, once, from the first chunk), timestamps
parsed with the format that fits a sample of the column, and each row goes either to `records/crm` or,
with the reason, to the quarantine (`split_rows`); `extract_chunks` writes the records as they come.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from tasks.accounting import QUARANTINE_SCHEMA, quarantine_rows
from tasks.config.data import CrmColumns
from tasks.extract.chunks import ROW, Chunk, read_ahead
from tasks.extract.errors import ColumnMappingError
from tasks.records import RECORD_SCHEMAS

PARQUET_BATCH_ROWS = 65_536
TAGS = ("__ts", "__reason")  # the columns tag_rows adds
ARROW_COMPAT = pl.CompatLevel.newest()  # string views: handing chunks to the parquet writer copies nothing
SAMPLE_ROWS = 2000
# records are written as they stream: LZ4, dictionaries only where values repeat, statistics only on the
# ordered columns (string min/max and dictionaries on free text cost a third of the writing for no gain)
WRITER_OPTIONS: dict[str, object] = {
    "compression": "lz4",
    "use_dictionary": ["source", "file", "outcome", "author"],
    "write_statistics": ["row", "timestamp"],
}
TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%+",
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%y %H:%M", "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%y %H:%M",
    "%m/%d/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y %H:%M",
    "%Y-%m-%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
)  # fmt: skip
# "1.234,56" or "1234,56": a number written with a decimal comma (pt-BR, es, de exports)
DECIMAL_COMMA = r"^-?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+$"


@dataclass
class TableResult:
    """What reading one table produced: counts, the quarantine, and what was detected."""

    rows_out: int = 0
    quarantine: pl.DataFrame | None = None
    info: dict[str, object] = field(default_factory=dict)


def clean_headers(names: list[str]) -> list[str]:
    """Blank headers become `column_N`; duplicates (polars' `x_duplicated_0`) become `x_2`, `x_3`…"""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(names, start=1):
        name = raw.split("_duplicated_")[0] if "_duplicated_" in raw else raw
        name = name.strip() or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


def strings_frame(frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Make every column a string (nested values as JSON, temporal values kept typed) with clean headers."""
    lf = frame.lazy()
    schema = lf.collect_schema()
    casts = []
    for col, dtype in schema.items():
        if dtype.is_temporal() or dtype == pl.String:
            continue
        if isinstance(dtype, (pl.Struct, pl.List, pl.Array)):
            wrapped = pl.struct(pl.col(col).alias("v")).struct.json_encode().str.slice(5).str.head(-1)
            casts.append(pl.when(pl.col(col).is_null()).then(None).otherwise(wrapped).alias(col))
        else:
            casts.append(pl.col(col).cast(pl.String))
    lf = lf.with_columns(casts) if casts else lf
    return lf.rename(dict(zip(schema.names(), clean_headers(schema.names()), strict=True)))


def numbered(lf: pl.LazyFrame, first_row: int) -> pl.LazyFrame:
    """Number the rows from `first_row` in the row column."""
    return lf.with_row_index(ROW, offset=first_row).with_columns(pl.col(ROW).cast(pl.Int64))


# names CRM tools commonly give each field, tried (in order) when the configured column is absent
ALIASES = {
    "text": ("text", "message", "mensagem", "texto", "body", "content", "conteúdo", "description", "descrição",
             "notes", "notas", "comment", "comentário", "interação", "interaction"),
    "author": ("author", "autor", "sender", "remetente", "from", "de", "speaker", "user", "usuário"),
    "timestamp": ("timestamp", "datetime", "date", "data", "data/hora", "data_hora", "created_at", "sent_at",
                  "time", "hora"),
    "conversation_id": ("conversation_id", "conversation", "conversa", "deal_id", "deal", "negócio", "id_negocio",
                        "ticket_id", "ticket", "lead_id", "chat_id", "thread_id"),
    "outcome": ("outcome", "result", "resultado", "status", "situação", "won_lost"),
}  # fmt: skip


def resolve_columns(available: list[str], columns: CrmColumns, name: str) -> tuple[dict[str, str], list[str]]:
    """Map record fields to the table's columns (case- and space-insensitive).

    A configured column that is absent falls back to a common name for the field, with a warning;
    without a text column the table cannot be read (ColumnMappingError says which columns exist).
    """
    lookup = {c.strip().casefold(): c for c in available if c != ROW}
    wanted = {
        "text": columns.text,
        "author": columns.author,
        "timestamp": columns.timestamp,
        "conversation_id": columns.conversation,
        "outcome": columns.outcome,
    }
    mapping: dict[str, str] = {}
    guessed: list[str] = []
    missing: list[str] = []
    for record_field, configured in wanted.items():
        if configured is None:
            continue
        found = lookup.get(configured.strip().casefold())
        if found is None:
            taken = set(mapping.values())
            found = next((lookup[a] for a in ALIASES[record_field] if a in lookup and lookup[a] not in taken), None)
            if found is not None:
                guessed.append(f"{record_field}='{found}'")
            elif record_field != "text":
                missing.append(f"{record_field} ('{configured}')")
        if found is not None:
            mapping[record_field] = found
        elif record_field == "text":
            raise ColumnMappingError(
                f"{name}: no column '{configured}' for the message text; the columns are "
                f"{sorted(lookup.values())}; set data.extract.crm.text=<column>"
            )
    warnings = []
    if guessed:
        warnings.append(f"configured columns absent, guessed by name: {', '.join(guessed)} (data.extract.crm)")
    if missing:
        warnings.append(f"no column for {', '.join(missing)}: left empty (data.extract.crm)")
    return mapping, warnings


def pick_timestamp_format(values: pl.Series, configured: str | None) -> str | None:
    """The strptime format that parses most of a sample of timestamp strings (the configured one wins)."""
    if configured:
        return configured
    values = values.drop_nulls().str.strip_chars()
    if values.is_empty():
        return None
    scores = {
        fmt: values.str.to_datetime(fmt, strict=False, time_unit="us").is_not_null().sum() for fmt in TIMESTAMP_FORMATS
    }
    fmt, hits = max(scores.items(), key=lambda kv: kv[1])  # first format wins ties: day-first before month-first
    return fmt if hits else None


def timestamp_expr(col: str, dtype: pl.DataType, fmt: str | None) -> pl.Expr:
    """A timezone-naive microsecond Datetime from a typed or string column."""
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(col)
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return expr.cast(pl.Datetime("us"))
    if dtype.is_temporal():
        return pl.col(col).cast(pl.Datetime("us"))
    if fmt is None:
        return pl.lit(None, pl.Datetime("us"))
    parsed = pl.col(col).str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
    if "%z" in fmt or fmt == "%+":
        parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return parsed.cast(pl.Datetime("us"))


@dataclass
class TablePlan:
    """How to turn a table's columns into crm records, decided once from its schema and first rows."""

    mapping: dict[str, str]
    timestamp_format: str | None
    decimal_columns: list[str]
    warnings: list[str]


def plan_table(schema: dict[str, pl.DataType], sample: pl.DataFrame, columns: CrmColumns, name: str) -> TablePlan:
    """Map the columns, pick the timestamp format and find decimal-comma columns from a sample of rows."""
    mapping, warnings = resolve_columns(list(schema), columns, name)
    ts_col = mapping.get("timestamp")
    fmt = None
    if ts_col is not None and schema[ts_col] == pl.String:
        fmt = pick_timestamp_format(sample[ts_col], columns.timestamp_format)
        if fmt is None and sample[ts_col].drop_nulls().len():
            warnings.append(f"timestamps in '{ts_col}' match no known format; set data.extract.crm.timestamp_format")
    decimals = []
    for col in schema:
        if col == ROW or col in mapping.values() or schema[col] != pl.String:
            continue
        values = sample[col].drop_nulls()
        if values.len() and values.str.contains(DECIMAL_COMMA).all():
            decimals.append(col)
    return TablePlan(mapping, fmt, decimals, warnings)


def table_columns(schema: pl.Schema) -> list[str]:
    """The table's own columns in a chunk or tagged frame (not the row number, nor the tags)."""
    return [c for c in schema if c not in (ROW, *TAGS)]


def tag_rows(lf: pl.LazyFrame, plan: TablePlan, lossy: bool) -> pl.LazyFrame:
    """Add `__ts` (the parsed timestamp) and `__reason` (why the row is quarantined, null if it is kept).

    Fully empty rows (a blank line, a spreadsheet's spacer row) are layout, not data, and are dropped.
    """
    mapping, schema = plan.mapping, lf.collect_schema()
    ts_col = mapping.get("timestamp")
    originals = table_columns(schema)
    text = pl.col(mapping["text"]).cast(pl.String).str.strip_chars()
    timestamp = (
        timestamp_expr(ts_col, schema[ts_col], plan.timestamp_format) if ts_col else pl.lit(None, pl.Datetime("us"))
    )
    reason = pl.when(text.is_null() | (text == "")).then(pl.lit(f"empty text in column '{mapping['text']}'"))
    if ts_col is not None and schema[ts_col] == pl.String:
        raw_ts = pl.col(ts_col).str.strip_chars()
        reason = reason.when(raw_ts.is_not_null() & (raw_ts != "") & pl.col("__ts").is_null()).then(
            pl.lit(f"timestamp in '{ts_col}' does not match {plan.timestamp_format or 'any known format'}")
        )
    string_cols = [c for c in originals if schema[c] == pl.String]
    if lossy and string_cols:
        reason = reason.when(
            pl.any_horizontal([pl.col(c).str.contains("\ufffd", literal=True) for c in string_cols])
        ).then(pl.lit("bytes invalid in the file's encoding (mixed encodings?); re-export as UTF-8"))
    return (
        lf.filter(~pl.all_horizontal(pl.col(originals).is_null()))
        .with_columns(timestamp.alias("__ts"))
        .with_columns(reason.otherwise(None).alias("__reason"))
    )


def records_of(tagged: pl.LazyFrame, plan: TablePlan, name: str, origin_prefix: str) -> pl.LazyFrame:
    """The kept rows of a tagged frame as crm records (the other columns as JSON in `extra`)."""
    mapping = plan.mapping
    originals = table_columns(tagged.collect_schema())

    def value(record_field: str) -> pl.Expr:
        col = mapping.get(record_field)
        return pl.col(col).cast(pl.String).str.strip_chars() if col else pl.lit(None, pl.String)

    extra_fields = []
    for col in (c for c in originals if c not in mapping.values()):
        expr = pl.col(col).cast(pl.String)
        if col in plan.decimal_columns:
            normalised = expr.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
            expr = pl.when(expr.str.contains(DECIMAL_COMMA)).then(normalised).otherwise(expr)
        extra_fields.append(expr.alias(col))
    extra = pl.struct(extra_fields).struct.json_encode() if extra_fields else pl.lit(None, pl.String)
    return (
        tagged.filter(pl.col("__reason").is_null())
        .select(
            pl.lit("crm").alias("source"),
            (pl.lit(origin_prefix) + pl.col(ROW).cast(pl.String)).alias("origin"),
            pl.lit(name).alias("file"),
            pl.col(ROW).cast(pl.Int64).alias("row"),
            value("conversation_id").alias("conversation_id"),
            pl.col("__ts").alias("timestamp"),
            value("author").alias("author"),
            value("text").str.replace_all("\r\n", "\n", literal=True).alias("text"),
            value("outcome").alias("outcome"),
            extra.alias("extra"),
        )
        .cast(RECORD_SCHEMAS["crm"])
    )  # type: ignore[arg-type]


def quarantine_of(tagged: pl.LazyFrame, plan: TablePlan, origin_prefix: str) -> pl.LazyFrame:
    """The quarantined rows of a tagged frame, with reason, origin and the whole row as JSON."""
    originals = table_columns(tagged.collect_schema())
    return tagged.filter(pl.col("__reason").is_not_null()).select(
        pl.lit("extract").alias("stage"),
        pl.lit("crm").alias("source"),
        (pl.lit(origin_prefix) + pl.col(ROW).cast(pl.String)).alias("origin"),
        pl.col("__reason").alias("reason"),
        pl.struct([pl.col(c).cast(pl.String) for c in originals]).struct.json_encode().alias("payload"),
    )


def split_rows(
    frame: pl.DataFrame, plan: TablePlan, name: str, origin_prefix: str, lossy: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(crm records, quarantine rows) of a table's rows; the checks run once, the records only on kept rows.

    A mapped column the chunk lacks (a key no JSON line of this chunk has) is read as empty.
    """
    absent = [c for c in plan.mapping.values() if c not in frame.columns]
    if absent:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(c) for c in absent)
    tagged = tag_rows(frame.lazy(), plan, lossy).collect()
    records = records_of(tagged.lazy(), plan, name, origin_prefix).collect()
    if tagged["__reason"].null_count() == tagged.height:
        return records, pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return records, quarantine_of(tagged.lazy(), plan, origin_prefix).collect()


def extract_chunks(
    chunks: Iterator[Chunk],
    schema: dict[str, pl.DataType],
    columns: CrmColumns,
    name: str,
    origin_prefix: str,
    records_path: Path,
) -> TableResult:
    """Map, check and write a table's chunks into `records_path` (parquet, a row group per chunk) + quarantine.

    The plan (column mapping, timestamp format, decimal columns) is made from the first chunk with
    rows; `schema` is the table's columns for when none has any, so a wrong mapping is still reported.
    Chunk N is written in a thread while chunk N+1 is mapped here and chunk N+2 is read by its stream
    (polars and pyarrow release the GIL): one chunk at each step, so memory stays bounded.
    """
    arrow_schema = pl.DataFrame(schema=RECORD_SCHEMAS["crm"]).to_arrow(compat_level=ARROW_COMPAT).schema
    plan: TablePlan | None = None
    quarantine: list[pl.DataFrame] = []
    rows_out = 0
    pending: Future[None] | None = None
    with pq.ParquetWriter(records_path, arrow_schema, **WRITER_OPTIONS) as writer, ThreadPoolExecutor(1) as pool:
        for chunk in chunks:
            if chunk.bad:
                quarantine.append(quarantine_rows("extract", chunk.bad))
            if chunk.frame.is_empty():
                continue
            if plan is None:
                plan = plan_table(dict(chunk.frame.schema), chunk.frame.head(SAMPLE_ROWS), columns, name)
            good, bad = split_rows(chunk.frame, plan, name, origin_prefix, chunk.lossy)
            rows_out += good.height
            quarantine.append(bad)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, good.to_arrow(compat_level=ARROW_COMPAT))
            del chunk, good  # nothing of this chunk is held while the next one is awaited
        if pending is not None:
            pending.result()
    if plan is None:  # no data rows: still check the mapping, so a wrong config is reported
        plan = plan_table(schema, pl.DataFrame(schema=schema), columns, name)
    frames = [q.cast(QUARANTINE_SCHEMA) for q in quarantine if q.height]  # type: ignore[arg-type]
    merged = pl.concat(frames) if frames else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    info: dict[str, object] = {"columns": plan.mapping, "timestamp_format": plan.timestamp_format}
    return TableResult(rows_out=rows_out, quarantine=merged, info={**info, "warnings": plan.warnings})


def parquet_chunks(path: Path) -> tuple[dict[str, pl.DataType], Iterator[Chunk]]:
    """(columns, chunks) of a Parquet export, read a batch of rows at a time (row numbers from 1)."""
    source = pq.ParquetFile(path)
    schema = dict(strings_frame(pl.from_arrow(source.schema_arrow.empty_table())).collect_schema())  # type: ignore[arg-type]

    def chunks() -> Iterator[Chunk]:
        first = 1
        for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            frame = numbered(strings_frame(pl.from_arrow(batch)), first).collect()  # type: ignore[arg-type]
            first += frame.height
            yield Chunk(frame)

    return {ROW: pl.Int64, **schema}, read_ahead(chunks())
