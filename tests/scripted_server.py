"""A real OpenAI-compatible HTTP server with scripted replies: a remote API stand-in for tests and benchmarks.

It answers `/v1/chat/completions` with deterministic text made from the request (a plausible new request or
answer in the prompt's language, a rubric JSON for judge prompts, a letter for pair prompts), can sleep a fixed
latency (a remote API's round trip), fail the first calls with 429/500, and logs every request it receives.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tasks.expand.mutations import detect_language
from tasks.serve import app_in_thread

WORDS = {
    "pt": {
        "ask": ["Vocês podem me dizer se", "Gostaria de saber se", "Preciso confirmar se", "Podem verificar se"],
        "thing": [
            "o frete",
            "a garantia",
            "o boleto",
            "a entrega",
            "o cupom",
            "a nota fiscal",
            "o reembolso",
            "a assinatura",
            "o estoque",
            "a troca",
        ],
        "cond": [
            "para o Recife",
            "no plano anual",
            "em compras acima de R$ 300",
            "para pedidos feitos no sábado",
            "com cartão de débito",
            "para a loja de Curitiba",
            "depois de 45 dias",
            "no modelo azul",
        ],
        "end": ["vale também", "é gratuito", "tem prazo diferente", "precisa de cadastro", "pode ser parcelado"],
        "reply": ["Sim, para esse caso", "Não, nesse caso", "Depende: para esse caso", "Claro, para esse caso"],
        "detail": [
            "o prazo é de 5 dias úteis",
            "cobramos uma taxa de R$ 12",
            "basta responder com o número do pedido",
            "o time financeiro confirma em 24 horas",
            "enviamos a etiqueta por e-mail",
        ],
    },
    "en": {
        "ask": ["Can you tell me whether", "I would like to know if", "Please confirm whether", "Could you check if"],
        "thing": [
            "the shipping",
            "the warranty",
            "the invoice",
            "the delivery",
            "the coupon",
            "the refund",
            "the subscription",
            "the stock",
            "the exchange",
            "the gift card",
        ],
        "cond": [
            "for Recife",
            "on the yearly plan",
            "for orders above $300",
            "for orders placed on Saturday",
            "with a debit card",
            "for the Curitiba store",
            "after 45 days",
            "for the blue model",
        ],
        "end": ["also applies", "is free", "takes longer", "needs an account", "can be paid in installments"],
        "reply": ["Yes, in that case", "No, in that case", "It depends: in that case", "Sure, in that case"],
        "detail": [
            "it takes 5 business days",
            "we charge a $12 fee",
            "just reply with your order number",
            "our finance team confirms within 24 hours",
            "we e-mail you the return label",
        ],
    },
}


def request_digest(body: dict[str, Any]) -> str:
    """Hash of what decides a reply: messages, max_tokens, temperature and seed."""
    keys = {k: body.get(k) for k in ("messages", "max_tokens", "temperature", "seed")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def scripted_reply(body: dict[str, Any], copy_every: int = 0) -> str:
    """A deterministic reply made from the request (a copy of the prompt's request every `copy_every`-th digest)."""
    messages = body["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    last = messages[-1]["content"]
    digest = int(request_digest(body), 16)
    if "JSON" in system or last.rstrip().endswith("JSON:"):
        scores = [3 + (digest >> (4 * i)) % 3 for i in range(5)]
        keys = ("relevance", "correctness", "tone", "language", "privacy")
        return "Here you go: " + json.dumps(dict(zip(keys, scores, strict=True)))
    if last.rstrip().endswith(("A or B.", "A ou B.")):
        return "B" if digest % 3 else "A"
    lang = detect_language(last)
    if copy_every and digest % copy_every == 0:  # a lazy teacher: echoes the request it was given
        quoted = [line.split(":", 1)[1].strip() for line in last.splitlines() if ":" in line]
        return quoted[0] if quoted and quoted[0] else last
    w = WORDS[lang]
    pick = [w[k][(digest >> (5 * i)) % len(w[k])] for i, k in enumerate(("ask", "thing", "cond", "end"))]
    if last.rstrip().endswith(("New request:", "Novo pedido:")):
        return f"{pick[0]} {pick[1]} {pick[2]} {pick[3]}?"
    answer = [w[k][(digest >> (7 * i)) % len(w[k])] for i, k in enumerate(("reply", "detail"))]
    return f"{answer[0]} {pick[1]} {pick[2]}: {answer[1]}."


@dataclass
class ScriptedServer:
    """Settings and the request log of one scripted server."""

    latency_s: float = 0.0
    fail_first: list[int] = field(default_factory=list)  # HTTP statuses to answer the first calls with
    copy_every: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self.log.append(body)
                failing = self.fail_first.pop(0) if self.fail_first else None
            if failing:
                return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, failing)
            if self.latency_s:
                import asyncio

                await asyncio.sleep(self.latency_s)
            text = scripted_reply(body, self.copy_every)
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
            completion_tokens = min(len(text.split()), int(body.get("max_tokens") or 1000))
            return JSONResponse(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        return app


def running(server: ScriptedServer) -> AbstractContextManager[str]:
    """Serve in a background thread on a free port; yields the base URL `http://127.0.0.1:PORT/v1`."""
    return app_in_thread(server.app())
