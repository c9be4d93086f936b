"""`afinar serve`: the embedded model behind an OpenAI-compatible API, called with the official client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI
from test_register import finished_run, train_dir  # noqa: F401  (fixture)

from tasks.chat_model import ChatEngine
from tasks.config.model import ModelConfig
from tasks.serve import serving


@pytest.fixture(scope="module")
def engine(model_cfg, model_cache) -> ChatEngine:
    return ChatEngine.from_catalog(model_cfg, model_cache)


@pytest.fixture(scope="module")
def base_url(engine: ChatEngine) -> Iterator[str]:
    with serving(engine, model_id="embedded") as url:
        yield url


@pytest.fixture()
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120)


def test_models_lists_the_served_model(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["embedded"]


def test_chat_completion_replies_with_text_and_usage(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="embedded",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_yields_chunks_that_join_to_the_whole_reply(client: OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hello to a customer."}]
    whole = client.chat.completions.create(model="embedded", messages=messages, max_tokens=16, temperature=0)
    stream = client.chat.completions.create(
        model="embedded",
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces).strip() == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_raw_stream_is_server_sent_events_ending_with_done(base_url: str) -> None:
    body = {"model": "embedded", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_malformed_request_gets_openai_error_shape_and_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="embedded", messages=[{"role": "wizard", "content": 3}])
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert "messages" in error["param"]


def test_empty_messages_and_bad_json_are_400_not_crashes(base_url: str) -> None:
    empty = httpx.post(f"{base_url}/chat/completions", json={"model": "embedded", "messages": []})
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "messages"
    broken = httpx.post(
        f"{base_url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"


def test_too_long_request_is_refused_with_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="embedded", messages=[{"role": "user", "content": "hi"}], max_tokens=1_000_000
        )
    assert caught.value.body["code"] == "context_length_exceeded"


def test_concurrent_requests_all_get_the_same_greedy_reply(client: OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]

    def ask(_: int) -> str:
        r = client.chat.completions.create(model="embedded", messages=messages, max_tokens=8, temperature=0)
        return r.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, range(4)))
    assert len(set(replies)) == 1 and replies[0]


def test_unknown_model_uri_names_what_it_accepts() -> None:
    from tasks.model_loading import ModelNotFoundError
    from tasks.serve import load_engine

    with pytest.raises(ModelNotFoundError, match=r"'no-such-model' is neither an MLflow model URI.*embedded"):
        load_engine("no-such-model")


@pytest.mark.slow
def test_cli_serves_the_embedded_model_until_stopped(tmp_path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    afinar = Path(sys.executable).parent / "afinar"
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen(
        [str(afinar), "serve", "embedded", "--port", str(port)],
        cwd=root,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="embedded", messages=[{"role": "user", "content": "Hello"}], max_tokens=4, temperature=0
        )
        assert reply.choices[0].message.content
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_serves_the_registered_champion_by_its_models_uri(
    work_overrides,
    tmp_path,
    train_dir,  # noqa: F811
    monkeypatch,
) -> None:
    from tasks.config import compose
    from tasks.register import register_model

    cfg = compose(work_overrides)
    run_id, eval_dir = finished_run(cfg, tmp_path, tuned=2.0)
    register_model(cfg, run_id, train_dir, eval_dir)
    monkeypatch.setenv("AFINAR_HOME", str(cfg.paths.work))
    uri = f"models:/{cfg.tracking.registered_model}@champion"
    with serving(uri) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == [uri]
        reply = client.chat.completions.create(
            model=uri, messages=[{"role": "user", "content": "Qual o prazo de entrega?"}], max_tokens=8, temperature=0
        )
    tuned = ChatEngine.from_catalog(ModelConfig(), cfg.paths.cache, train_dir / "adapter")
    expected = tuned.complete([{"role": "user", "content": "Qual o prazo de entrega?"}], max_tokens=8)
    assert reply.choices[0].message.content == expected.text
