"""The expand stage: contract outputs, novelty, provenance, budget, resumability, with real teachers and servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from scripted_server import ScriptedServer, request_digest, running
from seed_examples import write_seed_examples

from tasks.chat_format import count_tokens
from tasks.config.data import DataConfig
from tasks.config.expand import ExpandConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.expand import ExpandInputError, expand_examples
from tasks.expand.judges import failure_reason, parse_scores, weighted_score
from tasks.expand.mutations import clean_reply, detect_language
from tasks.expand.novelty import NoveltyPool, minhash_signature, novelty_reason, novelty_text, words
from tasks.records import EXAMPLE_SCHEMA, example_id
from tasks.schemas import ExampleModel

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = {"constraint": 1.0, "deepen": 1.0, "concretise": 1.0, "reasoning": 1.0, "breadth": 1.0, "rewrite": 1.0}


@pytest.fixture()
def seeds(tmp_path: Path, tokenizer) -> tuple[Path, pl.DataFrame]:
    path = tmp_path / "in" / "examples.parquet"
    path.parent.mkdir()
    return path, write_seed_examples(path, tokenizer)


def http_teacher(base_url: str, tmp_path: Path, **kw) -> TeacherConfig:
    return TeacherConfig(kind="openai", base_url=base_url, model="scripted", calls_dir=str(tmp_path / "calls"), **kw)


def expand_cfg(**kw) -> ExpandConfig:
    base = {"mutations": MUTATIONS, "target_size": 100, "max_candidates": 16, "max_calls": 200, "max_tokens": 10**6}
    return ExpandConfig(**{**base, **kw})


def run_expand(seeds_path: Path, cfg: ExpandConfig, teacher: TeacherConfig, cache: Path, out: Path):
    return expand_examples(seeds_path, cfg, teacher, ModelConfig(), DataConfig(), cache, out, seed=7)


# --- parsing and filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            'Sure! {"relevance": 4, "correctness": 5, "tone": "3"} hope it helps',
            {"relevance": 4, "correctness": 5, "tone": 3},
        ),
        ('{"relevance": 9, "tone": 2}', {"tone": 2}),
        ("relevance: 3, tone = 4", {"relevance": 3, "tone": 4}),
        ("4", {"overall": 4}),
        ("Nota: 5/5", {"overall": 5}),
        ('{"id": 1, "text": "hello"}', None),
        ("I think it is fine, 3 times over", None),
    ],
)
def test_judge_replies_parse_to_scores_in_scale_or_none(reply: str, expected: dict | None) -> None:
    assert parse_scores(reply) == expected


def test_probability_weighted_scores_use_only_the_digit_mass() -> None:
    assert weighted_score({"5": 0.3, "3": 0.1, "The": 0.5}) == pytest.approx((5 * 0.3 + 3 * 0.1) / 0.4)
    assert weighted_score({"The": 0.9, "4": 0.001}) is None  # too little mass on digits to mean anything
    assert weighted_score(None) is None


@pytest.mark.parametrize(
    ("text", "lang", "reason"),
    [
        ("", "en", "empty_or_punctuation"),
        ("?!... --", "pt", "empty_or_punctuation"),
        ("I'm sorry, but I cannot help with that request.", "en", "refusal"),
        ("Desculpe, não posso ajudar com isso.", "pt", "refusal"),
        ("Here it is. New request: what is the warranty?", "en", "copied_prompt"),
        ("Vocês vendem cartão?\n\nPedido: Vocês vendem cartão", "pt", "copied_prompt"),
        ("Qual a política de reembolso?\nNova pedido: outra", "pt", "copied_prompt"),
        ("O pedido 99120 já saiu: chega amanhã.", "pt", None),
        ("que é que é que é que é que é que é que é que é que é", "pt", "degenerate_repetition"),
        ("The delivery to Recife takes five business days from the payment.", "pt", "wrong_language"),
        ("A entrega para o Recife leva cinco dias úteis depois do pagamento.", "pt", None),
    ],
)
def test_known_teacher_failures_are_named_before_judging(text: str, lang: str, reason: str | None) -> None:
    assert failure_reason(text, lang) == reason


def test_echoed_labels_and_quotes_are_stripped_from_replies() -> None:
    assert clean_reply("**Novo pedido:** Vocês entregam no Recife?") == "Vocês entregam no Recife?"
    assert clean_reply('Rewritten prompt: "Do you ship abroad?"') == "Do you ship abroad?"
    assert clean_reply("Oi: tudo bem?") == "Oi: tudo bem?"


def test_seed_language_is_told_by_stopwords() -> None:
    assert detect_language("Vocês aceitam pagamento por Pix? Sim, o pedido segue no mesmo dia.") == "pt"
    assert detect_language("How do I reset my password? Click the link we send you.") == "en"


def test_novelty_rejects_a_near_copy_and_admits_a_new_row() -> None:
    pool = NoveltyPool()
    pool.add("a", "Qual é o prazo de entrega para São Paulo capital?\nDe 2 a 3 dias úteis após o pagamento.")
    copy = pool.closest("Qual o prazo de entrega para São Paulo capital?\nDe 2 a 3 dias úteis após o pagamento.")
    new = pool.closest("Vocês aceitam Pix?\nSim, aceitamos Pix e o pedido segue no mesmo dia.")
    assert novelty_reason(copy, 0.7, 0.8) is not None and copy.rouge_l_id == "a"
    assert novelty_reason(new, 0.7, 0.8) is None


# --- the stage -----------------------------------------------------------------------------------------


def rouge_l(a: str, b: str) -> float:
    """Plain dynamic-programming ROUGE-L F1, independent of the stage's rapidfuzz version."""
    x, y = words(a), words(b)
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        cur = [0]
        for j, yj in enumerate(y):
            cur.append(prev[j] + 1 if xi == yj else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(y), lcs / len(x)
    return 2 * p * r / (p + r)


def assert_expansion_contract(seeds: pl.DataFrame, out: Path, report, tokenizer, cfg: ExpandConfig) -> None:
    """Every input row unchanged, synthetic rows well-formed, descending from train, new against the pool."""
    report.check()
    examples = pl.read_parquet(out / "examples.parquet")
    assert examples.schema == pl.Schema(EXAMPLE_SCHEMA)
    assert examples.head(seeds.height).equals(seeds)
    synthetic = examples.slice(seeds.height)
    candidates = pl.read_parquet(out / "candidates.parquet")
    accepted = candidates.filter("accepted")
    assert synthetic.height == accepted.height == report.metrics["accepted"]
    assert synthetic["synthetic"].all() and (synthetic["split"] == "train").all()
    train_ids = set(seeds.filter(pl.col("split") == "train")["id"])
    assert set(synthetic["parent_id"]) <= train_ids  # no synthetic row descends from val/test
    assert (synthetic["score"] >= (cfg.threshold - 1) / 4).all()  # the contract's 0-1 scale
    ExampleModel.validate(examples)  # real and synthetic rows alike
    for row in synthetic.iter_rows(named=True):
        assert row["id"] == example_id(row["system"], row["instruction"], row["input"], row["output"])
        assert row["n_tokens"] == count_tokens(tokenizer, row)
    # the Self-Instruct rule, recomputed independently against every other row of the final pool
    texts = [novelty_text(r) for r in examples.iter_rows(named=True)]
    for k in range(seeds.height, len(texts)):
        others = texts[:k]  # seeds and the rows accepted before this one
        assert max(rouge_l(texts[k], o) for o in others) <= cfg.novelty_rouge_l
        sig = minhash_signature(texts[k])
        assert max(float((minhash_signature(o) == sig).mean()) for o in others) <= 0.8
    finished = candidates.filter("finished")
    assert report.rows_in == seeds.height + finished.height
    assert report.rows_out == seeds.height + synthetic.height
    assert pl.read_parquet(out / "quarantine.parquet").height == report.rows_quarantined
    assert report.rows_deduplicated == finished["reason"].str.starts_with("too_similar").sum()
    assert (out / "scores.png").stat().st_size > 0
    for name in ("candidates", "accepted", "calls", "cache_hits", "tokens", "cost"):
        assert name in report.metrics


def test_expansion_over_http_keeps_the_contract_and_a_rerun_makes_no_call(
    seeds, tmp_path: Path, tokenizer, model_cache: Path
) -> None:
    path, frame = seeds
    server = ScriptedServer(copy_every=4)  # every 4th reply echoes the seed: novelty must catch those
    cfg = expand_cfg()
    with running(server) as url:
        teacher = http_teacher(url, tmp_path, concurrency=4)
        report = run_expand(path, cfg, teacher, model_cache, tmp_path / "out")
        assert_expansion_contract(frame, tmp_path / "out", report, tokenizer, cfg)
        assert report.metrics["accepted"] > 0 and report.rows_deduplicated > 0
        assert report.metrics["calls"] == len(server.log) and report.metrics["cache_hits"] == 0
        served = len(server.log)
        again = run_expand(path, cfg, teacher, model_cache, tmp_path / "again")
    assert len(server.log) == served  # every call came from the on-disk cache
    assert again.metrics["calls"] == 0 and again.metrics["cache_hits"] == served
    assert pl.read_parquet(tmp_path / "again" / "examples.parquet").equals(
        pl.read_parquet(tmp_path / "out" / "examples.parquet")
    )


def test_portuguese_seeds_get_portuguese_prompts(seeds, tmp_path: Path, model_cache: Path) -> None:
    path, frame = seeds
    server = ScriptedServer()
    with running(server) as url:
        run_expand(path, expand_cfg(max_candidates=12), http_teacher(url, tmp_path), model_cache, tmp_path / "out")
    candidates = pl.read_parquet(tmp_path / "out" / "candidates.parquet")
    by_seed = {r["id"]: r for r in frame.iter_rows(named=True)}
    assert set(candidates["lang"]) == {"pt", "en"}
    mutation_prompts = [
        b["messages"][-1]["content"]
        for b in server.log
        if b["messages"][0]["content"].startswith(("You rewrite", "Você reescreve"))
    ]
    for cand in candidates.iter_rows(named=True):
        seed = by_seed[cand["parent_id"]]
        request = seed["input"] or seed["instruction"]
        prompt = next(p for p in mutation_prompts if request in p)
        assert prompt.startswith(("Reescreva", "Escreva", "Melhore")) == (cand["lang"] == "pt")
        assert cand["lang"] == detect_language(f"{request} {seed['output']}")


@pytest.mark.parametrize(
    "caps",
    [
        {"max_calls": 7},
        {"max_tokens": 2500},
        {"max_cost": 0.002},
    ],
)
def test_budget_caps_are_never_exceeded_under_concurrency(seeds, tmp_path: Path, model_cache: Path, caps: dict) -> None:
    path, _ = seeds
    server = ScriptedServer(latency_s=0.02)
    cfg = expand_cfg(max_candidates=40, **caps)
    with running(server) as url:
        teacher = http_teacher(
            url, tmp_path, concurrency=8, price_per_1k_prompt_tokens=0.1, price_per_1k_completion_tokens=0.4
        )
        report = run_expand(path, cfg, teacher, model_cache, tmp_path / "out")
    assert report.metrics["calls"] == len(server.log) <= cfg.max_calls
    assert report.metrics["tokens"] <= cfg.max_tokens
    assert report.metrics["cost"] <= cfg.max_cost + 1e-12
    assert report.metrics["budget_exhausted"] == 1.0
    report.check()


def test_a_priced_teacher_spends_nothing_with_the_default_money_cap(seeds, tmp_path: Path, model_cache: Path) -> None:
    path, _ = seeds
    server = ScriptedServer()
    with running(server) as url:
        teacher = http_teacher(url, tmp_path, price_per_1k_prompt_tokens=0.15)
        report = run_expand(path, expand_cfg(max_cost=0.0), teacher, model_cache, tmp_path / "out")
    assert server.log == [] and report.metrics["calls"] == 0 and report.notes == ["budget reached: expand.max_cost"]


def test_failed_calls_are_counted_and_never_become_examples(seeds, tmp_path: Path, model_cache: Path) -> None:
    path, frame = seeds
    server = ScriptedServer(fail_first=[500] * 6)
    with running(server) as url:
        teacher = http_teacher(url, tmp_path, max_retries=1, concurrency=1)
        report = run_expand(path, expand_cfg(max_candidates=5), teacher, model_cache, tmp_path / "out")
    candidates = pl.read_parquet(tmp_path / "out" / "candidates.parquet")
    failed = candidates.filter(pl.col("reason") == "call_failed")
    assert report.metrics["failed_calls"] == 3 and failed.height == 3  # 2 tries each (a retry) for 3 candidates
    assert not failed["finished"].any()
    assert pl.read_parquet(tmp_path / "out" / "examples.parquet").height == frame.height + report.metrics["accepted"]
    report.check()


def test_disabled_expansion_passes_rows_through(seeds, tmp_path: Path, model_cache: Path) -> None:
    path, frame = seeds
    report = run_expand(path, ExpandConfig(enabled=False), TeacherConfig(), model_cache, tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / "examples.parquet").equals(frame)
    assert report.check().metrics["accepted"] == 0 and report.rows_out == frame.height


def test_examples_without_the_contract_columns_are_refused(tmp_path: Path, model_cache: Path) -> None:
    bad = tmp_path / "examples.parquet"
    pl.DataFrame({"instruction": ["x"], "output": ["y"]}).write_parquet(bad)
    with pytest.raises(ExpandInputError, match=r"examples\.parquet lacks the Example columns"):
        run_expand(bad, expand_cfg(), TeacherConfig(), model_cache, tmp_path / "out")


KILLABLE = """
import sys
from pathlib import Path
from tasks.config.data import DataConfig
from tasks.config.expand import ExpandConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.expand import expand_examples
args = dict(a.split("=", 1) for a in sys.argv[1:])
teacher = TeacherConfig(kind="openai", base_url=args["url"], model="scripted", calls_dir=args["calls"], concurrency=1)
cfg = ExpandConfig(mutations={"constraint": 1, "breadth": 1}, target_size=100, max_candidates=30, max_calls=500,
                   max_tokens=10**6)
expand_examples(Path(args["seeds"]), cfg, teacher, ModelConfig(), DataConfig(), Path(args["cache"]),
                Path(args["out"]), seed=7)
"""


def cached_digests(calls: Path) -> set[str]:
    return {request_digest(json.loads(f.read_text())["request"]) for f in calls.rglob("*.json")}


def test_a_killed_expansion_reruns_without_repeating_a_finished_call(seeds, tmp_path: Path, model_cache: Path) -> None:
    path, _ = seeds
    calls = tmp_path / "calls"
    server = ScriptedServer(latency_s=0.1)
    with running(server) as url:
        args = [f"url={url}", f"calls={calls}", f"seeds={path}", f"cache={model_cache}", f"out={tmp_path / 'out'}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, *args], env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while len(list(calls.rglob("*.json"))) < 8:
            assert proc.poll() is None, "the expansion ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = cached_digests(calls)
        assert not (tmp_path / "out" / "examples.parquet").exists()
        first_run = len(server.log)
        teacher = http_teacher(url, tmp_path)
        report = run_expand(
            path,
            ExpandConfig(
                mutations={"constraint": 1, "breadth": 1},
                target_size=100,
                max_candidates=30,
                max_calls=500,
                max_tokens=10**6,
            ),
            teacher,
            model_cache,
            tmp_path / "out",
        )
    rerun = [request_digest(b) for b in server.log[first_run:]]
    assert not finished & set(rerun)  # the server never saw a finished request again
    assert report.metrics["cache_hits"] >= len(finished)
    assert report.metrics["calls"] == len(rerun)


# --- real teachers: the embedded model, and the same model served over HTTP by `afinar serve` --------------


@pytest.mark.slow
def test_expansion_with_the_embedded_teacher(seeds, tmp_path: Path, tokenizer, model_cache: Path) -> None:
    path, frame = seeds
    cfg = expand_cfg(max_candidates=3, mutate_max_tokens=32, answer_max_tokens=48, judge_max_tokens=32)
    teacher = TeacherConfig(calls_dir=str(tmp_path / "calls"), concurrency=1)
    report = run_expand(path, cfg, teacher, model_cache, tmp_path / "out")
    assert_expansion_contract(frame, tmp_path / "out", report, tokenizer, cfg)
    candidates = pl.read_parquet(tmp_path / "out" / "candidates.parquet")
    assert candidates.height == 3 and report.metrics["calls"] >= 3
    assert report.metrics["calls"] + report.metrics["cache_hits"] == len(list((tmp_path / "calls").rglob("*.json")))


@pytest.mark.slow
def test_expansion_with_the_served_embedded_model_over_http(
    seeds, tmp_path: Path, tokenizer, model_cache: Path
) -> None:
    from tasks.serve import serving

    path, frame = seeds
    cfg = expand_cfg(max_candidates=3, mutate_max_tokens=32, answer_max_tokens=48, judge_max_tokens=32)
    with serving("embedded", cache_dir=model_cache, model_id="afinar-embedded") as url:
        teacher = TeacherConfig(
            kind="openai", base_url=url, model="afinar-embedded", calls_dir=str(tmp_path / "calls"), concurrency=2
        )
        report = run_expand(path, cfg, teacher, model_cache, tmp_path / "out")
    assert_expansion_contract(frame, tmp_path / "out", report, tokenizer, cfg)
    assert report.metrics["calls"] >= 3 and report.metrics["failed_calls"] == 0
    # the served model counts tokens with the same tokenizer: the budget's estimate is exact here
    assert report.metrics["tokens"] <= cfg.max_tokens


def test_nothing_unredacted_reaches_the_teacher(tmp_path: Path, tokenizer, model_cache: Path) -> None:
    path = tmp_path / "examples.parquet"
    frame = write_seed_examples(path, tokenizer)
    email, phone = "maria.souza@example.com", "(11) 98765-4321"
    leaky = pl.col("split") == "train"
    frame = frame.with_columns(
        pl.when(leaky).then(pl.col("output") + f" Escreva para {email} ou ligue {phone}.").otherwise("output")
    )
    frame.write_parquet(path)
    server = ScriptedServer()
    with running(server) as url:
        report = run_expand(
            path, expand_cfg(max_candidates=6), http_teacher(url, tmp_path), model_cache, tmp_path / "o"
        )
    sent = json.dumps(server.log, ensure_ascii=False)
    assert server.log and email not in sent and "98765" not in sent
    assert "[EMAIL]" in sent and report.metrics["redacted_email"] > 0
