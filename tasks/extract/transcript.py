"""Transcripts (WebVTT and SRT) → `transcript` records: cues cleaned of markup and merged into readable segments.

Cue settings, NOTE/STYLE/REGION blocks, inline timestamps and formatting tags are dropped; the
speaker comes from a `<v Name>` voice tag (or a leading "Name:" in SRT); consecutive cues of the
same speaker merge until a sentence ends, a pause, or the segment is long enough.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import polars as pl

from tasks.extract.detect import clean_line
from tasks.records import RECORD_SCHEMAS

TIMING = re.compile(
    r"^\s*(?P<start>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*(?P<end>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})"
)
VOICE = re.compile(r"<v(?:\.[\w.-]+)*\s+([^>]+)>")
TAGS = re.compile(r"</?[a-zA-Z][^>]*>|<\d{1,2}(?::\d{2}){1,2}[.,]\d{3}>")
SRT_SPEAKER = re.compile(r"^(?:\[(?P<b>[A-ZÀ-Ý][^\]]{0,39})\]:?|(?P<n>[A-ZÀ-Ý][\w.'() -]{0,30}?):)\s+")
MAX_GAP_S = 2.0
MAX_SEGMENT_CHARS = 600
SENTENCE_END = (".", "?", "!", "…", '."', '?"', '!"')


@dataclass
class Cue:
    number: int
    start_s: float
    end_s: float
    speaker: str | None
    text: str


@dataclass
class TranscriptResult:
    """Merged segments as records; cues that could not be read as quarantine rows."""

    records: pl.DataFrame
    quarantine: list[dict[str, object]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def seconds(stamp: str) -> float:
    """`01:02:03.456`, `02:03,456` → seconds."""
    parts = stamp.replace(",", ".").split(":")
    total = 0.0
    for part in parts:
        total = total * 60 + float(part)
    return total


def clean_cue_text(lines: list[str], srt: bool) -> tuple[str | None, str]:
    """(speaker, plain text) of a cue's payload lines: voice tags read, other tags and entities removed."""
    speaker = None
    out: list[str] = []
    for line in lines:
        voice = VOICE.search(line)
        if voice:
            speaker = speaker or voice.group(1).strip()
        plain = html.unescape(TAGS.sub("", line)).strip()
        plain = re.sub(r"\{\\[^}]*\}", "", plain)  # SRT/ASS override codes such as {\an8}
        if srt and not out:
            named = SRT_SPEAKER.match(plain)
            if named:
                speaker = speaker or (named.group("b") or named.group("n")).strip()
                plain = plain[named.end() :]
        if plain:
            out.append(plain)
    return speaker, " ".join(out)


def parse_cues(text: str, name: str, srt: bool) -> tuple[list[Cue], list[dict[str, object]]]:
    """Cues of a WebVTT/SRT text (number = position in the file, 1-based) and quarantined broken blocks."""
    blocks = re.split(r"\n[ \t]*\n", clean_line(text).replace("\r\n", "\n").replace("\r", "\n").strip())
    cues: list[Cue] = []
    bad: list[dict[str, object]] = []
    number = 0
    for block in blocks:
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines or lines[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        timing_at = next((i for i, ln in enumerate(lines[:3]) if "-->" in ln), None)
        number += 1
        origin = f"{name}#cue={number}"
        if timing_at is None:
            bad.append({"source": "transcript", "origin": origin, "reason": "block without a 'start --> end' line",
                        "payload": block})  # fmt: skip
            continue
        match = TIMING.match(lines[timing_at])
        if not match:
            bad.append({"source": "transcript", "origin": origin, "reason": "unreadable cue timing",
                        "payload": block})  # fmt: skip
            continue
        speaker, plain = clean_cue_text(lines[timing_at + 1 :], srt)
        if "\ufffd" in plain:
            reason = "bytes invalid in the file's encoding; re-export as UTF-8"
            bad.append({"source": "transcript", "origin": origin, "reason": reason, "payload": block})
            continue
        if not plain:
            bad.append({"source": "transcript", "origin": origin, "reason": "cue without text", "payload": block})
            continue
        cues.append(Cue(number, seconds(match.group("start")), seconds(match.group("end")), speaker, plain))
    return cues, bad


def merge_cues(cues: list[Cue]) -> list[Cue]:
    """Merge consecutive cues of one speaker into segments; rolling captions' repeated lines are kept once."""
    segments: list[Cue] = []
    previous = ""
    for cue in cues:
        text = cue.text
        if previous and text.startswith(previous):  # rolling captions repeat the previous cue's line first
            text = text[len(previous) :].strip()
        previous = cue.text
        last = segments[-1] if segments else None
        if (
            last is not None
            and cue.speaker == last.speaker
            and cue.start_s - last.end_s <= MAX_GAP_S
            and len(last.text) + len(text) < MAX_SEGMENT_CHARS
            and not (last.text.endswith(SENTENCE_END) and len(last.text) > 200)
        ):
            last.text = f"{last.text} {text}".strip()
            last.end_s = max(last.end_s, cue.end_s)
            continue
        segments.append(Cue(cue.number, cue.start_s, cue.end_s, cue.speaker, text or cue.text))
    return segments


def parse_transcript(text: str, name: str, srt: bool) -> TranscriptResult:
    """Parse a WebVTT or SRT text into merged segments (origin `name#cue=N` of the segment's first cue)."""
    cues, bad = parse_cues(text, name, srt)
    segments = merge_cues(cues)
    rows = [
        {"source": "transcript", "origin": f"{name}#cue={s.number}", "file": name, "cue": s.number,
         "start_s": s.start_s, "end_s": s.end_s, "speaker": s.speaker, "text": s.text}
        for s in segments
    ]  # fmt: skip
    info = {"format": "srt" if srt else "webvtt", "cues": len(cues), "cues_merged": len(cues) - len(segments)}
    return TranscriptResult(pl.DataFrame(rows, schema=RECORD_SCHEMAS["transcript"]), bad, info)
