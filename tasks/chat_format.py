"""One way to turn an Example into chat messages and tokens, shared by transform, train, evaluate and serve.

Training and inference must see the same template, so every stage goes through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase


def example_messages(example: Mapping[str, Any]) -> list[dict[str, str]]:
    """The prompt side of an Example: optional system turn, then the user turn (instruction + input)."""
    messages: list[dict[str, str]] = []
    if example.get("system"):
        messages.append({"role": "system", "content": str(example["system"])})
    user = str(example["instruction"]).strip()
    context = str(example.get("input") or "").strip()
    if context:
        user = f"{user}\n\n{context}"
    messages.append({"role": "user", "content": user})
    return messages


def _ids(rendered: Any) -> list[int]:
    # apply_chat_template returns a list, or a BatchEncoding in newer transformers
    if isinstance(rendered, Mapping) or hasattr(rendered, "input_ids"):
        rendered = rendered["input_ids"]
    return list(rendered)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the prompt, ending with the assistant header the model continues from."""
    return _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def prompt_text(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What the template writes after an assistant reply (e.g. `<|im_end|>` and a newline)."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\x00"}]
    text = str(tokenizer.apply_chat_template(probe, tokenize=False))
    tail = text.split("\x00", 1)[1]
    eos = tokenizer.eos_token or ""
    end = tail[: tail.index(eos) + len(eos)] if eos and eos in tail else tail.rstrip("\n")
    return list(tokenizer(end, add_special_tokens=False)["input_ids"])


def training_ids(
    tokenizer: PreTrainedTokenizerBase, example: Mapping[str, Any], eot: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the prompt is masked with -100, the reply and its end-of-turn are learned."""
    prompt = prompt_ids(tokenizer, example_messages(example))
    reply = list(tokenizer(str(example["output"]), add_special_tokens=False)["input_ids"])
    reply += eot if eot is not None else end_of_turn_ids(tokenizer)
    return prompt + reply, [-100] * len(prompt) + reply


def count_tokens(tokenizer: PreTrainedTokenizerBase, example: Mapping[str, Any]) -> int:
    """`n_tokens` of the Example contract: prompt plus reply under the chat template."""
    ids, _ = training_ids(tokenizer, example)
    return len(ids)
