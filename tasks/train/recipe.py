"""The train stage as one recipe: examples → packed batches → LoRA/QLoRA/full fine-tune → adapter.

Read top to bottom: load and tokenize the train/val rows (over-length rows are quarantined), lay out
every optimizer step's micro-batches up front (a pure function of the seed, so a resumed run sees the
same data order), build the model, then a plain loop: forward/backward on output tokens only,
clip, step, log, evaluate on val, stop early, checkpoint. Several processes (torchrun) split each
step's micro-batches; the loss is normalised by the step's global token count, so one process and
N processes compute the same gradient.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
import torch.distributed as dist
from transformers import get_cosine_schedule_with_warmup

from tasks.accounting import StageReport, quarantine_rows, write_quarantine
from tasks.config.model import ModelConfig
from tasks.config.train import TrainConfig
from tasks.model_loading import load_model, load_tokenizer
from tasks.train.batching import (
    collate,
    corpus_loss,
    output_loss_sum,
    plan_micro_batches,
    tokenize_examples,
)
from tasks.train.checkpoints import (
    best_path,
    drop_other_bests,
    latest_checkpoint,
    load_checkpoint,
    load_trainable_state,
    save_best,
    save_checkpoint,
)

log = logging.getLogger("afinar.train")

REQUIRED_COLUMNS = ("instruction", "input", "output", "split", "source", "origin")


class TrainingDataError(ValueError):
    """The examples file cannot be trained on (missing columns, no train rows)."""


class TrainingDeviceError(RuntimeError):
    """The configured method or precision needs hardware or packages this machine lacks."""


# ---------------------------------------------------------------- data


def read_examples(path: Path) -> pl.DataFrame:
    """The Example rows of the train and val splits, in file order."""
    if not path.is_file():
        raise TrainingDataError(f"{path}: examples file not found (run the expand stage first)")
    frame = pl.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"{path}: missing Example columns {missing}; expected the Example contract")
    if "system" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("system"))
    return frame.filter(pl.col("split").is_in(["train", "val"]))


Step = list[list[list[int]] | None]  # one optimizer step: world × accumulation micro-batches (None: idle)


def plan_steps(lengths: list[int], cfg: TrainConfig, seed: int, world: int) -> list[tuple[int, Step]]:
    """Every optimizer step of the run as (epoch, micro-batches), each epoch reshuffled from the seed."""
    per_step = world * cfg.gradient_accumulation_steps

    def epoch_plan(epoch: int) -> list[list[list[int]]]:
        return plan_micro_batches(lengths, cfg.per_device_batch_size, cfg.max_seq_len, cfg.packing, seed * 1000 + epoch)

    first = epoch_plan(0)
    wanted = cfg.max_steps * per_step if cfg.max_steps > 0 else math.ceil(cfg.epochs * len(first))
    stream: list[tuple[int, list[list[int]]]] = []
    epoch = 0
    while len(stream) < wanted:
        stream += [(epoch, mb) for mb in (first if epoch == 0 else epoch_plan(epoch))]
        epoch += 1
    stream = stream[:wanted]
    steps: list[tuple[int, Step]] = []
    for start in range(0, len(stream), per_step):
        chunk = stream[start : start + per_step]
        micro: Step = [mb for _, mb in chunk]
        steps.append((chunk[0][0], micro + [None] * (per_step - len(micro))))
    return steps


# ---------------------------------------------------------------- processes and model


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, *values: float) -> list[float]:
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()


def join_processes() -> Processes:
    """This process's place: alone, or one of the processes torchrun started (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(int(os.environ.get("RANK", "0")), world, device)


def compute_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on a GPU that supports it (precision=auto), or what the config forces."""
    if cfg.precision == "fp32":
        return torch.float32
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision != "auto":
        raise ValueError(f"train.precision={cfg.precision!r}: expected auto | fp32 | bf16")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16 else torch.float32


def build_model(
    model_cfg: ModelConfig, cfg: TrainConfig, cache_dir: Path, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """The base model with a LoRA/DoRA adapter (4-bit base for QLoRA), or all weights trainable (full)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    kwargs: dict[str, Any] = {"attn_implementation": cfg.attn_implementation}
    if cfg.method == "qlora":
        if device.type != "cuda":
            raise TrainingDeviceError(
                "train.method=qlora needs a CUDA GPU (bitsandbytes 4-bit); on this machine use train=lora"
            )
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise TrainingDeviceError("train.method=qlora needs `pip install afinar[gpu]`") from exc
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device}
    elif cfg.method not in ("lora", "full"):
        raise ValueError(f"train.method={cfg.method!r}: expected lora | qlora | full")
    # frozen base weights may live in the compute dtype; trained weights stay fp32 (autocast does the rest)
    weights_dtype = dtype if cfg.method == "lora" else torch.float32
    model = load_model(model_cfg, cache_dir, dtype=weights_dtype, **kwargs)
    model.config.use_cache = False
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method != "full":
        adapter = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            use_dora=cfg.lora.use_dora,
            target_modules=list(cfg.lora.target_modules or model_cfg.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, adapter)
    return model.to(device) if cfg.method != "qlora" else model


def distribute(model: torch.nn.Module, cfg: TrainConfig, procs: Processes) -> torch.nn.Module:
    """Wrap for several processes: DDP, a full replica per process (gradients of trainable weights synced)."""
    if procs.world == 1:
        return model
    if cfg.distributed != "ddp":
        raise TrainingDeviceError(
            f"train.distributed={cfg.distributed!r}: only ddp is implemented; FSDP (sharded weights) is not yet"
        )
    ids = [procs.device.index] if procs.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------- the stage


def train_adapter(
    examples_path: Path, model: ModelConfig, cfg: TrainConfig, cache_dir: Path, out_dir: Path, seed: int
) -> StageReport:
    """Fine-tune on the train split, validate on val; writes adapter/, series.jsonl, loss_curve.png.

    A folder that already holds checkpoints is resumed from the last one, with the same result as an
    uninterrupted run. With `train.nproc > 1` the training runs under torchrun in that many processes.
    """
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_processes(examples_path, model, cfg, cache_dir, out_dir, seed)
    procs = join_processes()
    try:
        return _train(Path(examples_path), model, cfg, Path(cache_dir), Path(out_dir), seed, procs)
    finally:
        if procs.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    examples_path: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    cache_dir: Path,
    out_dir: Path,
    seed: int,
    procs: Processes,
) -> StageReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = read_examples(examples_path)
    tokenizer = load_tokenizer(model_cfg, cache_dir)
    train_rows = frame.filter(pl.col("split") == "train").to_dicts()
    val_rows = frame.filter(pl.col("split") == "val").to_dicts()
    train_seqs, rejected = tokenize_examples(train_rows, tokenizer, cfg.max_seq_len, "train")
    val_seqs, rejected_val = tokenize_examples(val_rows, tokenizer, cfg.max_seq_len, "train")
    if not train_seqs:
        raise TrainingDataError(
            f"{examples_path}: no train rows to learn from ({len(train_rows)} train rows read, "
            f"{len(rejected)} longer than train.max_seq_len={cfg.max_seq_len})"
        )
    pad_id = int(tokenizer.pad_token_id)
    steps = plan_steps([len(s) for s in train_seqs], cfg, seed, procs.world)

    # ---- model, optimizer, schedule
    dtype = compute_dtype(cfg, procs.device)
    torch.manual_seed(seed)  # adapter init
    net = distribute(build_model(model_cfg, cfg, cache_dir, procs.device, dtype), cfg, procs)
    torch.manual_seed(seed + procs.rank)  # dropout
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = math.ceil(cfg.warmup_ratio * len(steps))
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, len(steps))
    autocast = torch.autocast(procs.device.type, dtype=dtype, enabled=dtype != torch.float32)

    # ---- resume
    ckpt_root = out_dir / "checkpoints"
    series_path = out_dir / "series.jsonl"
    state: dict[str, Any] = {"step": 0, "best_val": math.inf, "best_step": 0, "bad_evals": 0, "stopped": False}
    state.update(series=[], tokens=0, train_seconds=0.0, cpu_seconds=0.0)
    resume_from = latest_checkpoint(ckpt_root)
    if resume_from is not None:
        state = load_checkpoint(resume_from, unwrap(net), optimizer, scheduler, procs.rank, procs.world)
        log.info("resuming from %s (step %d of %d)", resume_from, state["step"], len(steps))
    if procs.main:  # the series up to the checkpoint; a killed run may have logged further
        series_path.write_text("".join(json.dumps(p) + "\n" for p in state["series"]))

    def record(point: dict[str, Any]) -> None:
        state["series"].append(point)
        if procs.main:
            with series_path.open("a") as handle:
                handle.write(json.dumps(point) + "\n")

    def val_loss() -> float:
        net.eval()
        total, count = corpus_loss(
            net,
            val_seqs[procs.rank :: procs.world],
            pad_id,
            cfg.per_device_batch_size,
            cfg.max_seq_len,
            procs.device,
            autocast,
        )
        net.train()
        total, count = procs.all_sum(total, count)
        return total / max(count, 1)

    # ---- the loop
    net.train()
    for k in range(state["step"], len(steps)):
        if state["stopped"]:
            break
        epoch, micro = steps[k]
        step_targets = sum(sum(train_seqs[i].n_targets for row in mb for i in row) for mb in micro if mb)
        mine = micro[procs.rank :: procs.world]
        started, cpu_started = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), device=procs.device)
        tokens = 0
        for j, rows in enumerate(mine):
            # an idle slot (end of the run) still joins the gradient all-reduce, with zero weight
            weight = 1.0 if rows is not None else 0.0
            batch = collate(train_seqs, rows or next(mb for mb in micro if mb), pad_id).to(procs.device)
            last = j == len(mine) - 1
            sync = contextlib.nullcontext() if last or procs.world == 1 else net.no_sync()
            with sync:
                with autocast:
                    summed = output_loss_sum(net, batch)
                # DDP averages gradients over processes: scale so the result is sum / global tokens
                (summed * (weight * procs.world / step_targets)).backward()
            loss_sum += summed.detach() * weight
            tokens += batch.n_tokens if rows is not None else 0
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        state["cpu_seconds"] += time.process_time() - cpu_started
        total_loss, tokens_all, seconds = procs.all_sum(float(loss_sum), tokens, seconds)
        seconds /= procs.world
        state["step"] = k + 1
        state["tokens"] += int(tokens_all)
        state["train_seconds"] += seconds
        step = k + 1
        if step % cfg.log_every_steps == 0 or step == len(steps):
            record(
                {
                    "step": step,
                    "train/loss": total_loss / step_targets,
                    "train/learning_rate": scheduler.get_last_lr()[0],
                    "train/tokens_per_s": tokens_all / max(seconds, 1e-9),
                    "train/epoch": epoch,
                }
            )
        if val_seqs and (step % cfg.eval_every_steps == 0 or step == len(steps)):
            loss = val_loss()
            record({"step": step, "val/loss": loss})
            if loss < state["best_val"]:
                state["best_val"], state["best_step"], state["bad_evals"] = loss, step, 0
                if procs.main and cfg.restore_best:
                    save_best(ckpt_root, step, unwrap(net))
            else:
                state["bad_evals"] += 1
                if 0 < cfg.early_stopping_patience <= state["bad_evals"]:
                    log.info("early stop at step %d: val loss did not improve for %d evals", step, state["bad_evals"])
                    state["stopped"] = True
            log.info("step %d/%d val loss %.4f (best %.4f)", step, len(steps), loss, state["best_val"])
        if step % cfg.save_every_steps == 0 and step < len(steps) and not state["stopped"]:
            save_checkpoint(
                ckpt_root,
                step,
                unwrap(net),
                optimizer,
                scheduler,
                state,
                procs.rank,
                procs.world,
                cfg.keep_checkpoints,
            )

    # ---- outputs
    if procs.world > 1:
        dist.barrier()
    if cfg.restore_best and state["best_step"]:
        load_trainable_state(unwrap(net), best_path(ckpt_root, state["best_step"]))
        if procs.main:
            drop_other_bests(ckpt_root, state["best_step"])
    train_points = [p for p in state["series"] if "train/loss" in p]
    report = StageReport(
        stage="train",
        rows_in=len(train_rows) + len(val_rows),
        rows_out=len(train_seqs) + len(val_seqs),
        rows_quarantined=len(rejected) + len(rejected_val),
        metrics={
            "final_loss": train_points[-1]["train/loss"] if train_points else math.nan,
            "best_val_loss": state["best_val"] if val_seqs else math.nan,
            "tokens": float(state["tokens"]),
            "mean_tokens_per_s": state["tokens"] / max(state["train_seconds"], 1e-9),
            "train_seconds": state["train_seconds"],
            "cpu_seconds": state["cpu_seconds"],  # this process's CPU time in the steps (all threads)
            "steps": float(state["step"]),
            "planned_steps": float(len(steps)),
            "early_stopped": float(state["stopped"]),
            "train_examples": float(len(train_seqs)),
            "val_examples": float(len(val_seqs)),
        },
        artifacts={"loss_curve": "loss_curve.png", "series": "series.jsonl"},
    )
    if not val_seqs:
        report.notes.append("no val rows: no validation, early stopping or best-checkpoint selection")
    if procs.main:
        adapter_dir = out_dir / "adapter"
        unwrap(net).save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        if write_quarantine([quarantine_rows("train", rejected + rejected_val)], out_dir / "quarantine.parquet"):
            report.artifacts["quarantine"] = "quarantine.parquet"
        plot_loss_curve(state["series"], out_dir / "loss_curve.png")
        (out_dir / "train_report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def plot_loss_curve(series: list[dict[str, Any]], path: Path) -> None:
    """Train loss per step and val loss per evaluation, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(p["step"], p["train/loss"]) for p in series if "train/loss" in p]
    val = [(p["step"], p["val/loss"]) for p in series if "val/loss" in p]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (output tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- several processes


def launch_processes(
    examples_path: Path, model: ModelConfig, cfg: TrainConfig, cache_dir: Path, out_dir: Path, seed: int
) -> StageReport:
    """Run this stage under torchrun with `cfg.nproc` processes on this machine; returns rank 0's report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={cfg.nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "tasks.train",
        "--examples",
        str(examples_path),
        "--out",
        str(out_dir),
        "--cache",
        str(cache_dir),
        "--seed",
        str(seed),
        "--model-json",
        json.dumps(asdict(model)),
        "--train-json",
        json.dumps(asdict(cfg)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // cfg.nproc))}
    subprocess.run(cmd, check=True, env=env)
    return StageReport.load(out_dir / "train_report.json")
