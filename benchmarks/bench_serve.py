"""`afinar serve` on the embedded model: HTTP overhead vs calling the engine directly, streaming latency.

Prints tokens/s of direct `ChatEngine.complete` (the baseline), of the OpenAI-compatible server
called with the official client (sequential and 4 concurrent clients), and the streamed time to
first token against the whole reply's latency. Run: `python benchmarks/bench_serve.py [N]`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from openai import OpenAI

from tasks.chat_model import ChatEngine
from tasks.config.model import ModelConfig
from tasks.serve import serving

CACHE = Path(os.environ.get("AFINAR_TEST_CACHE", Path(__file__).resolve().parents[1] / "work" / "cache"))
PROMPTS = [
    "Qual o prazo de entrega para São Paulo?",
    "Do you offer an annual plan with a discount?",
    "Como faço para trocar um produto com defeito?",
    "Can I pay by bank transfer?",
]
MAX_TOKENS = 32


def main(n: int = 8) -> None:
    engine = ChatEngine.from_catalog(ModelConfig(), CACHE)
    messages = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n)]
    engine.complete(messages[0], max_tokens=MAX_TOKENS)  # warm-up

    with serving(engine, model_id="embedded") as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=300)

        def ask(m: list[dict[str, str]]) -> int:
            reply = client.chat.completions.create(model="embedded", messages=m, max_tokens=MAX_TOKENS, temperature=0)
            return reply.usage.completion_tokens

        # direct and HTTP calls alternate, so load from other processes on the machine hits both alike
        direct_rates, http_rates = [], []
        for m in messages:
            start = time.perf_counter()
            tokens = engine.complete(m, max_tokens=MAX_TOKENS).completion_tokens
            direct_rates.append(tokens / (time.perf_counter() - start))
            start = time.perf_counter()
            tokens = ask(m)
            http_rates.append(tokens / (time.perf_counter() - start))
        direct, http = statistics.median(direct_rates), statistics.median(http_rates)

        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            tokens = sum(pool.map(ask, messages))
        concurrent = tokens / (time.perf_counter() - start)

        first, whole = [], []
        for m in messages:
            start = time.perf_counter()
            stream = client.chat.completions.create(
                model="embedded", messages=m, max_tokens=MAX_TOKENS, temperature=0, stream=True
            )
            seen = None
            for chunk in stream:
                if seen is None and chunk.choices and chunk.choices[0].delta.content:
                    seen = time.perf_counter() - start
            first.append(seen or 0.0)
            whole.append(time.perf_counter() - start)

    print(f"requests: {n}, max_tokens: {MAX_TOKENS}, greedy, embedded SmolLM2-135M fp32 on CPU")
    print(f"direct engine (baseline)      {direct:7.1f} tokens/s   1.00x   (median per request)")
    print(f"HTTP, sequential              {http:7.1f} tokens/s   {http / direct:.2f}x   (median per request)")
    print(f"HTTP, 4 concurrent clients    {concurrent:7.1f} tokens/s   {concurrent / direct:.2f}x   (total)")
    ttft, latency = statistics.median(first), statistics.median(whole)
    print(
        f"streaming: first token {ttft * 1000:6.0f} ms, whole reply {latency * 1000:6.0f} ms "
        f"(median; first/whole {ttft / latency:.2f})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
