"""Teachers: the LLMs that write and judge examples, behind one small interface.

Two providers: `embedded` runs the default model on this machine (offline), `openai` talks to any
OpenAI-compatible endpoint (OpenAI, OpenRouter, Ollama, vLLM, LM Studio, `afinar serve`) through the
official `openai` client, whose retries back off on timeouts, 429 and 5xx. `make_teacher` wraps either
in `CachedTeacher`: every finished call is kept on disk by its full request, so a rerun (or a run killed
halfway) repeats no finished call, and calls, tokens and cost are counted, optionally against a budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from tasks.chat_format import prompt_ids
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.model_loading import load_model, load_tokenizer

Messages = list[dict[str, str]]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False
    # the first generated token's most likely alternatives and their probabilities (asked with top_logprobs)
    first_token_probs: dict[str, float] | None = None


class Teacher(Protocol):
    def complete(
        self, messages: Messages, *, max_tokens: int, temperature: float, seed: int, top_logprobs: int = 0
    ) -> Completion: ...


class TeacherError(RuntimeError):
    """A teacher call failed after its retries (or returned no message); it is counted, never made a row."""


class TeacherConfigError(ValueError):
    """The `teacher` config cannot make a working client (unknown kind, missing URL, model or key)."""


class CallGate(Protocol):
    """What a budget offers the cached teacher: admit a call before it runs, settle it after."""

    def admit(self, prompt_tokens: int, max_tokens: int) -> object: ...

    def settle(self, ticket: object, completion: Completion | None) -> None: ...


class EmbeddedTeacher:
    """The embedded model, generating on this machine; one generation at a time, loaded on first use."""

    def __init__(self, model_cfg: ModelConfig, cache_dir: str | Path) -> None:
        self.model_cfg = model_cfg
        self.cache_dir = Path(cache_dir)
        self.tokenizer = load_tokenizer(model_cfg, cache_dir)
        self._model: Any = None
        self._lock = threading.Lock()

    def complete(
        self, messages: Messages, *, max_tokens: int, temperature: float, seed: int, top_logprobs: int = 0
    ) -> Completion:
        ids = torch.tensor([prompt_ids(self.tokenizer, messages)])
        with self._lock, torch.inference_mode():
            if self._model is None:
                self._model = load_model(self.model_cfg, self.cache_dir).eval()
            torch.manual_seed(seed)
            out = self._model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=0.95 if temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_logits=top_logprobs > 0,
            )
        new = out.sequences[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        probs = None
        if top_logprobs > 0:  # raw logits of the first step, before any sampling warper
            top = torch.softmax(out.logits[0][0].float(), dim=-1).topk(top_logprobs)
            probs = {}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                token = self.tokenizer.decode([i]).strip()
                probs[token] = probs.get(token, 0.0) + p
        return Completion(text, int(ids.shape[1]), int(new.shape[0]), first_token_probs=probs)


class HttpTeacher:
    """Any OpenAI-compatible chat endpoint; the key comes from the environment variable the config names."""

    def __init__(self, cfg: TeacherConfig) -> None:
        from openai import OpenAI

        if not cfg.base_url or not cfg.model:
            raise TeacherConfigError(
                "teacher kind 'openai' needs teacher.base_url and teacher.model "
                "(e.g. teacher.base_url=http://127.0.0.1:8000/v1 teacher.model=afinar)"
            )
        key = "not-needed"  # local servers (afinar serve, Ollama, vLLM) take any key
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise TeacherConfigError(
                    f"teacher: the environment variable {cfg.api_key_env} (teacher.api_key_env) is empty; "
                    f"export it with your key, or set teacher.api_key_env=null for a server without keys"
                )
        self.cfg = cfg
        self.client = OpenAI(base_url=cfg.base_url, api_key=key, timeout=cfg.timeout_s, max_retries=cfg.max_retries)

    def complete(
        self, messages: Messages, *, max_tokens: int, temperature: float, seed: int, top_logprobs: int = 0
    ) -> Completion:
        from openai import APIError

        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": top_logprobs} if top_logprobs else {}
        try:
            response = self.client.chat.completions.create(
                model=str(self.cfg.model),
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                **extra,
            )
        except APIError as err:  # the client already retried what is worth retrying
            status = getattr(err, "status_code", None)
            raise TeacherError(
                f"teacher {self.cfg.model!r} at {self.cfg.base_url}: {type(err).__name__}"
                f"{f' (HTTP {status})' if status else ''} after {self.cfg.max_retries} retries: {err.message}"
            ) from None
        if not response.choices or response.choices[0].message.content is None:
            raise TeacherError(f"teacher {self.cfg.model!r} at {self.cfg.base_url}: the reply has no message")
        usage = response.usage
        logprobs = response.choices[0].logprobs
        probs = None
        if top_logprobs and logprobs is not None and logprobs.content:  # a server may ignore the request
            probs = {}
            for alt in logprobs.content[0].top_logprobs:
                probs[alt.token.strip()] = probs.get(alt.token.strip(), 0.0) + math.exp(alt.logprob)
        return Completion(
            text=response.choices[0].message.content.strip(),
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            completion_tokens=int(usage.completion_tokens) if usage else 0,
            first_token_probs=probs,
        )


@dataclass
class TeacherStats:
    """What the teacher spent: real calls (cache hits cost nothing), failures, tokens and money."""

    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CallCache:
    """One JSON file per finished call, named by the hash of the full request; written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return Completion(
            data["text"], data["prompt_tokens"], data["completion_tokens"], True, data.get("first_token_probs")
        )

    def put(self, key: str, request: dict[str, Any], completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {**asdict(completion), "cached": False, "request": request}
        staging = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        staging.write_text(json.dumps(record, ensure_ascii=False))
        staging.replace(path)  # a killed run leaves whole files or none


class CachedTeacher:
    """A teacher whose finished calls are reused from disk, counted, and (with a gate) kept within a budget."""

    def __init__(
        self,
        inner: Teacher,
        identity: dict[str, Any],
        tokenizer: PreTrainedTokenizerBase,
        cfg: TeacherConfig,
        cache: CallCache | None,
        prompt_token_margin: float = 1.0,
    ) -> None:
        self.inner = inner
        self.identity = identity  # what makes two teachers answer differently (never the key)
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.cache = cache
        self.margin = prompt_token_margin
        self.gate: CallGate | None = None
        self.stats = TeacherStats()
        self._lock = threading.Lock()

    def request_key(self, request: dict[str, Any]) -> str:
        payload = json.dumps({"teacher": self.identity, **request}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.cfg.price_per_1k_prompt_tokens
            + completion_tokens * self.cfg.price_per_1k_completion_tokens
        ) / 1000

    def estimate_prompt_tokens(self, messages: Messages) -> int:
        """Our tokenizer's count of the prompt, times the margin for a remote model's own tokenizer."""
        return int(len(prompt_ids(self.tokenizer, messages)) * self.margin) + 1

    def complete(
        self, messages: Messages, *, max_tokens: int, temperature: float, seed: int, top_logprobs: int = 0
    ) -> Completion:
        request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        request["seed"] = seed
        if top_logprobs:
            request["top_logprobs"] = top_logprobs
        key = self.request_key(request)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            with self._lock:
                self.stats.cache_hits += 1
            return hit
        ticket = self.gate.admit(self.estimate_prompt_tokens(messages), max_tokens) if self.gate else None
        try:
            completion = self.inner.complete(
                messages, max_tokens=max_tokens, temperature=temperature, seed=seed, top_logprobs=top_logprobs
            )
        except Exception:
            with self._lock:
                self.stats.calls += 1
                self.stats.failed_calls += 1
            if self.gate:
                self.gate.settle(ticket, None)
            raise
        if not completion.prompt_tokens:  # a server that reports no usage: count with our tokenizer
            completion.prompt_tokens = self.estimate_prompt_tokens(messages)
        with self._lock:
            self.stats.calls += 1
            self.stats.prompt_tokens += completion.prompt_tokens
            self.stats.completion_tokens += completion.completion_tokens
            self.stats.cost += self.price(completion.prompt_tokens, completion.completion_tokens)
        if self.gate:
            self.gate.settle(ticket, completion)
        if self.cache is not None:
            self.cache.put(key, request, completion)
        return completion


def make_teacher(cfg: TeacherConfig, model_cfg: ModelConfig, cache_dir: str | Path) -> CachedTeacher:
    """The configured teacher; calls cached in `cfg.calls_dir` or `<cache_dir>/teacher_calls` unless cache=false."""
    cache = CallCache(Path(cfg.calls_dir or Path(cache_dir) / "teacher_calls")) if cfg.cache else None
    if cfg.kind == "embedded":
        embedded = EmbeddedTeacher(model_cfg, cache_dir)
        identity = {
            "kind": "embedded",
            **{k: getattr(model_cfg, k) for k in ("name", "source", "repo_id", "revision", "path", "gguf_file")},
        }
        return CachedTeacher(embedded, identity, embedded.tokenizer, cfg, cache)
    if cfg.kind == "openai":
        http = HttpTeacher(cfg)
        identity = {"kind": "openai", "base_url": cfg.base_url, "model": cfg.model}
        tokenizer = load_tokenizer(model_cfg, cache_dir)
        return CachedTeacher(http, identity, tokenizer, cfg, cache, cfg.prompt_token_margin)
    raise TeacherConfigError(f"teacher kind {cfg.kind!r} is not known (embedded | openai)")
