"""Transform: validated records → a clean, private, leak-free instruction dataset (`examples.parquet`).

The story, top to bottom (`build_examples`):
1. load the validated records; clean (Unicode, invisible characters, whitespace) and redact personal
   data in every free-text column — before anything is written or sent to a teacher;
2. fix each conversation's / document's split by a stable hash of its key;
3. assemble *candidate examples*: one per assistant reply (conversations), per dataset row, per
   question slot of a document chunk (the teacher writes the questions);
4. clean → outcome filter → exact dedup → near dedup → length policy, each step accounted;
5. count tokens, write examples, preference pairs, quarantine, duplicates, exports and the report.

Accounting unit: the candidate example. `rows_in` = candidates assembled; every candidate ends up in
`examples.parquet` (rows_out), `quarantine.parquet` (with reason and origin) or `duplicates.parquet`
(rows_deduplicated, with the row it duplicates). How records became candidates (many messages → one
example; one document → many chunks) is reported separately as `records_*`/`chunks`/`candidates_*`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.accounting import StageReport, quarantine_frame, quarantine_rows, write_quarantine
from tasks.config.data import DataConfig, TransformConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.model_loading import load_tokenizer
from tasks.records import EXAMPLE_SCHEMA, RECORD_SCHEMAS, SPLITS, example_id
from tasks.schemas import ExampleModel
from tasks.transform.clean import clean_text
from tasks.transform.conversations import (
    PREFERENCE_COLUMNS,
    assign_roles,
    build_turns,
    conversation_candidates,
    messages_from_records,
    preference_pairs,
)
from tasks.transform.dedup import exact_duplicate_of, near_duplicates
from tasks.transform.documents import TeacherUse, chunk_document, document_units, qa_candidates, text_candidates
from tasks.transform.exports import write_exports
from tasks.transform.redact import Redactor
from tasks.transform.report import Step, render_report, token_histogram
from tasks.transform.split import assign_splits
from tasks.transform.tokens import OverLengthError, TokenCounter, fit_to_length

__all__ = ["OverLengthError", "TransformConfigError", "build_examples"]

STAGE = "transform"
TEXT_COLUMNS = {
    "crm": ["text"],
    "whatsapp": ["text"],
    "pdf": ["text"],
    "transcript": ["text", "speaker"],
    "dataset": ["system", "instruction", "input", "output"],
    "preference": ["prompt", "chosen", "rejected"],
}
# a candidate is an Example's content and provenance, plus what transform needs to split, dedup and pair it
CANDIDATE_COLUMNS = {
    **{c: EXAMPLE_SCHEMA[c] for c in ("system", "instruction", "input", "output", "source", "origin")},
    "group": pl.String,
    "key_text": pl.String,
    "outcome": pl.String,
}
DUPLICATE_SCHEMA = {
    "step": pl.String,
    "source": pl.String,
    "origin": pl.String,
    "split": pl.String,
    "duplicate_of": pl.String,
    "duplicate_of_split": pl.String,
    "similarity": pl.Float64,
}
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}


class TransformConfigError(ValueError):
    """A `data.transform` setting has a value the stage does not know."""


def _check_config(cfg: TransformConfig) -> None:
    choices = {
        "over_length": ("truncate", "drop", "fail"),
        "documents_as": ("qa", "text"),
        "document_answers": ("teacher", "quote"),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise TransformConfigError(f"data.transform.{name}={getattr(cfg, name)!r}: use one of {allowed}")
    if not 0 < cfg.dedup_threshold <= 1:
        raise TransformConfigError(f"data.transform.dedup_threshold={cfg.dedup_threshold}: use a value in (0, 1]")


def load_records(records_dir: Path) -> dict[str, pl.DataFrame]:
    """Every record kind as a frame (empty with the kind's columns when its file is absent)."""
    frames = {}
    for kind, schema in RECORD_SCHEMAS.items():
        path = Path(records_dir) / f"{kind}.parquet"
        frames[kind] = pl.read_parquet(path).select(list(schema)) if path.is_file() else pl.DataFrame(schema=schema)
    return frames


def clean_and_redact(records: dict[str, pl.DataFrame], redactor: Redactor) -> dict[str, pl.DataFrame]:
    """Every free-text column cleaned, then redacted (counts accumulate on the redactor)."""
    out = {}
    for kind, frame in records.items():
        frame = frame.with_columns([clean_text(c) for c in TEXT_COLUMNS[kind]])
        for column in TEXT_COLUMNS[kind]:
            frame = redactor.redact_column(frame, column)
        out[kind] = frame
    return out


def _candidates(rows: list[dict[str, Any]] | pl.DataFrame) -> pl.DataFrame:
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, schema_overrides=CANDIDATE_COLUMNS)
    missing = [pl.lit(None, t).alias(c) for c, t in CANDIDATE_COLUMNS.items() if c not in frame.columns]
    return frame.with_columns(missing).select(list(CANDIDATE_COLUMNS)).cast(CANDIDATE_COLUMNS)  # type: ignore[arg-type]


def dataset_candidates(dataset: pl.DataFrame) -> pl.DataFrame:
    """Instruction-dataset rows are candidates as they are (a ShareGPT conversation is one group)."""
    return _candidates(
        dataset.select(
            "system",
            "instruction",
            pl.col("input").fill_null(""),
            "output",
            "source",
            "origin",
            pl.format("dataset:{}:{}", "file", "line").alias("group"),
            pl.concat_str(["instruction", pl.col("input").fill_null(""), "output"], separator="\n").alias("key_text"),
        )
    )


def _quarantine(rows: pl.DataFrame, reason: str | pl.Expr) -> pl.DataFrame:
    return quarantine_frame(STAGE, rows.drop("key_text", "_rank", strict=False), reason)


def build_examples(
    records_dir: Path,
    data: DataConfig,
    model: ModelConfig,
    teacher: TeacherConfig,
    cache_dir: Path,
    out_dir: Path,
    seed: int,
) -> StageReport:
    """Records → `examples.parquet` (EXAMPLE_SCHEMA), preference pairs, quarantine, exports and report."""
    cfg = data.transform
    _check_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    quarantined: list[pl.DataFrame] = []
    steps: list[Step] = []

    # 1. clean and redact the records: nothing below sees personal data
    records = load_records(records_dir)
    for kind, frame in records.items():
        metrics[f"records_{kind}"] = frame.height
    metrics["records_in"] = sum(f.height for f in records.values())
    redactor = Redactor(cfg.redact_names, cfg.phone_region)
    records = clean_and_redact(records, redactor)
    tokenizer = load_tokenizer(model, cache_dir)

    # 2-3. candidates, each tagged with its group (conversation / document / dataset row)
    messages = assign_roles(messages_from_records(records["crm"], records["whatsapp"]), data.extract.assistant_senders)
    metrics["records_not_text"] = messages.filter(pl.col("kind") != "text").height
    turns = build_turns(messages, cfg)
    metrics["conversations"] = messages["group"].n_unique()
    answered = messages.filter(pl.col("role") == "assistant")["group"].n_unique()
    metrics["conversations_without_assistant"] = metrics["conversations"] - answered
    metrics["sessions"] = turns["session_key"].n_unique()
    metrics["turns"] = turns.height
    conversations = _candidates(conversation_candidates(turns, cfg))
    datasets = dataset_candidates(records["dataset"])

    docs = document_units(records["pdf"], records["transcript"])
    chunks = [c for (source, file), units in docs.items() for c in chunk_document(tokenizer, source, file, units, cfg)]
    metrics["documents"] = len(docs)
    metrics["chunks"] = len(chunks)
    use = TeacherUse()
    slot_failures: list[dict[str, object]] = []
    if cfg.documents_as == "text":
        documents = _candidates(text_candidates(chunks, cfg))
    elif chunks:
        from tasks.teachers import make_teacher  # loads a model: only when there are chunks to ask about

        writer = make_teacher(teacher, model, cache_dir)
        rows, slot_failures = qa_candidates(chunks, writer, cfg, seed, use)
        documents = _candidates(rows)
    else:
        documents = _candidates([])
    for name, frame in (("conversation", conversations), ("dataset", datasets), ("document", documents)):
        metrics[f"candidates_{name}"] = frame.height

    candidates = pl.concat([conversations, datasets, documents])
    groups = candidates["group"].to_list() + [str(f["group"]) for f in slot_failures]
    split_of = assign_splits(groups, cfg.split)
    candidates = candidates.with_columns(
        pl.col("group").replace_strict(split_of, return_dtype=pl.String).alias("split")
    )
    if slot_failures:
        quarantined.append(quarantine_rows(STAGE, slot_failures))
    steps.append(Step("assemble", candidates.height + len(slot_failures), candidates.height, len(slot_failures)))

    # 4a. clean: every candidate column tidy; empty instructions and too-short replies go to quarantine
    candidates = candidates.with_columns([clean_text(c) for c in ("instruction", "input", "output")])
    reason = (
        pl.when(pl.col("instruction").fill_null("") == "")
        .then(pl.lit("instruction_empty"))
        .when(pl.col("output").fill_null("").str.len_chars() < max(cfg.min_output_chars, 1))
        .then(pl.lit(f"output_shorter_than_{max(cfg.min_output_chars, 1)}_chars"))
    )
    candidates = candidates.with_columns(reason.alias("_reason"))
    bad = candidates.filter(pl.col("_reason").is_not_null())
    quarantined.append(_quarantine(bad.drop("_reason"), bad["_reason"]))
    steps.append(Step("clean", candidates.height, candidates.height - bad.height, bad.height))
    candidates = candidates.filter(pl.col("_reason").is_null()).drop("_reason")

    # preference pairs come from won vs lost conversations, so they are taken before the outcome filter
    pairs = preference_pairs(candidates, cfg) if cfg.preference_pairs else pl.DataFrame(schema=PREFERENCE_COLUMNS)
    pairs = pl.concat([pairs, _preference_records(records["preference"], cfg)])
    pairs = pairs.with_columns(
        pl.struct("system", "prompt", "chosen", "rejected")
        .map_elements(lambda r: example_id(r["system"], r["prompt"], r["chosen"], r["rejected"]), pl.String)
        .alias("id")
    ).unique("id", keep="first", maintain_order=True)
    pairs.select("id", *PREFERENCE_COLUMNS).write_parquet(out_dir / "preference.parquet")
    metrics["preference_pairs"] = pairs.height

    # 4b. outcomes: keep only the conversations whose outcome is configured (when any is)
    if cfg.keep_outcomes:
        kept = [o.lower() for o in cfg.keep_outcomes]
        drop = pl.col("outcome").is_not_null() & ~pl.col("outcome").is_in(kept)
        bad = candidates.filter(drop)
        quarantined.append(_quarantine(bad, pl.format("outcome_not_kept:{}", pl.col("outcome"))))
        steps.append(Step("outcome", candidates.height, candidates.height - bad.height, bad.height))
        candidates = candidates.filter(~drop)

    # 4c-d. dedup in priority order: test, val, train (a copy of an evaluation row leaves train)
    candidates = candidates.with_columns(pl.col("split").replace_strict(SPLIT_RANK).alias("_rank")).sort(
        "_rank", maintain_order=True
    )
    duplicates: list[pl.DataFrame] = []
    for step, finder in (
        ("exact_dedup", lambda texts: (exact_duplicate_of(texts), None)),
        ("near_dedup", lambda texts: _near(texts, cfg)),
    ):
        first, similarity = finder(candidates["key_text"])
        is_dup = first != np.arange(candidates.height)
        duplicates.append(_duplicates(step, candidates, first, similarity, is_dup))
        steps.append(Step(step, candidates.height, int((~is_dup).sum()), 0, int(is_dup.sum())))
        candidates = candidates.filter(pl.Series(~is_dup))

    # 4e. tokens and the over-length policy
    candidates, length_step = _apply_length_policy(candidates, cfg, tokenizer, quarantined, duplicates, metrics)
    steps.append(length_step)

    # 5. write
    examples = (
        candidates.with_columns(
            pl.lit(False).alias("synthetic"),
            pl.lit(None, pl.String).alias("parent_id"),
            pl.lit(None, pl.Float64).alias("score"),
        )
        .sort(pl.col("split").replace_strict({s: i for i, s in enumerate(SPLITS)}), "group", "origin")
        .select(list(EXAMPLE_SCHEMA))
        .cast(EXAMPLE_SCHEMA)  # type: ignore[arg-type]
    )
    ExampleModel.validate(examples)
    examples.write_parquet(out_dir / "examples.parquet")
    n_quarantined = write_quarantine(quarantined, out_dir / "quarantine.parquet")
    dups = pl.concat(duplicates) if duplicates else pl.DataFrame(schema=DUPLICATE_SCHEMA)
    dups.write_parquet(out_dir / "duplicates.parquet")

    for step in steps:
        step.check()
        for part in ("rows_in", "rows_out", "rows_quarantined", "rows_deduplicated"):
            metrics[f"{step.name}_{part.removeprefix('rows_')}"] = getattr(step, part)
    for kind in ("email", "cnpj", "cpf", "phone", "card", "name"):
        metrics[f"redacted_{kind}"] = redactor.counts.get(kind, 0)
    for split in SPLITS:
        metrics[f"examples_{split}"] = examples.filter(pl.col("split") == split).height
    cost_line = _budget(examples, cfg, teacher, use, metrics)

    artifacts = {
        "examples": "examples.parquet",
        "preference": "preference.parquet",
        "quarantine": "quarantine.parquet",
        "duplicates": "duplicates.parquet",
    }
    artifacts.update({f"exports/{k}": f"exports/{v}" for k, v in write_exports(examples, out_dir / "exports").items()})
    token_histogram(examples.select("split", "n_tokens"), cfg.max_tokens, out_dir / "token_lengths.png")
    quarantine = pl.read_parquet(out_dir / "quarantine.parquet")
    report_md = render_report(steps, metrics, quarantine, examples, cost_line)
    (out_dir / "report.md").write_text(report_md)
    artifacts.update({"report": "report.md", "token_lengths": "token_lengths.png"})
    _prefect_artifact(report_md)

    report = StageReport(
        STAGE,
        rows_in=steps[0].rows_in,
        rows_out=examples.height,
        rows_quarantined=n_quarantined,
        rows_deduplicated=dups.height,
        metrics=metrics,
        artifacts=artifacts,
        notes=[cost_line],
    )
    return report.check()


def _near(texts: pl.Series, cfg: TransformConfig) -> tuple[np.ndarray, np.ndarray]:
    found = near_duplicates(texts, cfg.dedup_threshold, cfg.dedup_num_perm)
    first = np.where(found.duplicate_of >= 0, found.duplicate_of, np.arange(len(texts)))
    return first, found.similarity


def _duplicates(
    step: str, frame: pl.DataFrame, first: np.ndarray, similarity: np.ndarray | None, is_dup: np.ndarray
) -> pl.DataFrame:
    """Rows of `frame` marked duplicate, with the origin and split of the row they duplicate."""
    rows = np.flatnonzero(is_dup)
    kept = first[rows]
    return pl.DataFrame(
        {
            "step": [step] * rows.size,
            "source": frame["source"].gather(rows),
            "origin": frame["origin"].gather(rows),
            "split": frame["split"].gather(rows),
            "duplicate_of": frame["origin"].gather(kept),
            "duplicate_of_split": frame["split"].gather(kept),
            "similarity": similarity[rows] if similarity is not None else np.ones(rows.size),
        },
        schema=DUPLICATE_SCHEMA,
    )


def _apply_length_policy(
    candidates: pl.DataFrame,
    cfg: TransformConfig,
    tokenizer: Any,
    quarantined: list[pl.DataFrame],
    duplicates: list[pl.DataFrame],
    metrics: dict[str, float],
) -> tuple[pl.DataFrame, Step]:
    """n_tokens for every row; rows over `max_tokens` are truncated, dropped (quarantined) or fail the run."""
    counter = TokenCounter(tokenizer)
    n_in = candidates.height
    candidates = candidates.with_columns(pl.Series("n_tokens", counter.count(candidates), dtype=pl.Int64))
    over = candidates.filter(pl.col("n_tokens") > cfg.max_tokens)
    metrics["over_length"] = over.height
    metrics["truncated"] = 0
    n_quarantined = 0
    if over.height and cfg.over_length == "fail":
        first = over.row(0, named=True)
        raise OverLengthError(
            f"{over.height} example(s) exceed data.transform.max_tokens={cfg.max_tokens}, e.g. {first['origin']} "
            f"({first['n_tokens']} tokens). Raise max_tokens, lower context_turns/chunk_tokens, or set "
            "data.transform.over_length=truncate|drop."
        )
    if over.height and cfg.over_length == "drop":
        quarantined.append(_quarantine(over, pl.format("over_length:{}>{}", "n_tokens", pl.lit(cfg.max_tokens))))
        n_quarantined = over.height
        candidates = candidates.filter(pl.col("n_tokens") <= cfg.max_tokens)
    elif over.height:
        fitted, failed = [], []
        for row in over.iter_rows(named=True):
            cut = fit_to_length(tokenizer, row, cfg.max_tokens)
            (fitted if cut is not None else failed).append(cut if cut is not None else row)
        if failed:
            quarantined.append(_quarantine(pl.DataFrame(failed, schema=over.schema), "over_length_untruncatable"))
            n_quarantined = len(failed)
        metrics["truncated"] = len(fitted)
        fixed = pl.DataFrame(fitted, schema=over.schema) if fitted else over.clear()
        if fixed.height:
            fixed = fixed.with_columns(pl.Series("n_tokens", counter.count(fixed), dtype=pl.Int64))
        candidates = pl.concat([candidates.filter(pl.col("n_tokens") <= cfg.max_tokens), fixed])
    candidates = candidates.with_columns(
        pl.struct("system", "instruction", "input", "output")
        .map_elements(lambda r: example_id(r["system"], r["instruction"], r["input"], r["output"]), pl.String)
        .alias("id")
    ).sort("_rank", maintain_order=True)
    # truncation can make two rows identical: keep the first, count the rest as duplicates
    dup = candidates.select(pl.col("id").is_duplicated() & ~pl.col("id").is_first_distinct()).to_series()
    if dup.any():
        first = candidates.select(pl.int_range(pl.len()).first().over("id")).to_series().to_numpy()
        duplicates.append(_duplicates("length", candidates, first, None, dup.to_numpy()))
        candidates = candidates.filter(~dup)
    step = Step("length", n_in, candidates.height, n_quarantined, int(dup.sum()))
    return candidates, step


def _preference_records(preference: pl.DataFrame, cfg: TransformConfig) -> pl.DataFrame:
    """Preference records pass through (already cleaned and redacted), split by their own file line."""
    if preference.is_empty():
        return pl.DataFrame(schema=PREFERENCE_COLUMNS)
    keys = [f"preference:{f}:{n}" for f, n in zip(preference["file"], preference["line"], strict=True)]
    split_of = assign_splits(keys, cfg.split)
    return preference.select(
        pl.lit(None, pl.String).alias("system"),
        "prompt",
        "chosen",
        "rejected",
        "source",
        "origin",
        pl.Series("split", [split_of[k] for k in keys], dtype=pl.String),
    )


def _budget(
    examples: pl.DataFrame, cfg: TransformConfig, teacher: TeacherConfig, use: TeacherUse, metrics: dict[str, float]
) -> str:
    """Token totals and the cost line a user reads before training."""
    epochs = float(cfg.budget_epochs) if isinstance(cfg.budget_epochs, int | float) else 1.0
    n = examples["n_tokens"].to_numpy()
    train = int(examples.filter(pl.col("split") == "train")["n_tokens"].sum())
    teacher_cost = (
        use.prompt_tokens * teacher.price_per_1k_prompt_tokens
        + use.completion_tokens * teacher.price_per_1k_completion_tokens
    ) / 1000
    metrics.update(
        tokens_total=int(n.sum()) if n.size else 0,
        tokens_train=train,
        train_tokens_x_epochs=round(train * epochs),
        tokens_mean=float(n.mean()) if n.size else 0.0,
        tokens_p95=float(np.percentile(n, 95)) if n.size else 0.0,
        tokens_max=int(n.max()) if n.size else 0,
        teacher_calls=use.calls,
        teacher_prompt_tokens=use.prompt_tokens,
        teacher_completion_tokens=use.completion_tokens,
        teacher_cost_usd=round(teacher_cost, 6),
    )
    n_train = metrics.get("examples_train", 0)
    return (
        f"Training reads {train:,} tokens per epoch ({int(n_train):,} train examples) × {epochs:g} epochs = "
        f"{round(train * epochs):,} tokens. Building documents' questions took {use.calls} teacher calls "
        f"({use.prompt_tokens:,} prompt + {use.completion_tokens:,} completion tokens, ${teacher_cost:.4f})."
    )


def _prefect_artifact(markdown: str) -> None:
    """Show the report in the Prefect UI when running inside a flow (no-op in plain calls and tests)."""
    if "prefect" not in sys.modules:  # not imported: certainly no flow around us (and no import cost)
        return
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import get_run_context

        get_run_context()
    except Exception:  # no Prefect run around us
        return
    create_markdown_artifact(markdown, key="transform-data-report", description="afinar data report (transform)")
