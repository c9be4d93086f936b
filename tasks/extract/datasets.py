"""Existing datasets → `dataset` records (one per assistant turn) or `preference` records.

Reads alpaca (`instruction`/`input`/`output`), ShareGPT (`conversations` of `from`/`value`, system turns
included), OpenAI chat (`messages` of `role`/`content`), prompt/completion, and prompt/chosen/rejected
preference pairs, as a JSON array or JSON Lines. Malformed rows are quarantined with their line number,
with the checks of OpenAI's data-preparation guide (missing keys, unknown roles, no assistant turn...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks.extract.errors import CorruptFileError
from tasks.records import RECORD_SCHEMAS

ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "tool": "tool", "function": "tool",
    "observation": "tool", "function_call": "assistant",
}  # fmt: skip


class MalformedRow(ValueError):
    """A dataset row that does not have the shape its format needs; the message says what is wrong."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


@dataclass
class DatasetResult:
    """Rows of a dataset file: records of its kind and quarantined malformed rows."""

    records: pl.DataFrame
    quarantine: list[dict[str, object]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def load_json_array(text: str, name: str) -> list[Any]:
    """The items of a JSON array document; a truncated or other document fails saying what to do."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(
            f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
            "the file may be truncated — export it again"
        ) from exc
    if not isinstance(items, list):
        raise CorruptFileError(f"{name}: expected a JSON array of rows at the top level")
    return items


def json_line(line: str | bytes) -> Any:
    """The JSON value on one JSON Lines line, or a MalformedRow saying why there is none."""
    try:
        return json.loads(line)
    except UnicodeDecodeError:
        return MalformedRow("bytes invalid in UTF-8; re-export as UTF-8", bytes(line).decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raw = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
        return MalformedRow(f"invalid JSON ({exc.msg} at column {exc.colno})", raw)


def json_rows(text: str, fmt: str, name: str) -> Iterator[tuple[int, str, Any]]:
    """(line or item number, locator, parsed value or a MalformedRow) of each row of a JSON/JSONL text."""
    if fmt == "json":
        for number, item in enumerate(load_json_array(text, name), start=1):
            yield number, f"item={number}", item
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, f"line={number}", json_line(line)


def as_text(value: Any, key: str) -> str:
    """A message's content as text (OpenAI content parts joined); raises MalformedRow if it is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return "\n".join(str(p.get("text", "")) for p in value)
    raise MalformedRow(f"'{key}' is {type(value).__name__}, expected text")


def chat_turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) turns of a ShareGPT or OpenAI chat row, roles normalised to system/user/assistant/tool."""
    key, role_key, text_key = (
        ("messages", "role", "content") if "messages" in row else ("conversations", "from", "value")
    )
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise MalformedRow(f"'{key}' must be a non-empty list")
    out: list[tuple[str, str]] = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise MalformedRow(f"{key}[{i}] is not an object")
        if role_key not in turn:
            raise MalformedRow(f"{key}[{i}] has no '{role_key}'")
        role = ROLES.get(str(turn[role_key]).lower())
        if role is None:
            raise MalformedRow(f"{key}[{i}] has unrecognized role '{turn[role_key]}'")
        content = turn.get(text_key)
        if content is None:
            if role == "assistant" and (turn.get("tool_calls") or turn.get("function_call")):
                content = json.dumps(turn.get("tool_calls") or turn.get("function_call"), ensure_ascii=False)
            else:
                raise MalformedRow(f"{key}[{i}] has no '{text_key}'")
        out.append((role, as_text(content, f"{key}[{i}].{text_key}")))
    if not any(role == "assistant" for role, _ in out):
        raise MalformedRow("no assistant message")
    return out


def chat_examples(turns: list[tuple[str, str]]) -> Iterator[dict[str, str | None]]:
    """One example per assistant turn: the user turn before it is the instruction, earlier turns the input."""
    system = "\n".join(t for r, t in turns if r == "system") or None
    dialogue = [(r, t) for r, t in turns if r != "system"]
    for i, (role, text) in enumerate(dialogue):
        if role != "assistant" or not text.strip():
            continue
        prompt_at = next((j for j in range(i - 1, -1, -1) if dialogue[j][0] in ("user", "tool")), None)
        if prompt_at is None:
            continue  # an opening assistant greeting has nothing to answer
        context = "\n".join(f"{r}: {t}" for r, t in dialogue[:prompt_at])
        yield {"system": system, "instruction": dialogue[prompt_at][1], "input": context, "output": text}


def dataset_examples(row: Any) -> list[dict[str, str | None]]:
    """Examples of one dataset row in any supported format; raises MalformedRow with the reason."""
    if not isinstance(row, dict):
        raise MalformedRow(f"row is {type(row).__name__}, expected an object")
    if "messages" in row or "conversations" in row:
        examples = list(chat_examples(chat_turns(row)))
        if not examples:
            raise MalformedRow("no assistant message that answers a user message")
        return examples
    if "instruction" in row or "output" in row:
        keys = ("instruction", "output")
        sys_key = "system"
    else:
        keys = ("prompt", "completion")
        sys_key = "system"
    missing = [k for k in keys if k not in row]
    if missing:
        raise MalformedRow(f"missing key(s) {missing}")
    instruction, output = (as_text(row[k], k).strip() for k in keys)
    if not instruction or not output:
        raise MalformedRow(f"empty '{keys[0] if not instruction else keys[1]}'")
    system = row.get(sys_key)
    return [{
        "system": as_text(system, sys_key) if system else None,
        "instruction": instruction,
        "input": as_text(row.get("input") or "", "input"),
        "output": output,
    }]  # fmt: skip


def preference_side(value: Any, key: str) -> str:
    """A preference pair's side as text: a string, or the last assistant content of a message list."""
    if isinstance(value, list):
        contents = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        if not contents:
            raise MalformedRow(f"'{key}' has no assistant message")
        return as_text(contents[-1], key)
    return as_text(value, key)


def preference_prompt(value: Any) -> str:
    """The prompt of a preference pair: a string, or a message list rendered as `role: text` lines."""
    if isinstance(value, list):
        return "\n".join(f"{m.get('role')}: {as_text(m.get('content'), 'prompt')}" for m in value)
    return as_text(value, "prompt")


def preference_example(row: Any) -> dict[str, str]:
    """The prompt/chosen/rejected texts of one preference row; raises MalformedRow with the reason."""
    if not isinstance(row, dict):
        raise MalformedRow(f"row is {type(row).__name__}, expected an object")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise MalformedRow(f"missing key(s) {missing}")
    example = {
        "prompt": preference_prompt(row["prompt"]),
        "chosen": preference_side(row["chosen"], "chosen"),
        "rejected": preference_side(row["rejected"], "rejected"),
    }
    empty = [k for k, v in example.items() if not v.strip()]
    if empty:
        raise MalformedRow(f"empty {empty}")
    if example["chosen"] == example["rejected"]:
        raise MalformedRow("'chosen' and 'rejected' are identical")
    return example


def parse_dataset_rows(rows: Iterable[tuple[int, str, Any]], name: str, kind: str) -> DatasetResult:
    """Turn (number, locator, value) rows of `kind` (dataset | preference) into records and quarantined rows."""
    records: list[dict[str, object]] = []
    bad: list[dict[str, object]] = []
    for number, locator, value in rows:
        origin = f"{name}#{locator}"
        try:
            if isinstance(value, MalformedRow):
                raise value
            if "\ufffd" in json.dumps(value, ensure_ascii=False, default=str):
                raise MalformedRow("bytes invalid in the file's encoding; re-export as UTF-8")
            made = [preference_example(value)] if kind == "preference" else dataset_examples(value)
        except MalformedRow as exc:
            payload = exc.raw if exc.raw is not None else json.dumps(value, ensure_ascii=False, default=str)
            bad.append({"source": kind, "origin": origin, "reason": str(exc), "payload": payload})
            continue
        for example in made:
            records.append({"source": kind, "origin": origin, "file": name, "line": number, **example})
    return DatasetResult(pl.DataFrame(records, schema=RECORD_SCHEMAS[kind]), bad)


def parse_dataset(text: str, fmt: str, name: str, kind: str) -> DatasetResult:
    """Parse a JSON array / JSON Lines text of `kind` into records and quarantined rows."""
    result = parse_dataset_rows(json_rows(text, fmt, name), name, kind)
    result.info["format"] = fmt
    return result
