"""`data` group: which sources to read, how their columns and speakers map, and how records become examples."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CrmColumns:
    """The user's column names in a CRM export (None: not present)."""

    text: str = "text"
    author: str | None = "author"
    timestamp: str | None = "timestamp"
    conversation: str | None = "conversation_id"
    outcome: str | None = "outcome"


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


@dataclass
class DataConfig:
    name: str = "demo"
    paths: list[str] = field(default_factory=lambda: ["samples"])
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
