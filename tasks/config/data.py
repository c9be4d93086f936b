"""`data` group: which sources to read, how their columns and speakers map, and how records become examples."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import II


@dataclass
class CrmColumns:
    """The user's column names in a CRM export (None: not present)."""

    text: str = "text"
    author: str | None = "author"
    timestamp: str | None = "timestamp"
    conversation: str | None = "conversation_id"
    outcome: str | None = "outcome"
    # strptime format of the timestamp column (e.g. "%d/%m/%Y %H:%M"); None: detected from the values
    timestamp_format: str | None = None


@dataclass
class ExtractConfig:
    crm: CrmColumns = field(default_factory=CrmColumns)
    # WhatsApp/CRM authors that are "us" (the assistant side); empty: the most active sender of each chat
    assistant_senders: list[str] = field(default_factory=list)
    max_archive_bytes: int = 2_000_000_000
    max_archive_files: int = 10_000


@dataclass
class ValidateConfig:
    max_quarantine_share: float = 0.5


@dataclass
class TransformConfig:
    instruction: str = "Reply to the customer as our sales assistant would."
    document_instruction: str = "Answer the question using the document."
    context_turns: int = 6
    session_gap_minutes: int = 360
    min_output_chars: int = 2
    keep_outcomes: list[str] = field(default_factory=list)  # empty: keep every conversation
    preference_pairs: bool = True
    chunk_tokens: int = 256
    chunk_overlap_tokens: int = 32
    documents_as: str = "qa"  # qa | text
    questions_per_chunk: int = 1
    redact_names: list[str] = field(default_factory=list)
    dedup_threshold: float = 0.8
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    max_tokens: int = 512
    over_length: str = "truncate"  # truncate | drop | fail
    # how context turns are labelled in `input` (roles, never people's names)
    user_label: str = "Customer"
    assistant_label: str = "Agent"
    # CRM outcomes (lower-cased) that mark a conversation as having worked / not worked, for preference pairs
    good_outcomes: list[str] = field(default_factory=lambda: ["won", "ganho", "ganha", "good", "positive"])
    bad_outcomes: list[str] = field(default_factory=lambda: ["lost", "perdido", "perdida", "bad", "negative"])
    pair_min_similarity: float = 70.0  # rapidfuzz token_set_ratio between the two customer messages
    # quote: the chunk's sentences closest to the question (faithful, no extra call); teacher: the teacher answers
    document_answers: str = "quote"  # quote | teacher
    question_temperature: float = 0.0  # greedy questions: small teachers stay on the text
    # {text}: the (redacted) chunk, {n}: questions_per_chunk
    question_prompt: str = (
        "Text:\n{text}\n\nWrite {n} question(s) that a customer could ask about this text. "
        "Reply with the question(s) only."
    )
    answer_prompt: str = "Answer the question using only the document. Keep the document's own wording; be brief."
    answer_max_tokens: int = 96
    text_instruction: str = "Continue the document."  # documents_as: text
    phone_region: str = "BR"  # region for phone numbers written without a country code
    dedup_num_perm: int = 128
    # epochs the budget line multiplies by (follows the train group unless set)
    budget_epochs: float = II("train.epochs")


@dataclass
class DataConfig:
    name: str = "demo"
    paths: list[str] = field(default_factory=lambda: ["samples"])
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
