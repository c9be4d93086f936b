"""The evaluate stage: the tuned model against its base on the test split, and the verdict register uses.

Both models answer the same test rows: loss and perplexity on the reference's output tokens (the same
packed loss training uses), greedy answers scored against the reference with ROUGE-L and chrF, and,
optionally, a judge (the teacher) picking the better answer in both orders. Writes `verdict.json`,
`samples.parquet` and `samples.md`; inside a Prefect run the samples also become a table artifact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import polars as pl
import torch
from rapidfuzz.distance import LCSseq
from sacrebleu.metrics import CHRF
from transformers import PreTrainedTokenizerBase

from tasks.accounting import StageReport, quarantine_rows, write_quarantine
from tasks.chat_format import end_of_turn_ids, example_messages, prompt_ids
from tasks.config.eval import EvalConfig
from tasks.config.model import ModelConfig
from tasks.config.teacher import TeacherConfig
from tasks.model_loading import load_model, load_tokenizer
from tasks.train.batching import corpus_loss, tokenize_examples

HIGHER_IS_BETTER = {"loss": False, "perplexity": False, "rouge_l": True, "chrf": True, "judge_win_rate": True}


class EvaluationDataError(ValueError):
    """The examples file has nothing to evaluate on (no test rows, missing columns)."""


# ---------------------------------------------------------------- inputs


def read_test_rows(path: Path, max_examples: int, seed: int) -> tuple[list[dict[str, Any]], int]:
    """At most `max_examples` test rows (a seeded sample, in file order) and how many the split has."""
    if not path.is_file():
        raise EvaluationDataError(f"{path}: examples file not found (run the expand stage first)")
    frame = pl.read_parquet(path)
    if "split" not in frame.columns or "output" not in frame.columns:
        raise EvaluationDataError(f"{path}: not an Example file (needs `split` and `output` columns)")
    if "system" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("system"))
    test = frame.with_row_index("_row").filter(pl.col("split") == "test")
    if test.is_empty():
        raise EvaluationDataError(
            f"{path}: no rows with split == 'test' to evaluate on; the transform stage assigns the split"
        )
    if test.height > max_examples:
        test = test.sample(max_examples, seed=seed).sort("_row")
    return test.drop("_row").to_dicts(), frame.filter(pl.col("split") == "test").height


@contextmanager
def base_and_tuned(
    adapter_dir: Path, model_cfg: ModelConfig, cache_dir: Path
) -> Iterator[tuple[Callable[[], Any], torch.nn.Module]]:
    """The tuned model and a context that turns it back into its base (adapter off).

    A full fine-tune (no `adapter_config.json`) loads as its own model next to the base.
    """
    if (adapter_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(load_model(model_cfg, cache_dir), adapter_dir).eval()
        yield tuned.disable_adapter, tuned
        return
    from transformers import AutoModelForCausalLM

    base = load_model(model_cfg, cache_dir).eval()
    tuned = AutoModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32).eval()
    holder: dict[str, torch.nn.Module] = {"model": tuned}

    @contextmanager
    def as_base() -> Iterator[None]:
        holder["model"] = base
        try:
            yield
        finally:
            holder["model"] = tuned

    yield as_base, _Switch(holder)


class _Switch(torch.nn.Module):
    """Forwards to whichever model `base_and_tuned` has selected (full fine-tunes only)."""

    def __init__(self, holder: dict[str, torch.nn.Module]) -> None:
        super().__init__()
        self._holder = holder

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._holder["model"](*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self._holder["model"].generate(*args, **kwargs)


# ---------------------------------------------------------------- scores


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased words (longest common subsequence)."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    lcs = LCSseq.similarity(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def generate_answers(
    model: Any, tokenizer: PreTrainedTokenizerBase, rows: list[Mapping[str, Any]], cfg: EvalConfig
) -> list[str]:
    """Greedy answers under the shared chat template, batched by prompt length (left padding)."""
    prompts = [prompt_ids(tokenizer, example_messages(r)) for r in rows]
    stop = sorted({int(tokenizer.eos_token_id), end_of_turn_ids(tokenizer)[0]})
    answers = [""] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), cfg.generation_batch_size):
        chunk = order[start : start + cfg.generation_batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), int(tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]) :] = 1
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=cfg.max_new_tokens,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=int(tokenizer.pad_token_id),
        )
        for r, i in enumerate(chunk):
            answers[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True).strip()
    return answers


JUDGE_PROMPT = """You compare two answers to the same request. The reference answer shows what a good answer says.

Request:
{request}

Reference answer:
{reference}

Answer A:
{a}

Answer B:
{b}

Which answer is better, A or B? Reply with exactly one word: A, B or tie."""


def judge_win_rate(
    teacher: Any, rows: list[Mapping[str, Any]], base: list[str], tuned: list[str], seed: int
) -> tuple[float, int]:
    """The tuned answer's win rate against the base (ties and unclear verdicts count half), both orders.

    Returns (win rate, number of unclear verdicts).
    """
    points, unclear = 0.0, 0
    for row, b, t in zip(rows, base, tuned, strict=True):
        request = example_messages(row)[-1]["content"]
        for tuned_is_a in (True, False):
            a_text, b_text = (t, b) if tuned_is_a else (b, t)
            prompt = JUDGE_PROMPT.format(request=request, reference=row["output"], a=a_text, b=b_text)
            reply = teacher.complete(
                [{"role": "user", "content": prompt}], max_tokens=4, temperature=0.0, seed=seed
            ).text
            pick = re.match(r"\W*(A|B|tie)\b", reply, flags=re.IGNORECASE)
            verdict = pick.group(1).upper() if pick else ""
            if verdict in ("A", "B"):
                points += float((verdict == "A") == tuned_is_a)
            else:
                points += 0.5
                unclear += verdict != "TIE"
    return points / (2 * len(rows)), unclear


def verdict(metric: str, base: dict[str, float], tuned: dict[str, float]) -> dict[str, Any]:
    """Did the tuned model beat its base on `metric`; `delta` is the improvement (positive is better)."""
    if metric not in HIGHER_IS_BETTER or metric not in base:
        raise ValueError(f"eval.metric={metric!r} was not measured; measured: {sorted(base)}")

    def gain(name: str) -> float:
        sign = 1.0 if HIGHER_IS_BETTER[name] else -1.0
        return sign * (tuned[name] - base[name])

    delta = gain(metric)
    return {
        "metric": metric,
        "base": base,
        "tuned": tuned,
        "improved": bool(delta > 0),
        "delta": delta,
        "better_on": [m for m in base if m in tuned and gain(m) > 0],
    }


# ---------------------------------------------------------------- the stage


def evaluate_models(
    examples_path: Path,
    adapter_dir: Path,
    model: ModelConfig,
    cfg: EvalConfig,
    cache_dir: Path,
    out_dir: Path,
    seed: int,
    teacher_cfg: TeacherConfig | None = None,
) -> StageReport:
    """Base vs tuned on the test split; writes verdict.json, samples.parquet, samples.md (stage "eval")."""
    examples_path, adapter_dir, cache_dir, out_dir = map(Path, (examples_path, adapter_dir, cache_dir, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, available = read_test_rows(examples_path, cfg.max_examples, seed)
    tokenizer = load_tokenizer(model, cache_dir)
    sequences, rejected = tokenize_examples(rows, tokenizer, cfg.max_seq_len, "eval")
    kept = [rows[s.row] for s in sequences]
    if not kept:
        raise EvaluationDataError(f"{examples_path}: every sampled test row is longer than eval.max_seq_len")

    scores: dict[str, dict[str, float]] = {}
    answers: dict[str, list[str]] = {}
    torch.manual_seed(seed)
    with base_and_tuned(adapter_dir, model, cache_dir) as (as_base, net):
        for name, ctx in (("base", as_base), ("tuned", nullcontext)):
            with ctx():
                total, count = corpus_loss(net, sequences, int(tokenizer.pad_token_id), 8, cfg.max_seq_len, "cpu")
                loss = total / count
                scores[name] = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
                if cfg.generate:
                    answers[name] = generate_answers(net, tokenizer, kept, cfg)
    references = [str(r["output"]) for r in kept]
    per_row: dict[str, dict[str, list[float]]] = {}
    chrf = CHRF()
    for name, texts in answers.items():
        per_row[name] = {
            "rouge_l": [rouge_l(t, ref) for t, ref in zip(texts, references, strict=True)],
            "chrf": [chrf.sentence_score(t, [ref]).score for t, ref in zip(texts, references, strict=True)],
        }
        scores[name]["rouge_l"] = sum(per_row[name]["rouge_l"]) / len(texts)
        scores[name]["chrf"] = chrf.corpus_score(texts, [references]).score
    notes = []
    if cfg.judge_win_rate and answers:
        from tasks.teachers import make_teacher

        teacher = make_teacher(teacher_cfg or TeacherConfig(), model, cache_dir)
        win, unclear = judge_win_rate(teacher, kept, answers["base"], answers["tuned"], seed)
        scores["tuned"]["judge_win_rate"], scores["base"]["judge_win_rate"] = win, 1.0 - win
        if unclear:
            notes.append(f"judge: {unclear} unclear verdicts counted as ties")

    result = verdict(cfg.metric, scores["base"], scores["tuned"])
    (out_dir / "verdict.json").write_text(json.dumps(result, indent=2))
    samples = samples_frame(kept, answers, per_row)
    samples.write_parquet(out_dir / "samples.parquet")
    (out_dir / "samples.md").write_text(samples_markdown(result, samples, cfg.samples_in_markdown))
    publish_samples(samples)

    report = StageReport(
        stage="eval",
        rows_in=len(rows),
        rows_out=len(kept),
        rows_quarantined=len(rejected),
        metrics={
            **{f"{who}_{m}": v for who in ("base", "tuned") for m, v in scores[who].items()},
            "improved": float(result["improved"]),
            "delta": float(result["delta"]),
            "test_rows_available": float(available),
        },
        artifacts={"verdict": "verdict.json", "samples": "samples.parquet", "samples_md": "samples.md"},
        notes=[f"evaluated {len(kept)} of {available} test rows", *notes],
    )
    if write_quarantine([quarantine_rows("eval", rejected)], out_dir / "quarantine.parquet"):
        report.artifacts["quarantine"] = "quarantine.parquet"
    return report


def samples_frame(
    rows: list[Mapping[str, Any]], answers: dict[str, list[str]], per_row: dict[str, dict[str, list[float]]]
) -> pl.DataFrame:
    """One row per evaluated example: prompt, reference, both answers and their scores."""
    data: dict[str, list[Any]] = {
        "id": [str(r.get("id") or "") for r in rows],
        "origin": [str(r.get("origin") or "") for r in rows],
        "prompt": [example_messages(r)[-1]["content"] for r in rows],
        "reference": [str(r["output"]) for r in rows],
    }
    for who in ("base", "tuned"):
        data[f"{who}_answer"] = answers.get(who, [""] * len(rows))
        for metric in ("rouge_l", "chrf"):
            data[f"{who}_{metric}"] = per_row.get(who, {}).get(metric, [math.nan] * len(rows))
    return pl.DataFrame(data)


def _cell(text: Any, limit: int = 160) -> str:
    value = str(text).replace("|", "\\|").replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def samples_markdown(result: dict[str, Any], samples: pl.DataFrame, limit: int) -> str:
    """The verdict and the first `limit` samples as a markdown page."""
    lines = [
        "# Base vs tuned",
        "",
        f"**Verdict on `{result['metric']}`:** {'improved' if result['improved'] else 'not improved'} "
        f"(delta {result['delta']:+.4f}); better on: {', '.join(result['better_on']) or 'nothing'}",
        "",
        "| metric | base | tuned |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {result['base'][m]:.4f} | {result['tuned'][m]:.4f} |" for m in result["base"]]
    lines += ["", "| prompt | reference | base | tuned | ROUGE-L base → tuned |", "|---|---|---|---|---|"]
    for r in samples.head(limit).iter_rows(named=True):
        lines.append(
            f"| {_cell(r['prompt'])} | {_cell(r['reference'])} | {_cell(r['base_answer'])} | "
            f"{_cell(r['tuned_answer'])} | {r['base_rouge_l']:.2f} → {r['tuned_rouge_l']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def publish_samples(samples: pl.DataFrame) -> None:
    """The samples as a Prefect table artifact, when running inside a Prefect flow or task run."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect.artifacts import create_table_artifact

    table = [{k: _cell(v, 500) if isinstance(v, str) else v for k, v in r.items()} for r in samples.to_dicts()]
    create_table_artifact(table=table, key="eval-samples", description="afinar: base vs tuned answers on test rows")
