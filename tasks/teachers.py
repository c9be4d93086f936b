"""Teachers: the LLMs that write and judge examples, behind one small interface.

`embedded` runs the default model locally (offline); the expand stage adds the OpenAI-compatible
HTTP kind, the disk cache of calls, retries and the budget on top of this interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from tasks.chat_format import prompt_ids
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.model_loading import load_model, load_tokenizer


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


class Teacher(Protocol):
    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, seed: int
    ) -> Completion: ...


class EmbeddedTeacher:
    """The embedded model, generating on this machine; one generation at a time."""

    def __init__(self, model_cfg: ModelConfig, cache_dir: str | Path) -> None:
        self.tokenizer = load_tokenizer(model_cfg, cache_dir)
        self.model = load_model(model_cfg, cache_dir).eval()
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, seed: int) -> Completion:
        ids = torch.tensor([prompt_ids(self.tokenizer, messages)])
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=0.95 if temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Completion(text=text, prompt_tokens=int(ids.shape[1]), completion_tokens=int(new.shape[0]))


def make_teacher(cfg: TeacherConfig, model_cfg: ModelConfig, cache_dir: str | Path) -> Teacher:
    if cfg.kind == "embedded":
        return EmbeddedTeacher(model_cfg, cache_dir)
    raise ValueError(f"teacher kind {cfg.kind!r} is not known (embedded | openai)")
