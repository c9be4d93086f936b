"""The expand stage: grow the train split with teacher-written variations that judges score and novelty admits.

Story: read the examples → plan candidates (a train seed and a mutation each) → in waves, the teacher
writes each candidate (a mutated request and its answer, or a rewritten answer); known failures,
redaction, validation and the judges decide; novelty against the whole pool admits the survivors in
plan order → write the examples (every input row unchanged + the accepted rows), every candidate for
review, the quarantine and a score histogram → report counts, calls, tokens and cost.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pandera.errors import SchemaErrors

from tasks.accounting import StageReport, quarantine_rows, write_quarantine
from tasks.chat_format import count_tokens
from tasks.config.data import DataConfig
from tasks.config.expand import ExpandConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.expand.budget import Budget, BudgetExhausted
from tasks.expand.judges import SCALE, compare_pair, failure_reason, judge_panel
from tasks.expand.mutations import (
    MUTATIONS,
    answer_messages,
    clean_reply,
    detect_language,
    mutation_messages,
    request_text,
    with_request,
)
from tasks.expand.novelty import NoveltyPool, novelty_reason, novelty_text, rouge_l
from tasks.records import EXAMPLE_SCHEMA, example_id
from tasks.schemas import ExampleModel
from tasks.teachers import CachedTeacher, TeacherError, make_teacher
from tasks.transform.redact import Redactor

STAGE = "expand"
TEXT_FIELDS = ("system", "instruction", "input", "output")


class ExpandInputError(ValueError):
    """The examples file cannot be expanded (missing, or without the Example columns)."""


@dataclass
class Plan:
    index: int
    seed: dict[str, Any]
    mutation: str
    lang: str
    call_seed: int


@dataclass
class Candidate:
    index: int
    mutation: str
    lang: str
    parent_id: str
    system: str | None = None
    instruction: str = ""
    input: str = ""
    output: str = ""
    finished: bool = False  # the teacher wrote a whole example (else it is no row, only a counted failure)
    score: float | None = None
    votes: str = "[]"  # the judges' parsed scores, as JSON
    judge_replies: str = "[]"  # what the judges said, as JSON
    pair: str | None = None  # win | loss | inconsistent, for rewrites
    rouge_l: float | None = None
    minhash: float | None = None
    accepted: bool = False
    reason: str | None = None
    detail: str | None = None
    source: str = ""
    origin: str = ""
    n_tokens: int | None = None
    id: str | None = None


def _call_seed(seed: int, index: int) -> int:
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16)


def plan_candidates(seeds: pl.DataFrame, cfg: ExpandConfig, seed: int) -> list[Plan]:
    """Up to `max_candidates` (seed row, mutation) pairs: seeds in a shuffled round-robin, mutations by weight."""
    unknown = sorted(set(cfg.mutations) - set(MUTATIONS))
    if unknown:
        raise ValueError(f"expand.mutations: unknown {unknown}; choose from {list(MUTATIONS)}")
    kinds = [k for k, w in cfg.mutations.items() if w > 0]
    if not kinds or seeds.is_empty():
        return []
    rng = random.Random(seed)
    rows = seeds.to_dicts()
    rng.shuffle(rows)
    weights = [cfg.mutations[k] for k in kinds]
    plans = []
    for i in range(cfg.max_candidates):
        row = rows[i % len(rows)]
        lang = detect_language(f"{request_text(row)} {row['output']}")
        plans.append(Plan(i, row, rng.choices(kinds, weights)[0], lang, _call_seed(seed, i)))
    return plans


class Expansion:
    """One expansion run: the teacher, the budget, the pool and the settings every candidate shares."""

    def __init__(
        self,
        cfg: ExpandConfig,
        teacher: CachedTeacher,
        data: DataConfig,
        pool: NoveltyPool,
        redact: Callable[[str], str],
    ) -> None:
        self.cfg = cfg
        self.teacher = teacher
        self.data = data
        self.pool = pool
        self.redact = redact
        self.minhash_max = cfg.novelty_minhash if cfg.novelty_minhash is not None else data.transform.dedup_threshold

    def write(self, plan: Plan) -> Candidate:
        """The teacher writes one candidate; known failures, validation and the judges may reject it."""
        seed = plan.seed
        cand = Candidate(plan.index, plan.mutation, plan.lang, seed["id"], source=seed["source"])
        cand.origin = f"expand:{plan.mutation}#{plan.index}<-{seed['origin']}"
        try:
            row = self._generate(plan, cand)
            if row is None:
                return cand
            self._judge(plan, cand, row)
        except BudgetExhausted as err:
            cand.reason, cand.detail = "budget_exhausted", str(err)
        except TeacherError as err:
            cand.reason, cand.detail = "call_failed", str(err)
        return cand

    def _generate(self, plan: Plan, cand: Candidate) -> dict[str, Any] | None:
        seed, cfg, lang = plan.seed, self.cfg, plan.lang
        temperature = self.teacher.cfg.temperature
        if plan.mutation == "rewrite":
            reply = self.teacher.complete(
                mutation_messages("rewrite", seed, lang),
                max_tokens=cfg.answer_max_tokens,
                temperature=temperature,
                seed=plan.call_seed,
            )
            row = {**seed, "output": clean_reply(reply.text)}
        else:
            reply = self.teacher.complete(
                mutation_messages(plan.mutation, seed, lang),
                max_tokens=cfg.mutate_max_tokens,
                temperature=temperature,
                seed=plan.call_seed,
            )
            request = clean_reply(reply.text)
            row = with_request(seed, request)
            why = failure_reason(request, lang)
            detail = "in the mutated request"
            if why is None and (same := rouge_l(request, request_text(seed))) > cfg.novelty_rouge_l:
                # Self-Instruct compares requests: a near-echo of the seed's is no mutation, and needs no answer
                why, detail = "too_similar_rouge_l", f"request rouge_l={same:.2f}>{cfg.novelty_rouge_l} vs its seed"
            if why is not None:
                cand.finished = True
                self._fill(cand, {**row, "output": ""})
                cand.reason, cand.detail = why, detail
                return None
            answer = self.teacher.complete(
                answer_messages(seed, row),
                max_tokens=cfg.answer_max_tokens,
                temperature=temperature,
                seed=plan.call_seed + 1,
            )
            row["output"] = clean_reply(answer.text)
        cand.finished = True
        # synthetic rows pass the same redaction as real ones before anything else sees them
        row = {k: (self.redact(v) if k in TEXT_FIELDS and isinstance(v, str) else v) for k, v in row.items()}
        self._fill(cand, row)
        if (why := failure_reason(row["output"], lang)) is not None:
            cand.reason, cand.detail = why, "in the answer"
            return None
        if cand.n_tokens is not None and cand.n_tokens > self.data.transform.max_tokens:
            cand.reason = "too_long"
            cand.detail = f"{cand.n_tokens} tokens > data.transform.max_tokens={self.data.transform.max_tokens}"
            return None
        closest = self.pool.closest(novelty_text(row))  # the seeds alone: no judge call for a copy
        cand.rouge_l, cand.minhash = closest.rouge_l, closest.jaccard
        if (why2 := novelty_reason(closest, cfg.novelty_rouge_l, self.minhash_max)) is not None:
            cand.reason, cand.detail = why2
            return None
        return row

    def _fill(self, cand: Candidate, row: Mapping[str, Any]) -> None:
        cand.system = row.get("system")
        cand.instruction, cand.input, cand.output = str(row["instruction"]), str(row["input"] or ""), str(row["output"])
        if cand.output.strip() and cand.instruction.strip():
            cand.n_tokens = count_tokens(self.teacher.tokenizer, row)
            cand.id = example_id(cand.system, cand.instruction, cand.input, cand.output)

    def _judge(self, plan: Plan, cand: Candidate, row: dict[str, Any]) -> None:
        cfg = self.cfg
        verdict = judge_panel(
            self.teacher,
            plan.seed,
            row,
            plan.lang,
            judges=cfg.judges,
            aggregate=cfg.aggregate,
            max_tokens=cfg.judge_max_tokens,
            call_seed=plan.call_seed + 10,
            judge_format=cfg.judge_format,
        )
        cand.score, cand.votes = verdict.score, json.dumps(verdict.votes)
        cand.judge_replies = json.dumps(verdict.replies, ensure_ascii=False)
        if verdict.score is None:
            cand.reason, cand.detail = "judge_unparseable", "no judge answered with a score"
            return
        if verdict.score < cfg.threshold:
            cand.reason, cand.detail = "below_threshold", f"score {verdict.score:.2f} < {cfg.threshold}"
            return
        if plan.mutation == "rewrite" and cfg.pairwise_rewrite:
            cand.pair = compare_pair(
                self.teacher,
                request_text(row),
                plan.seed["output"],
                row["output"],
                plan.lang,
                max_tokens=4,
                call_seed=plan.call_seed + 20,
            )
            if cand.pair != "win":
                cand.reason, cand.detail = f"pair_{cand.pair}", "the seed's answer was not beaten in both orders"

    def admit(self, cand: Candidate) -> None:
        """Final novelty check against the pool, accepted rows of this wave included; accept or say why not."""
        if cand.reason is not None or not cand.finished:
            return
        row = {"instruction": cand.instruction, "input": cand.input, "output": cand.output}
        closest = self.pool.closest(novelty_text(row))
        cand.rouge_l, cand.minhash = closest.rouge_l, closest.jaccard
        if (why := novelty_reason(closest, self.cfg.novelty_rouge_l, self.minhash_max)) is not None:
            cand.reason, cand.detail = why
            return
        invalid = _invalid(_synthetic_rows([cand]))
        if invalid:  # the same pandera model real rows are held to
            cand.reason, cand.detail = "invalid_example", invalid
            return
        cand.accepted = True
        self.pool.add(str(cand.id), novelty_text(row))


def _invalid(rows: pl.DataFrame) -> str | None:
    """None when `ExampleModel` accepts the rows, else the failed checks."""
    try:
        ExampleModel.validate(rows, lazy=True)
    except SchemaErrors as err:
        cases = err.failure_cases
        return "; ".join(sorted({f"{c}: {k}" for c, k in zip(cases["column"], cases["check"], strict=True)}))
    return None


def _read_examples(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise ExpandInputError(f"expand: {path} does not exist; run the transform stage first")
    frame = pl.read_parquet(path)
    missing = sorted(set(EXAMPLE_SCHEMA) - set(frame.columns))
    if missing:
        raise ExpandInputError(f"expand: {path} lacks the Example columns {missing}; rebuild it with transform")
    return frame.select(list(EXAMPLE_SCHEMA)).cast(EXAMPLE_SCHEMA)  # type: ignore[arg-type]


def expand_examples(
    examples_path: Path,
    cfg: ExpandConfig,
    teacher: TeacherConfig,
    model: ModelConfig,
    data: DataConfig,
    cache_dir: Path,
    out_dir: Path,
    seed: int,
) -> StageReport:
    """Input rows unchanged + accepted synthetic train rows to `out_dir/examples.parquet`; candidates for review."""
    examples = _read_examples(examples_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        shutil.copyfile(examples_path, out_dir / "examples.parquet")
        write_quarantine([], out_dir / "quarantine.parquet")
        return StageReport(
            STAGE,
            examples.height,
            examples.height,
            metrics={"candidates": 0, "accepted": 0},
            artifacts={"examples": "examples.parquet"},
            notes=["expand.enabled=false: passed through"],
        )
    started = time.monotonic()
    client = make_teacher(teacher, model, cache_dir)
    budget = Budget(cfg.max_calls, cfg.max_tokens, cfg.max_cost, client.price)
    client.gate = budget
    pool = NoveltyPool()
    for row in examples.iter_rows(named=True):  # every split: a synthetic row must not echo val/test either
        pool.add(row["id"], novelty_text(row))
    # only train rows seed; they are redacted again here, so nothing unredacted reaches a remote teacher
    redactor = Redactor(data.transform.redact_names)
    redact_lock = threading.Lock()

    def redact(text: str) -> str:
        with redact_lock:  # the redactor keeps counts
            return redactor.redact(text)

    seeds = examples.filter(pl.col("split") == "train").with_columns(
        [pl.col(c).map_elements(redact, return_dtype=pl.String) for c in TEXT_FIELDS]
    )
    expansion = Expansion(cfg, client, data, pool, redact)
    candidates: list[Candidate] = []
    plans = plan_candidates(seeds, cfg, seed)
    accepted = 0
    with ThreadPoolExecutor(max_workers=max(1, teacher.concurrency)) as pool_exec:
        for start in range(0, len(plans), max(1, cfg.wave_size)):
            wave = list(pool_exec.map(expansion.write, plans[start : start + cfg.wave_size]))
            for cand in wave:  # plan order, so the outcome does not depend on the concurrency
                if accepted >= cfg.target_size and cand.reason is None and cand.finished:
                    cand.reason, cand.detail = "target_reached", f"expand.target_size={cfg.target_size} reached"
                expansion.admit(cand)
                accepted += cand.accepted
            candidates += wave
            if accepted >= cfg.target_size or budget.exhausted_by:
                break
    report = _write_outputs(examples, candidates, client, budget, cfg, out_dir, time.monotonic() - started)
    report.metrics.update({f"redacted_{kind}": n for kind, n in redactor.counts.items()})
    return report


def unit_score(score: float | None) -> float | None:
    """The judges' 1-5 scale mapped onto the Example contract's 0-1 `score`."""
    return None if score is None else (score - SCALE[0]) / (SCALE[1] - SCALE[0])


def _synthetic_rows(candidates: list[Candidate]) -> pl.DataFrame:
    """Example rows for these candidates (score on the contract's 0-1 scale)."""
    rows = [
        {
            "id": c.id,
            "system": c.system,
            "instruction": c.instruction,
            "input": c.input,
            "output": c.output,
            "source": c.source,
            "origin": c.origin,
            "split": "train",
            "synthetic": True,
            "parent_id": c.parent_id,
            "score": unit_score(c.score),
            "n_tokens": c.n_tokens,
        }
        for c in candidates
    ]
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)


def _candidates_frame(candidates: list[Candidate]) -> pl.DataFrame:
    rows = [asdict(c) for c in candidates]
    schema = {
        "index": pl.Int64,
        "mutation": pl.String,
        "lang": pl.String,
        "parent_id": pl.String,
        "system": pl.String,
        "instruction": pl.String,
        "input": pl.String,
        "output": pl.String,
        "finished": pl.Boolean,
        "score": pl.Float64,
        "votes": pl.String,
        "judge_replies": pl.String,
        "pair": pl.String,
        "rouge_l": pl.Float64,
        "minhash": pl.Float64,
        "accepted": pl.Boolean,
        "reason": pl.String,
        "detail": pl.String,
        "source": pl.String,
        "origin": pl.String,
        "n_tokens": pl.Int64,
        "id": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def _plot_scores(candidates: list[Candidate], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [1 + 0.25 * i for i in range(17)]
    for accepted, label in ((True, "accepted"), (False, "rejected")):
        scores = [c.score for c in candidates if c.score is not None and c.accepted == accepted]
        ax.hist(scores, bins=bins, alpha=0.7, label=f"{label} ({len(scores)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold}")
    ax.set_xlabel("judge score (1-5)")
    ax.set_ylabel("candidates")
    ax.set_title("expand: judge scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_outputs(
    examples: pl.DataFrame,
    candidates: list[Candidate],
    client: CachedTeacher,
    budget: Budget,
    cfg: ExpandConfig,
    out_dir: Path,
    seconds: float,
) -> StageReport:
    synthetic = _synthetic_rows([c for c in candidates if c.accepted])
    pl.concat([examples, synthetic]).write_parquet(out_dir / "examples.parquet")
    _candidates_frame(candidates).write_parquet(out_dir / "candidates.parquet")
    finished = [c for c in candidates if c.finished]
    novelty = [c for c in finished if c.reason and c.reason.startswith("too_similar")]
    rejected = [c for c in finished if not c.accepted and c not in novelty]
    quarantined = quarantine_rows(
        STAGE,
        [{"source": c.source, "origin": c.origin, "reason": c.reason, "payload": asdict(c)} for c in rejected],
    )
    write_quarantine([quarantined], out_dir / "quarantine.parquet")
    _plot_scores(candidates, cfg.threshold, out_dir / "scores.png")
    stats = client.stats
    metrics: dict[str, float] = {
        "candidates": len(finished),
        "accepted": synthetic.height,
        "acceptance_rate": synthetic.height / len(finished) if finished else 0.0,
        "unfinished": len(candidates) - len(finished),
        "calls": stats.calls,
        "cache_hits": stats.cache_hits,
        "failed_calls": stats.failed_calls,
        "tokens": stats.tokens,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "cost": stats.cost,
        "budget_exhausted": float(budget.exhausted_by is not None),
        "seconds": seconds,
    }
    scores = [c.score for c in finished if c.score is not None]
    if scores:
        metrics["score_mean"] = sum(scores) / len(scores)
    for kind, n in Counter(c.mutation for c in finished).items():
        metrics[f"candidates_{kind}"] = n
    for kind, n in Counter(c.mutation for c in finished if c.accepted).items():
        metrics[f"accepted_{kind}"] = n
    for reason, n in Counter(str(c.reason).split(":")[0] for c in candidates if c.reason).items():
        metrics[f"rejected_{reason}"] = n
    notes = [f"budget reached: expand.{budget.exhausted_by}"] if budget.exhausted_by else []
    report = StageReport(
        STAGE,
        rows_in=examples.height + len(finished),
        rows_out=examples.height + synthetic.height,
        rows_quarantined=len(rejected),
        rows_deduplicated=len(novelty),
        metrics=metrics,
        artifacts={
            "examples": "examples.parquet",
            "candidates": "candidates.parquet",
            "quarantine": "quarantine.parquet",
            "scores": "scores.png",
            "summary": "summary.md",
        },
        notes=notes,
    )
    summary = _summary_markdown(report)
    (out_dir / "summary.md").write_text(summary)
    _publish(summary)
    return report


def _summary_markdown(report: StageReport) -> str:
    lines = ["# expand", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:g} |" for k, v in sorted(report.metrics.items())]
    lines += ["", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines)


def _publish(summary: str) -> None:
    """The summary as a Prefect artifact when running inside a flow (a plain call has no run to attach to)."""
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(summary, key="afinar-expand", description="expand: candidates, accepted, calls")
