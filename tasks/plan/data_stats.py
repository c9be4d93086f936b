"""What the planner knows about the data: how many examples, how long, how clean, in which language.

Data is read the way a run reads it: raw files through the extract stage (`extract_sources`), or a
stage folder's records, or a run's `examples.parquet`. From records, examples are *estimated* the
way transform builds them (one per assistant reply with earlier turns as context, one per dataset
row, questions per document chunk), and tokens are counted with the embedded model's tokenizer
under the shared chat template: other tokenizers differ by roughly ±20%, so counts are approximate.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from transformers import PreTrainedTokenizerBase

from tasks.chat_format import end_of_turn_ids, training_ids
from tasks.config.data import DataConfig

DOCUMENT_KINDS = ("pdf", "transcript")
CONVERSATION_KINDS = ("crm", "whatsapp")
# short function words: enough to tell the languages afinar's users write in apart
STOPWORDS = {
    "pt": {"não", "você", "para", "com", "uma", "isso", "está", "obrigado", "obrigada", "também", "mas", "por",
           "que", "de", "o", "a", "os", "as", "em", "do", "da", "no", "na", "é", "um", "seu", "sua"},
    "en": {"the", "and", "you", "your", "is", "are", "for", "with", "this", "that", "to", "of", "in", "it",
           "we", "thanks", "please", "can", "will", "have", "not", "a", "on", "be"},
    "es": {"el", "la", "los", "las", "usted", "para", "con", "una", "gracias", "está", "pero", "por", "que",
           "de", "en", "es", "un", "su", "y", "no", "muy", "del", "al"},
}  # fmt: skip
WORD = re.compile(r"\w+", re.UNICODE)


class PlanDataError(ValueError):
    """The planner cannot read the given data (path missing, or nothing usable in it)."""


@dataclass
class DataStats:
    """Counts and token statistics of the (estimated) training examples."""

    source: str  # examples | records
    n_examples: int
    n_train: int
    tokens_mean: float
    tokens_p50: float
    tokens_p95: float
    tokens_max: int
    train_tokens: float
    prompt_tokens_mean: float
    completion_tokens_mean: float
    completion_tokens_p50: float
    target_share: float  # learned tokens over all tokens
    rows_read: int
    rows_quarantined: int
    duplicate_share: float
    document_token_share: float
    kinds: dict[str, int]
    language: str
    language_share: float
    has_system_prompts: bool
    notes: list[str] = field(default_factory=list)

    @property
    def poor_share(self) -> float:
        """Share of rows read that were quarantined plus share of examples whose reply repeats another's."""
        return self.rows_quarantined / max(self.rows_read, 1) + self.duplicate_share

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "poor_share": self.poor_share}


def guess_language(texts: Iterable[str]) -> tuple[str, float]:
    """Most likely language by stopword hits, and its share of all hits ('und' when nothing matched)."""
    hits: Counter[str] = Counter()
    for text in texts:
        for word in WORD.findall(text.lower()):
            for lang, words in STOPWORDS.items():
                if word in words:
                    hits[lang] += 1
    if not hits:
        return "und", 0.0
    lang, count = hits.most_common(1)[0]
    return lang, count / sum(hits.values())


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]) if ordered else 0.0


def _stats_from_rows(
    rows: list[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    source: str,
    n_examples: int,
    n_train: int,
    rows_read: int,
    rows_quarantined: int,
    kinds: dict[str, int],
    max_sample: int,
    notes: list[str],
    n_tokens: list[int] | None = None,
) -> DataStats:
    """Token statistics over a sample of example rows, extrapolated to `n_examples`."""
    if not rows:
        raise PlanDataError("no examples could be built from the data: nothing to plan for")
    step = max(1, len(rows) // max_sample)
    sample = rows[::step]
    eot = end_of_turn_ids(tokenizer)
    totals, prompts, replies = [], [], []
    for row in sample:
        ids, labels = training_ids(tokenizer, row, eot)
        learned = sum(label != -100 for label in labels)
        totals.append(len(ids))
        prompts.append(len(ids) - learned)
        replies.append(learned)
    if n_tokens is not None:  # a run's own counts under the run's model
        totals = n_tokens[::step]
    documents = sum(n for row, n in zip(sample, totals, strict=True) if row.get("source") in DOCUMENT_KINDS)
    if step > 1:
        notes.append(f"token statistics from {len(sample)} of {len(rows)} examples, extrapolated")
    mean = sum(totals) / len(totals)
    outputs = [str(r.get("output") or "") for r in rows]
    duplicate_share = 1 - len(set(outputs)) / len(outputs)
    lang, share = guess_language(outputs[:: max(1, len(outputs) // 500)])
    return DataStats(
        source=source,
        n_examples=n_examples,
        n_train=n_train,
        tokens_mean=mean,
        tokens_p50=_quantile(totals, 0.5),
        tokens_p95=_quantile(totals, 0.95),
        tokens_max=max(totals),
        train_tokens=mean * n_train,
        prompt_tokens_mean=sum(prompts) / len(prompts),
        completion_tokens_mean=sum(replies) / len(replies),
        completion_tokens_p50=_quantile(replies, 0.5),
        target_share=sum(replies) / max(sum(prompts) + sum(replies), 1),
        rows_read=rows_read,
        rows_quarantined=rows_quarantined,
        duplicate_share=duplicate_share,
        document_token_share=documents / max(sum(totals), 1),
        kinds=kinds,
        language=lang,
        language_share=share,
        has_system_prompts=any(r.get("system") for r in rows),
        notes=notes,
    )


def stats_from_examples(path: Path, tokenizer: PreTrainedTokenizerBase, max_sample: int = 2000) -> DataStats:
    """Statistics of a run's `examples.parquet` (its `n_tokens` and `split` as the run computed them)."""
    frame = pl.read_parquet(path)
    missing = {"instruction", "output", "split", "n_tokens"} - set(frame.columns)
    if missing:
        raise PlanDataError(f"{path}: not an examples file, missing columns {sorted(missing)}")
    rows = frame.to_dicts()
    kinds = dict(Counter(str(r.get("source")) for r in rows))
    return _stats_from_rows(
        rows,
        tokenizer,
        source="examples",
        n_examples=frame.height,
        n_train=frame.filter(pl.col("split") == "train").height,
        rows_read=frame.height,
        rows_quarantined=0,
        kinds=kinds,
        max_sample=max_sample,
        notes=[f"examples and token counts from {path}"],
        n_tokens=[int(n) for n in frame["n_tokens"].to_list()],
    )


def _conversation_examples(frame: pl.DataFrame, kind: str, data: DataConfig) -> list[dict[str, Any]]:
    """One example per assistant reply (consecutive messages merged), earlier turns as input."""
    author = "author" if kind == "crm" else "sender"
    if kind == "whatsapp" and "kind" in frame.columns:
        frame = frame.filter(pl.col("kind") == "text")
    frame = frame.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
    sort = [c for c in ("conversation_id", "timestamp", "row", "line") if c in frame.columns]
    examples: list[dict[str, Any]] = []
    assistants = set(data.extract.assistant_senders)
    for (_conv,), chat in frame.sort(sort).group_by(["conversation_id"], maintain_order=True):
        speakers = chat[author].fill_null("").to_list()
        texts = chat["text"].to_list()
        ours = assistants or {Counter(speakers).most_common(1)[0][0]}
        turns: list[tuple[bool, str]] = []
        for speaker, text in zip(speakers, texts, strict=True):
            mine = speaker in ours
            if turns and turns[-1][0] == mine:
                turns[-1] = (mine, f"{turns[-1][1]}\n{text}")
            else:
                turns.append((mine, str(text)))
        for at, (mine, text) in enumerate(turns):
            if mine and at > 0:
                context = turns[max(0, at - data.transform.context_turns) : at]
                examples.append(
                    {
                        "instruction": data.transform.instruction,
                        "input": "\n".join(t for _, t in context),
                        "output": text,
                        "source": kind,
                    }
                )
    return examples


def _document_examples(
    frame: pl.DataFrame, kind: str, data: DataConfig, tokenizer: PreTrainedTokenizerBase
) -> list[dict[str, Any]]:
    """Chunks of `chunk_tokens` (minus overlap) × questions per chunk; the answer is taken as 1/4 chunk."""
    text = "\n".join(str(t) for t in frame["text"].drop_nulls().to_list())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    t = data.transform
    stride = max(1, t.chunk_tokens - t.chunk_overlap_tokens)
    examples = []
    for start in range(0, len(ids), stride):
        chunk = tokenizer.decode(ids[start : start + t.chunk_tokens])
        words = chunk.split()
        for _ in range(t.questions_per_chunk):
            examples.append(
                {
                    "instruction": t.document_instruction,
                    "input": chunk,
                    "output": " ".join(words[: max(1, len(words) // 4)]),
                    "source": kind,
                }
            )
    return examples


def _dataset_examples(frame: pl.DataFrame, kind: str) -> list[dict[str, Any]]:
    if kind == "preference":
        return [
            {"instruction": r["prompt"] or "", "input": "", "output": r["chosen"] or "", "source": kind}
            for r in frame.iter_rows(named=True)
        ]
    return [
        {
            "system": r.get("system"),
            "instruction": r.get("instruction") or "",
            "input": r.get("input") or "",
            "output": r.get("output") or "",
            "source": kind,
        }
        for r in frame.iter_rows(named=True)
    ]


def stats_from_records(
    records_dir: Path,
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    rows_read: int | None = None,
    rows_quarantined: int = 0,
    max_sample: int = 2000,
) -> DataStats:
    """Estimate the examples transform would build from `records/<kind>.parquet`, and their statistics."""
    files = sorted(records_dir.glob("*.parquet"))
    if not files:
        raise PlanDataError(f"{records_dir}: no records/<kind>.parquet files (did extract read anything?)")
    rows: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    n_records = 0
    for file in files:
        kind = file.stem
        frame = pl.read_parquet(file)
        n_records += frame.height
        if frame.height == 0:
            continue
        kinds[kind] = frame.height
        if kind in CONVERSATION_KINDS:
            rows += _conversation_examples(frame, kind, data)
        elif kind in DOCUMENT_KINDS:
            rows += _document_examples(frame, kind, data, tokenizer)
        else:
            rows += _dataset_examples(frame, kind)
    train_share = data.transform.split.get("train", 0.8)
    notes = [
        "examples estimated from records the way transform builds them (not the exact transform output)",
        "tokens counted with the embedded SmolLM2 tokenizer: other models' tokenizers differ by ~±20%",
    ]
    if any(k in DOCUMENT_KINDS for k in kinds):
        notes.append("document examples assume one question per chunk and an answer a quarter of the chunk")
    return _stats_from_rows(
        rows,
        tokenizer,
        source="records",
        n_examples=len(rows),
        n_train=round(len(rows) * train_share),
        rows_read=rows_read if rows_read is not None else n_records,
        rows_quarantined=rows_quarantined,
        kinds=kinds,
        max_sample=max_sample,
        notes=notes,
    )


def read_data_stats(
    paths: list[Path], data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_sample: int = 2000
) -> DataStats:
    """Statistics for what the user pointed at: an examples file or folder, a stage folder, or raw sources."""
    for path in paths:
        if not path.exists():
            raise PlanDataError(f"{path}: no such file or folder (pass the data a run would read)")
    if len(paths) == 1:
        path = paths[0]
        examples = path / "examples.parquet" if path.is_dir() else path
        if examples.suffix == ".parquet" and examples.is_file():
            columns = pl.read_parquet_schema(examples)
            if "n_tokens" in columns:
                return stats_from_examples(examples, tokenizer, max_sample)
        if path.is_dir() and (path / "records").is_dir():
            return stats_from_records(path / "records", data, tokenizer, max_sample=max_sample)
    from tasks.extract import extract_sources  # the extract stage itself, so the plan reads what a run reads

    with tempfile.TemporaryDirectory(prefix="afinar-plan-") as tmp:
        report = extract_sources(paths, data.extract, Path(tmp))
        return stats_from_records(
            Path(tmp) / "records",
            data,
            tokenizer,
            rows_read=report.rows_in,
            rows_quarantined=report.rows_quarantined,
            max_sample=max_sample,
        )
