"""Training throughput three ways on the same examples: afinar's train stage, a plain transformers
Trainer padding each batch to its longest example (what a user writes first), and a forward+backward
loop on full dense batches of afinar's micro-batch shape (this machine's ceiling).

    python benchmarks/bench_train.py [--examples work/stages/expand/<key>/examples.parquet] [--threads N]

Prints useful (non-padding) tokens per second of wall time and per CPU-second (the shared machine's
neighbours move wall time; CPU time much less), and the ratios. LoRA r 16 on all linear layers, fp32,
one epoch over the train split, the same examples in all three.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads stall a busy CPU

import polars as pl  # noqa: E402
import torch  # noqa: E402

from tasks.config.model import ModelConfig  # noqa: E402
from tasks.config.train import TrainConfig  # noqa: E402
from tasks.model_loading import load_model, load_tokenizer  # noqa: E402
from tasks.train import train_adapter  # noqa: E402
from tasks.train.batching import tokenize_examples  # noqa: E402
from tasks.train.recipe import plan_steps  # noqa: E402


def default_examples() -> Path:
    """The newest demo run's expanded examples, else the test fixture's support answers."""
    runs = sorted((ROOT / "work" / "stages" / "expand").glob("*/examples.parquet"), key=lambda p: p.stat().st_mtime)
    if runs:
        return runs[-1]
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_support_examples

    out = Path(tempfile.mkdtemp()) / "examples.parquet"
    return write_support_examples(out, load_tokenizer(ModelConfig(), ROOT / "work" / "cache"), 40, 8, 0)


def lora_model(model_cfg: ModelConfig, cache: Path, cfg: TrainConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = load_model(model_cfg, cache)
    adapter = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(model_cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, adapter)


def run_afinar(examples: Path, model_cfg: ModelConfig, cfg: TrainConfig, cache: Path) -> tuple[float, float, float]:
    """(useful tokens, wall s, CPU s) of the train stage's own steps (no val, no checkpoints)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = train_adapter(examples, model_cfg, cfg, cache, Path(tmp) / "train", seed=0)
    m = report.metrics
    return m["tokens"], m["train_seconds"], m["cpu_seconds"]


def run_padded_trainer(
    sequences: list[tuple[list[int], list[int]]], model_cfg: ModelConfig, cfg: TrainConfig, cache: Path, batch: int
) -> tuple[float, float, float]:
    """A stock Trainer: DataCollatorForSeq2Seq pads every batch to its longest example."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = load_tokenizer(model_cfg, cache)
    data = [{"input_ids": ids, "labels": labels} for ids, labels in sequences]  # a list is a map-style dataset
    model = lora_model(model_cfg, cache, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            num_train_epochs=1,
            learning_rate=cfg.learning_rate,
            logging_steps=1000,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=data, data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True)
        )
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return float(sum(len(ids) for ids, _ in sequences)), wall, cpu


def run_dense_ceiling(
    stream: list[int], model_cfg: ModelConfig, cfg: TrainConfig, cache: Path, steps: int
) -> tuple[float, float, float]:
    """Forward+backward+AdamW on rows × max_seq_len batches of real tokens: no padding, no masks."""
    model = lora_model(model_cfg, cache, cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    shape = (cfg.per_device_batch_size, cfg.max_seq_len)
    per_batch = shape[0] * shape[1]
    tokens = torch.tensor((stream * (1 + steps * per_batch // len(stream)))[: steps * per_batch]).view(steps, *shape)
    wall, cpu = time.perf_counter(), time.process_time()
    for ids in tokens:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return float(tokens.numel()), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=ROOT / "work" / "cache")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default, one per core)")
    parser.add_argument("--trainer-batch", type=int, default=8, help="examples per padded Trainer batch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    examples = args.examples or default_examples()
    model_cfg = ModelConfig()
    cfg = TrainConfig(epochs=1, eval_every_steps=10**9, save_every_steps=10**9, restore_best=False, warmup_ratio=0.0)

    tokenizer = load_tokenizer(model_cfg, args.cache)
    rows = pl.read_parquet(examples).filter(pl.col("split") == "train").to_dicts()
    seqs, rejected = tokenize_examples(rows, tokenizer, cfg.max_seq_len, "train")
    pairs = [(s.input_ids, [-100, *s.targets[:-1]]) for s in seqs]  # back to HF's unshifted labels
    useful = sum(len(s) for s in seqs)
    print(f"examples: {examples}")
    print(
        f"{len(seqs)} train examples ({len(rejected)} over max_seq_len {cfg.max_seq_len}), {useful} tokens, "
        f"mean {useful / len(seqs):.0f}; torch threads {torch.get_num_threads()}; LoRA r {cfg.lora.r}, fp32"
    )

    results: dict[str, tuple[float, float, float]] = {}
    results["afinar (packed, output-only logits)"] = run_afinar(examples, model_cfg, cfg, args.cache)
    afinar_steps = len(plan_steps([len(s) for s in seqs], cfg, 0, 1))
    results[f"Trainer, padded batches of {args.trainer_batch}"] = run_padded_trainer(
        pairs, model_cfg, cfg, args.cache, args.trainer_batch
    )
    stream = [t for s in seqs for t in s.input_ids]
    results[f"dense ceiling {cfg.per_device_batch_size}x{cfg.max_seq_len}"] = run_dense_ceiling(
        stream, model_cfg, cfg, args.cache, afinar_steps
    )

    print("\n| way | useful tokens | wall s | tokens/s (wall) | CPU s | tokens per CPU-s |")
    print("|---|---|---|---|---|---|")
    for name, (tokens, wall, cpu) in results.items():
        print(f"| {name} | {tokens:.0f} | {wall:.1f} | {tokens / wall:.1f} | {cpu:.1f} | {tokens / cpu:.1f} |")
    names = list(results)
    rate = {n: (results[n][0] / results[n][1], results[n][0] / results[n][2]) for n in names}
    a, padded, ceiling = names
    for other, label in ((padded, "padded Trainer"), (ceiling, "dense ceiling")):
        wall, cpu = rate[a][0] / rate[other][0], rate[a][1] / rate[other][1]
        print(f"afinar / {label}: {wall:.2f}x (wall), {cpu:.2f}x (CPU)")


if __name__ == "__main__":
    main()
