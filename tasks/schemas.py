"""Pandera models (polars backend): one per record kind, and one for the canonical Example.

Column names and types come from `tasks.records`; these models add the *rules* each row must
follow (non-empty text, a known message kind, a cue that ends after it starts...). Validate
checks records lazily with them; later stages check examples with `ExampleModel`.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from tasks.records import EXAMPLE_SCHEMA, RECORD_SCHEMAS, SPLITS

MESSAGE_KINDS = ("text", "media", "system", "deleted")


def _has_text(data: PolarsData) -> pl.LazyFrame:
    """True where the column holds something other than whitespace."""
    return data.lazyframe.select(pl.col(data.key).str.strip_chars().str.len_chars() > 0)


class RecordModel(pa.DataFrameModel):
    """Columns every record carries: where it came from."""

    source: str = pa.Field(isin=list(RECORD_SCHEMAS))
    origin: str = pa.Field(str_length={"min_value": 1})
    file: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = False  # the column set is checked (with a clear message) before pandera runs
        coerce = False


class CrmModel(RecordModel):
    """One message of a CRM interaction; `author` decides the speaker's role."""

    row: int = pa.Field(ge=0)
    conversation_id: str = pa.Field(nullable=True)
    timestamp: pl.Datetime = pa.Field(nullable=True)
    author: str = pa.Field(str_length={"min_value": 1})
    text: str
    outcome: str = pa.Field(nullable=True)
    extra: str = pa.Field(nullable=True)

    @pa.check("text", name="text_not_blank")
    def text_not_blank(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)


class WhatsappModel(RecordModel):
    """One line of a WhatsApp export; only `kind == text` messages may become replies."""

    line: int = pa.Field(ge=1)
    conversation_id: str = pa.Field(str_length={"min_value": 1})
    timestamp: pl.Datetime = pa.Field()
    sender: str = pa.Field(nullable=True)
    text: str = pa.Field(nullable=True)
    kind: str = pa.Field(isin=list(MESSAGE_KINDS))

    @pa.dataframe_check(name="text_message_has_sender_and_text")
    def text_message_complete(cls, data: PolarsData) -> pl.LazyFrame:
        text_ok = pl.col("text").fill_null("").str.strip_chars().str.len_chars() > 0
        sender_ok = pl.col("sender").fill_null("").str.strip_chars().str.len_chars() > 0
        return data.lazyframe.select((pl.col("kind") != "text") | (text_ok & sender_ok))


class PdfModel(RecordModel):
    """One page of a PDF; a page without text (a scan) is quarantined: OCR it first."""

    page: int = pa.Field(ge=1)
    text: str

    @pa.check("text", name="page_has_text")
    def page_has_text(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)


class TranscriptModel(RecordModel):
    """One cue of a transcript (SRT/VTT or similar)."""

    cue: int = pa.Field(ge=0)
    start_s: float = pa.Field(ge=0, nullable=True)
    end_s: float = pa.Field(ge=0, nullable=True)
    speaker: str = pa.Field(nullable=True)
    text: str

    @pa.check("text", name="text_not_blank")
    def text_not_blank(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)

    @pa.dataframe_check(name="cue_ends_after_it_starts")
    def cue_ordered(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("end_s") >= pl.col("start_s")).fill_null(True))


class DatasetModel(RecordModel):
    """One assistant turn of an instruction dataset (alpaca, ShareGPT, OpenAI chat)."""

    line: int = pa.Field(ge=1)
    system: str = pa.Field(nullable=True)
    instruction: str
    input: str = pa.Field(nullable=True)
    output: str

    @pa.check("instruction", "output", name="not_blank")
    def not_blank(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)


class PreferenceModel(RecordModel):
    """One preference pair; chosen and rejected must differ."""

    line: int = pa.Field(ge=1)
    prompt: str
    chosen: str
    rejected: str

    @pa.check("prompt", "chosen", "rejected", name="not_blank")
    def not_blank(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)

    @pa.dataframe_check(name="chosen_differs_from_rejected")
    def pair_differs(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("chosen").str.strip_chars() != pl.col("rejected").str.strip_chars())


class ExampleModel(pa.DataFrameModel):
    """The canonical training row (see DESIGN.md, "Example")."""

    id: str = pa.Field(str_matches=r"^[0-9a-f]{16}$", unique=True)
    system: str = pa.Field(nullable=True)
    instruction: str
    input: str
    output: str
    source: str = pa.Field(str_length={"min_value": 1})
    origin: str = pa.Field(str_length={"min_value": 1})
    split: str = pa.Field(isin=list(SPLITS))
    synthetic: bool
    parent_id: str = pa.Field(nullable=True)
    score: float = pa.Field(nullable=True, in_range={"min_value": 0.0, "max_value": 1.0})
    n_tokens: int = pa.Field(ge=1)

    class Config:
        strict = True
        coerce = False

    @pa.check("instruction", "output", name="not_blank")
    def not_blank(cls, data: PolarsData) -> pl.LazyFrame:
        return _has_text(data)

    @pa.dataframe_check(name="synthetic_rows_have_a_parent")
    def synthetic_has_parent(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(~pl.col("synthetic") | pl.col("parent_id").is_not_null())


RECORD_MODELS: dict[str, type[RecordModel]] = {
    "crm": CrmModel,
    "whatsapp": WhatsappModel,
    "pdf": PdfModel,
    "transcript": TranscriptModel,
    "dataset": DatasetModel,
    "preference": PreferenceModel,
}

assert set(RECORD_MODELS) == set(RECORD_SCHEMAS), "every record kind needs a pandera model"
assert set(ExampleModel.to_schema().columns) == set(EXAMPLE_SCHEMA), "ExampleModel drifted from EXAMPLE_SCHEMA"
