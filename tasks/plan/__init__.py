"""`afinar plan`: before anything is spent, which model, which method, which hyperparameters, what it costs,
and whether fine-tuning is worth it at all — from the data, the hardware and the model catalog.

`build_plan` is the pure decision (tests and the flow call it); `plan_for_run` plans for a run's examples
inside the flow; `main` is the command line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tasks.config import compose, section_as
from tasks.config.data import DataConfig
from tasks.config.model import ModelConfig
from tasks.config.plan import PlanConfig
from tasks.config.train import TrainConfig
from tasks.plan.catalog import load_catalog
from tasks.plan.data_stats import DataStats, PlanDataError, read_data_stats, stats_from_examples
from tasks.plan.estimates import Setup, peak_memory, train_seconds
from tasks.plan.hardware import Hardware, detect_hardware
from tasks.plan.recommend import UnknownModelError, build_plan

__all__ = ["build_plan", "detect_hardware", "load_catalog", "main", "plan_for_run", "read_data_stats"]

OVERRIDE = re.compile(r"^[\w.+~-]+=")


def _hardware(cfg: PlanConfig) -> Hardware:
    return detect_hardware(cfg.gpus, cfg.gpu_memory_gb, cfg.gpu_name, cfg.cpu)


def run_estimates(cfg: DictConfig, stats: DataStats, hw: Hardware) -> dict[str, float]:
    """Peak memory and time for the run's own model and train settings (to compare with what it measures)."""
    model = section_as(cfg.model, ModelConfig)
    train = section_as(cfg.train, TrainConfig)
    plan = section_as(cfg.plan, PlanConfig)
    precision = train.precision if train.precision != "auto" else ("bf16" if hw.gpus else "fp32")
    setup = Setup(
        train.method,
        precision,
        train.per_device_batch_size,
        train.max_seq_len,
        stats.target_share,
        lora_r=train.lora.r,
        lora_dropout=train.lora.dropout > 0,
        gradient_checkpointing=train.gradient_checkpointing,
    )
    peak = peak_memory(model, setup, plan, hw.gpus > 0)
    tokens = stats.train_tokens * train.epochs
    seconds = train_seconds(model, setup, tokens, plan, hw.gpus, hw.gpu_name, hw.cpu_cores)
    return {"peak_memory_gb": round(peak.value, 3), "train_hours": round(seconds.value / 3600, 4)}


def plan_for_run(cfg: DictConfig, examples_path: Path) -> dict[str, Any]:
    """The plan for a run's `examples.parquet` on this machine, plus estimates for the run's own settings."""
    from tasks.model_loading import load_tokenizer

    plan_cfg = section_as(cfg.plan, PlanConfig)
    tokenizer = load_tokenizer(section_as(cfg.model, ModelConfig), cfg.paths.cache)
    stats = stats_from_examples(examples_path, tokenizer, plan_cfg.max_token_sample)
    hw = _hardware(plan_cfg)
    plan = build_plan(plan_cfg.objective, stats, hw, load_catalog(), plan_cfg)
    plan["run"] = {"model": str(cfg.model.name), "method": str(cfg.train.method), **run_estimates(cfg, stats, hw)}
    return plan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afinar plan",
        description="Recommend model, method, hyperparameters and costs for your data and hardware. "
        "Extra key=value arguments are Hydra overrides (e.g. plan.gpu_hour_usd=1.2).",
    )
    parser.add_argument(
        "--data", nargs="+", type=Path, required=True, help="raw files, a stage folder or examples.parquet"
    )
    parser.add_argument("--objective", default=None, help="what the tuned model should do, in a sentence")
    hw = parser.add_mutually_exclusive_group()
    hw.add_argument("--gpus", type=int, default=None, help="number of GPUs (overrides detection)")
    hw.add_argument("--cpu", action="store_true", help="plan for CPU only, even if a GPU is present")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GB", help="memory of each GPU")
    parser.add_argument("--gpu-name", default=None, help="e.g. 'RTX 4090', 'A100' (sets the assumed TFLOPS)")
    parser.add_argument("--model", default=None, help="pin a catalog entry (conf/model/NAME.yaml)")
    parser.add_argument("--commercial-use", action="store_true", help="only models whose licence allows it")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    return parser


def main(argv: list[str]) -> int:
    """`afinar plan --data PATH... [--objective TEXT] [--gpus N --gpu-memory GB | --cpu] [--json]`; exit code."""
    overrides = [a for a in argv if OVERRIDE.match(a) and not Path(a).exists()]
    parser = _parser()
    args = parser.parse_args([a for a in argv if a not in overrides])
    if args.cpu and (args.gpu_memory is not None or args.gpu_name):
        parser.error("--cpu plans without GPUs: drop --gpu-memory/--gpu-name, or use --gpus N instead")
    if args.gpu_memory is not None and args.gpus is None and not args.cpu:
        args.gpus = 1
    cfg = compose(overrides)
    plan_cfg = section_as(cfg.plan, PlanConfig)
    plan_cfg = replace(
        plan_cfg,
        objective=args.objective if args.objective is not None else plan_cfg.objective,
        commercial_use=args.commercial_use or plan_cfg.commercial_use,
        model=args.model or plan_cfg.model,
        gpus=args.gpus if args.gpus is not None else plan_cfg.gpus,
        gpu_memory_gb=args.gpu_memory if args.gpu_memory is not None else plan_cfg.gpu_memory_gb,
        gpu_name=args.gpu_name or plan_cfg.gpu_name,
        cpu=args.cpu or plan_cfg.cpu,
    )
    from tasks.extract.errors import ExtractError
    from tasks.model_loading import load_tokenizer, offline_environment

    offline_environment()  # the embedded tokenizer is local; nothing here needs the network
    try:
        tokenizer = load_tokenizer(ModelConfig(), cfg.paths.cache)
        stats = read_data_stats(list(args.data), section_as(cfg.data, DataConfig), tokenizer, plan_cfg.max_token_sample)
        plan = build_plan(plan_cfg.objective, stats, _hardware(plan_cfg), load_catalog(), plan_cfg)
    except (PlanDataError, UnknownModelError, ExtractError, ValueError) as error:
        print(f"afinar plan: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan, ensure_ascii=False, default=str))
    else:
        from tasks.plan.report import print_report

        print_report(plan)
    return 0
