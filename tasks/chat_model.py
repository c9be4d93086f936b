"""A chat model that generates with the training chat template: a catalog base, optionally with a LoRA adapter.

`ChatEngine` is what `afinar serve` runs and what the registered MLflow model wraps
(`AfinarChatModel`), so a served reply, a `pyfunc` prediction and an evaluation sample all go
through `tasks.chat_format` the same way. Every generation runs on the engine's one worker thread,
one at a time: a CPU or a single GPU gains nothing from interleaving `generate` calls, the model is
not thread-safe, and torch on many calling threads builds one OpenMP thread team per thread, which
then compete for the same cores (measured: 6 sequential requests from server threads 3-4x slower).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from transformers import (
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TextIteratorStreamer,
)

from tasks.chat_format import example_messages, prompt_ids
from tasks.config.model import ModelConfig
from tasks.model_loading import load_model, load_tokenizer, offline_environment


@dataclass
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length


def user_cache_dir() -> Path:
    """Where a loaded model keeps its dequantised base when no run folder is at hand."""
    return Path(os.environ.get("AFINAR_CACHE") or Path.home() / ".cache" / "afinar")


def load_chat_tokenizer(
    model_cfg: ModelConfig, cache_dir: str | Path, adapter_dir: Path | None = None
) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the adapter (the one training used) if there is one, else the base's."""
    if adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        if model_cfg.chat_template:
            tokenizer.chat_template = model_cfg.chat_template
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    return load_tokenizer(model_cfg, cache_dir)


def load_merged_model(
    model_cfg: ModelConfig, cache_dir: str | Path, adapter_dir: Path | None = None, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """The base with the adapter merged into its weights (plain transformers model, no PEFT at inference)."""
    model = load_model(model_cfg, cache_dir, dtype=dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.eval()


class ChatEngine:
    """Tokenizer + model + one generation thread: turns chat messages into a reply, whole or streamed."""

    def __init__(self, name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        # the queue in front of the model: requests wait here, in order, and torch sees one thread
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="afinar-generate")

    @classmethod
    def from_catalog(
        cls, model_cfg: ModelConfig, cache_dir: str | Path, adapter_dir: Path | None = None, name: str | None = None
    ) -> ChatEngine:
        if model_cfg.source in ("embedded", "path"):
            offline_environment()
        tokenizer = load_chat_tokenizer(model_cfg, cache_dir, adapter_dir)
        model = load_merged_model(model_cfg, cache_dir, adapter_dir)
        return cls(name or model_cfg.name, model, tokenizer)

    def _generate_kwargs(
        self, ids: torch.Tensor, max_tokens: int, temperature: float, top_p: float, stop: list[str]
    ) -> dict[str, Any]:
        sample = temperature > 0
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": max_tokens,
            "do_sample": sample,
            "temperature": temperature if sample else None,
            "top_p": top_p if sample else None,
            "top_k": None,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if stop:
            kwargs |= {"stop_strings": stop, "tokenizer": self.tokenizer}
        return kwargs

    def _finish(self, generated: torch.Tensor, max_tokens: int) -> str:
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        hit_eos = generated.numel() > 0 and int(generated[-1]) in eos_ids
        return "length" if generated.numel() >= max_tokens and not hit_eos else "stop"

    def _generate(self, kwargs: dict[str, Any], seed: int | None) -> torch.Tensor:
        """One `generate` call; runs on the worker thread only."""
        with torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            return self.model.generate(**kwargs)

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> ChatReply:
        """The whole reply to `messages` (greedy when temperature is 0)."""
        ids = torch.tensor([prompt_ids(self.tokenizer, messages)])
        kwargs = self._generate_kwargs(ids, max_tokens, temperature, top_p, stop or [])
        out = self.worker.submit(self._generate, kwargs, seed).result()
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s, 1)[0]
        return ChatReply(text.strip(), int(ids.shape[1]), int(new.shape[0]), self._finish(new, max_tokens))

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str | ChatReply]:
        """Text pieces as they are generated, then one final `ChatReply` with the counts (its text is whole)."""
        ids = torch.tensor([prompt_ids(self.tokenizer, messages)])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        kwargs = self._generate_kwargs(ids, max_tokens, temperature, top_p, stop or []) | {"streamer": streamer}

        def run() -> torch.Tensor:
            try:
                return self._generate(kwargs, seed)
            except BaseException:
                streamer.end()  # unblock the reader; it gets the error from the future
                raise

        future = self.worker.submit(run)
        pieces: list[str] = []
        for piece in streamer:
            if piece:
                pieces.append(piece)
                yield piece
        new = future.result()[0, ids.shape[1] :]  # raises the generation's error, if any
        yield ChatReply("".join(pieces).strip(), int(ids.shape[1]), int(new.shape[0]), self._finish(new, max_tokens))


def frame_messages(frame: pd.DataFrame) -> list[list[dict[str, str]]]:
    """Model input rows → chat messages: Example-shaped (`instruction`, optional `input`, `system`) or `prompt`.

    A `prompt` row is one user turn (with the row's `system`, if any), for callers that just ask.
    """
    if not {"instruction", "prompt"} & set(frame.columns):
        raise ValueError(
            "model input needs an 'instruction' column (optional 'input', 'system') or a 'prompt' column; "
            f"got {list(frame.columns)}"
        )
    conversations = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        row = {k: ("" if v is None or (isinstance(v, float) and v != v) else v) for k, v in row.items()}
        if row.get("instruction"):
            conversations.append(example_messages(row))
        elif row.get("prompt"):
            system = [{"role": "system", "content": str(row["system"])}] if row.get("system") else []
            conversations.append([*system, {"role": "user", "content": str(row["prompt"])}])
        else:
            raise ValueError(f"model input row {i}: both 'instruction' and 'prompt' are empty; one must hold text")
    return conversations


class AfinarChatModel(mlflow.pyfunc.PythonModel):
    """The registered model: a catalog base (referenced or bundled) plus the run's LoRA adapter.

    `model_config` carries the catalog entry (`model`), how the base travels (`base`: reference |
    bundled) and the cache folder of the run that trained it. Input: a frame of Example-shaped
    rows; output: one reply per row. Params: `max_new_tokens`, `temperature`, `seed`.
    """

    engine: ChatEngine

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        config = dict(context.model_config or {})
        model_cfg = ModelConfig(**config["model"])
        artifacts = context.artifacts or {}
        if "base" in artifacts:
            model_cfg.source, model_cfg.path = "path", artifacts["base"]
        cache = Path(config.get("cache_dir") or "")
        if not (cache.is_dir() and os.access(cache, os.W_OK)):
            cache = user_cache_dir()
        adapter = Path(artifacts["adapter"]) if "adapter" in artifacts else None
        self.engine = ChatEngine.from_catalog(model_cfg, cache, adapter, name=config.get("name"))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        params = params or {}
        replies = []
        for messages in frame_messages(model_input):
            reply = self.engine.complete(
                messages,
                max_tokens=int(params.get("max_new_tokens", 64)),
                temperature=float(params.get("temperature", 0.0)),
                seed=int(params.get("seed", 0)),
            )
            replies.append(reply.text)
        return replies


def model_config_for(model_cfg: ModelConfig, name: str, cache_dir: Path, base: str) -> dict[str, Any]:
    """The `model_config` logged with an `AfinarChatModel` (plain JSON, so any process can read it)."""
    return json.loads(json.dumps({"model": asdict(model_cfg), "name": name, "cache_dir": str(cache_dir), "base": base}))
