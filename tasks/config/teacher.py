"""`teacher` group: the LLM that writes and judges synthetic data (embedded, or any OpenAI-compatible endpoint)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TeacherConfig:
    kind: str = "embedded"  # embedded | openai
    base_url: str | None = None
    model: str | None = None
    # the NAME of the environment variable holding the key; the key itself never enters the config
    api_key_env: str | None = None
    timeout_s: float = 60.0
    concurrency: int = 4
    # retries with exponential backoff (the openai client's own) on timeouts, 408/409, 429 and 5xx
    max_retries: int = 4
    price_per_1k_prompt_tokens: float = 0.0
    price_per_1k_completion_tokens: float = 0.0
    max_new_tokens: int = 128
    temperature: float = 0.7
    # every call is cached on disk by its full request; false: never reuse a call
    cache: bool = True
    # where the calls are cached; None: <paths.cache>/teacher_calls
    calls_dir: str | None = None
    # budget reservations over-estimate a remote model's prompt tokens by this factor (its tokenizer is not ours)
    prompt_token_margin: float = 1.25
