"""Teachers: the HTTP kind against real local servers (retries, failures, keys), the call cache, the embedded kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted_server import ScriptedServer, running

from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.expand.budget import Budget, BudgetExhausted
from tasks.teachers import TeacherConfigError, TeacherError, make_teacher

MESSAGES = [
    {"role": "user", "content": "Rewrite the request below.\n\nRequest: Do you ship to Recife?\n\nNew request:"}
]


def http(url: str, tmp_path: Path, **kw) -> TeacherConfig:
    return TeacherConfig(kind="openai", base_url=url, model="scripted", calls_dir=str(tmp_path / "calls"), **kw)


def test_http_teacher_retries_429_and_500_with_backoff_then_succeeds(tmp_path: Path, model_cache: Path) -> None:
    server = ScriptedServer(fail_first=[429, 500])
    with running(server) as url:
        teacher = make_teacher(http(url, tmp_path, max_retries=3), ModelConfig(), model_cache)
        reply = teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
    assert len(server.log) == 3  # two failures, then the answer
    assert reply.text.endswith("?") and reply.completion_tokens > 0
    assert teacher.stats.calls == 1 and teacher.stats.failed_calls == 0


def test_http_teacher_gives_up_after_its_retries_and_caches_nothing(tmp_path: Path, model_cache: Path) -> None:
    server = ScriptedServer(fail_first=[503] * 3)
    with running(server) as url:
        teacher = make_teacher(http(url, tmp_path, max_retries=2), ModelConfig(), model_cache)
        with pytest.raises(TeacherError, match=r"HTTP 503\) after 2 retries"):
            teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
        assert teacher.stats.failed_calls == 1 and not list((tmp_path / "calls").rglob("*.json"))
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)  # the server recovered
    assert len(server.log) == 4


def test_http_teacher_times_out_and_retries(tmp_path: Path, model_cache: Path) -> None:
    server = ScriptedServer(latency_s=1.0)
    with running(server) as url:
        teacher = make_teacher(http(url, tmp_path, max_retries=1, timeout_s=0.2), ModelConfig(), model_cache)
        with pytest.raises(TeacherError, match="APITimeoutError"):
            teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
    assert len(server.log) == 2


def test_every_call_is_cached_by_its_full_request(tmp_path: Path, model_cache: Path) -> None:
    server = ScriptedServer()
    with running(server) as url:
        teacher = make_teacher(http(url, tmp_path), ModelConfig(), model_cache)
        first = teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
        again = teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=2)  # another seed: another request
        fresh = make_teacher(http(url, tmp_path), ModelConfig(), model_cache)  # a new process, same disk
        reread = fresh.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
    assert len(server.log) == 2
    assert again.cached and reread.cached and again.text == first.text == reread.text
    assert teacher.stats.cache_hits == 1 and fresh.stats.cache_hits == 1 and fresh.stats.calls == 0


def test_the_api_key_is_read_from_the_named_variable_and_never_stored(
    tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-a1b2c3d4e5f6"
    monkeypatch.setenv("AFINAR_TEST_KEY", secret)
    server = ScriptedServer()
    with running(server) as url:
        cfg = http(url, tmp_path, api_key_env="AFINAR_TEST_KEY")
        teacher = make_teacher(cfg, ModelConfig(), model_cache)
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
    assert secret not in repr(cfg) and secret not in str(teacher.identity)
    assert all(secret not in f.read_text() for f in (tmp_path / "calls").rglob("*.json"))
    monkeypatch.delenv("AFINAR_TEST_KEY")
    with pytest.raises(TeacherConfigError, match="AFINAR_TEST_KEY"):
        make_teacher(cfg, ModelConfig(), model_cache)


def test_an_http_teacher_without_url_or_model_is_refused(model_cache: Path) -> None:
    with pytest.raises(TeacherConfigError, match=r"teacher\.base_url and teacher\.model"):
        make_teacher(TeacherConfig(kind="openai"), ModelConfig(), model_cache)
    with pytest.raises(TeacherConfigError, match="not known"):
        make_teacher(TeacherConfig(kind="telepathy"), ModelConfig(), model_cache)


def test_the_budget_gate_stops_calls_before_a_cap_is_crossed(tmp_path: Path, model_cache: Path) -> None:
    server = ScriptedServer()
    with running(server) as url:
        teacher = make_teacher(http(url, tmp_path), ModelConfig(), model_cache)
        teacher.gate = Budget(max_calls=2, max_tokens=10**6, max_cost=0.0, price=teacher.price)
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=2)
        teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=1)  # a cache hit costs nothing
        with pytest.raises(BudgetExhausted, match=r"expand\.max_calls"):
            teacher.complete(MESSAGES, max_tokens=32, temperature=0.7, seed=3)
    assert len(server.log) == 2 and teacher.stats.cache_hits == 1


def test_the_embedded_teacher_generates_and_reuses_its_cached_call(tmp_path: Path, model_cache: Path) -> None:
    teacher = make_teacher(TeacherConfig(calls_dir=str(tmp_path / "calls")), ModelConfig(), model_cache)
    first = teacher.complete(MESSAGES, max_tokens=8, temperature=0.7, seed=3)
    again = make_teacher(TeacherConfig(calls_dir=str(tmp_path / "calls")), ModelConfig(), model_cache).complete(
        MESSAGES, max_tokens=8, temperature=0.7, seed=3
    )
    assert 0 < first.completion_tokens <= 8 and first.text and not first.cached
    assert again.cached and again.text == first.text
    assert teacher.stats.tokens == first.prompt_tokens + first.completion_tokens


def test_the_embedded_teacher_reports_first_token_probabilities_on_request(tmp_path: Path, model_cache: Path) -> None:
    teacher = make_teacher(TeacherConfig(calls_dir=str(tmp_path / "calls")), ModelConfig(), model_cache)
    ask = [{"role": "user", "content": "Reply with one number from 1 to 5: how sunny is a sunny day?"}]
    reply = teacher.complete(ask, max_tokens=2, temperature=0.0, seed=1, top_logprobs=10)
    probs = reply.first_token_probs
    assert probs is not None and 0 < sum(probs.values()) <= 1.0 + 1e-6
    assert max(probs, key=probs.__getitem__) and reply.text.startswith(max(probs, key=probs.__getitem__))
    cached = teacher.complete(ask, max_tokens=2, temperature=0.0, seed=1, top_logprobs=10)
    assert cached.cached and cached.first_token_probs == pytest.approx(probs)
