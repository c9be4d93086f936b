"""Documents (PDF pages, transcript cues) → token-aware chunks → question/answer or plain-text candidates.

Chunks are packed from whole paragraphs (PDF) or cues (transcripts) up to `chunk_tokens` tokens of
the model's own tokenizer, with about `chunk_overlap_tokens` of the previous chunk repeated; a
unit longer than a chunk is cut at sentence ends, then at token boundaries. In `qa` mode the
teacher writes `questions_per_chunk` short questions per chunk and answers each one from the
chunk alone (or the answer is quoted from the chunk, `document_answers: quote`); every chunk is
already redacted when it reaches the teacher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl
from rapidfuzz import fuzz
from transformers import PreTrainedTokenizerBase

from tasks.config.data import TransformConfig
from tasks.teachers import Teacher
from tasks.transform.tokens import token_lengths

SEPARATOR_TOKENS = 1
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
QUESTION_PREFIX = re.compile(r"^\s*(?:[-*•]|\d+[.)]|q\d*[:.)]|question\s*\d*[:.)]|pergunta\s*\d*[:.)])\s*", re.I)


@dataclass
class Unit:
    """A paragraph or cue, with its locator (`page=3`, `cue=12`) and token length."""

    text: str
    locator: str
    n_tokens: int = 0


@dataclass
class Chunk:
    source: str
    file: str
    group: str
    text: str
    locators: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        first, last = self.locators[0], self.locators[-1]
        key, start = first.split("=", 1)
        end = last.split("=", 1)[1]
        return f"{self.file}#{key}={start}" if start == end else f"{self.file}#{key}={start}-{end}"


def document_units(pdf: pl.DataFrame, transcript: pl.DataFrame) -> dict[tuple[str, str], list[Unit]]:
    """(source, file) → its units in reading order: PDF paragraphs (blank-line separated), transcript cues."""
    docs: dict[tuple[str, str], list[Unit]] = {}
    for row in pdf.sort(["file", "page"]).iter_rows(named=True):
        for paragraph in re.split(r"\n\s*\n", row["text"]):
            if paragraph.strip():
                docs.setdefault(("pdf", row["file"]), []).append(Unit(unwrap_lines(paragraph), f"page={row['page']}"))
    for row in transcript.sort(["file", "cue"]).iter_rows(named=True):
        speaker = (row["speaker"] or "").strip()
        text = f"{speaker}: {row['text']}" if speaker else row["text"]
        docs.setdefault(("transcript", row["file"]), []).append(Unit(text.strip(), f"cue={row['cue']}"))
    return docs


def _fit_units(tokenizer: PreTrainedTokenizerBase, units: list[Unit], limit: int) -> list[Unit]:
    """Units no longer than `limit` tokens: long ones cut at sentence ends, then at token boundaries."""
    for unit, n in zip(units, token_lengths(tokenizer, [u.text for u in units]), strict=True):
        unit.n_tokens = int(n)
    fitted: list[Unit] = []
    for unit in units:
        if unit.n_tokens <= limit:
            fitted.append(unit)
            continue
        sentences = [s for s in SENTENCE_END.split(unit.text) if s.strip()]
        for sentence, n in zip(sentences, token_lengths(tokenizer, sentences), strict=True):
            if n <= limit:
                fitted.append(Unit(sentence, unit.locator, int(n)))
                continue
            ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
            for start in range(0, len(ids), limit):
                piece = tokenizer.decode(ids[start : start + limit]).strip()
                fitted.append(Unit(piece, unit.locator, len(ids[start : start + limit])))
    return fitted


def chunk_document(
    tokenizer: PreTrainedTokenizerBase, source: str, file: str, units: list[Unit], cfg: TransformConfig
) -> list[Chunk]:
    """Greedy packing of whole units up to `chunk_tokens`, each chunk opening with ~`chunk_overlap_tokens`."""
    units = _fit_units(tokenizer, units, cfg.chunk_tokens - SEPARATOR_TOKENS)
    for unit in units:
        unit.n_tokens += SEPARATOR_TOKENS  # the newline(s) joining it to its neighbour
    chunks: list[Chunk] = []
    current: list[Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.n_tokens > cfg.chunk_tokens:
            chunks.append(_chunk(source, file, current))
            overlap: list[Unit] = []
            for previous in reversed(current):
                if sum(u.n_tokens for u in overlap) + previous.n_tokens > cfg.chunk_overlap_tokens:
                    break
                overlap.insert(0, previous)
            if sum(u.n_tokens for u in overlap) + unit.n_tokens > cfg.chunk_tokens:
                overlap = []
            current, size = overlap, sum(u.n_tokens for u in overlap)
        current.append(unit)
        size += unit.n_tokens
    if current:
        chunks.append(_chunk(source, file, current))
    return chunks


def _chunk(source: str, file: str, units: list[Unit]) -> Chunk:
    separator = "\n" if source == "transcript" else "\n\n"
    return Chunk(source, file, f"{source}:{file}", separator.join(u.text for u in units), [u.locator for u in units])


def parse_questions(text: str, limit: int) -> list[str]:
    """The first `limit` questions in a teacher's reply (one per line; numbering and bullets removed)."""
    questions = []
    for line in text.splitlines():
        line = QUESTION_PREFIX.sub("", line).strip().strip('"').strip()
        if len(line) >= 8 and line.endswith("?"):
            questions.append(line)
    return questions[:limit]


def quote_answer(question: str, chunk: str, max_sentences: int = 2) -> str:
    """The chunk's sentences closest to the question, in their original order (an extractive answer).

    Sentences the question merely repeats (a teacher often copies a line of the text) are not answers.
    """
    sentences = [s.strip() for s in SENTENCE_END.split(chunk) if s.strip()]
    asked = question.lower()
    candidates = [i for i, s in enumerate(sentences) if s.rstrip(".?!…").lower() not in asked]
    ranked = sorted(candidates, key=lambda i: -fuzz.token_set_ratio(question, sentences[i]))
    return " ".join(sentences[i] for i in sorted(ranked[:max_sentences]))


def unwrap_lines(paragraph: str) -> str:
    """A PDF paragraph's hard line breaks joined (hyphenated words too); list items keep their own line."""
    paragraph = re.sub(r"(?<=\w)-\n(?=[a-zà-ÿ])", "", paragraph)
    return re.sub(r"\s*\n\s*(?!(?:[-*•]|\d+[.)])\s)", " ", paragraph).strip()


@dataclass
class TeacherUse:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


def qa_candidates(
    chunks: list[Chunk], teacher: Teacher, cfg: TransformConfig, seed: int, use: TeacherUse
) -> tuple[list[dict[str, str | None]], list[dict[str, object]]]:
    """(candidates, quarantined slots): `questions_per_chunk` slots per chunk, each filled or quarantined."""
    candidates: list[dict[str, str | None]] = []
    failed: list[dict[str, object]] = []
    n = cfg.questions_per_chunk
    for index, chunk in enumerate(chunks):
        ask = [
            {
                "role": "user",
                "content": cfg.question_prompt.format(n=n, text=chunk.text),
            }
        ]
        reply = teacher.complete(ask, max_tokens=32 * n, temperature=cfg.question_temperature, seed=seed + index)
        use.add(reply.prompt_tokens, reply.completion_tokens)
        questions = parse_questions(reply.text, n)
        for slot in range(n):
            base = {"source": chunk.source, "origin": chunk.origin, "group": chunk.group}
            if slot >= len(questions):
                failed.append(
                    {
                        **base,
                        "reason": "teacher_wrote_no_question",
                        "payload": {"chunk": chunk.text, "teacher": reply.text},
                    }
                )
                continue
            question = questions[slot]
            if cfg.document_answers == "quote":
                answer = quote_answer(question, chunk.text)
            else:
                prompt = [
                    {"role": "system", "content": cfg.answer_prompt},
                    {"role": "user", "content": f"Document:\n{chunk.text}\n\nQuestion: {question}"},
                ]
                done = teacher.complete(prompt, max_tokens=cfg.answer_max_tokens, temperature=0.0, seed=seed + index)
                use.add(done.prompt_tokens, done.completion_tokens)
                answer = done.text.strip()
            candidates.append(
                {
                    **base,
                    "system": None,
                    "instruction": f"{cfg.document_instruction}\n\n{question}",
                    "input": chunk.text,
                    "output": answer,
                    "key_text": f"{question}\n{answer}",
                }
            )
    return candidates, failed


def text_candidates(chunks: list[Chunk], cfg: TransformConfig) -> list[dict[str, str | None]]:
    """Plain-text candidates for continued pre-training: the chunk is the target."""
    return [
        {
            "source": c.source,
            "origin": c.origin,
            "group": c.group,
            "system": None,
            "instruction": cfg.text_instruction,
            "input": "",
            "output": c.text,
            "key_text": c.text,
        }
        for c in chunks
    ]
