"""How close are the planner's estimates to what LoRA training of the embedded model really uses on this CPU?

For a few micro-batch sizes and sequence lengths, a fresh process loads SmolLM2-135M (fp32), wraps it
in LoRA as the train stage does, and runs a few AdamW steps of the train stage's own loss
(`tasks.train.batching.output_loss_sum`, logits only on learned tokens). It records the peak resident
memory over the steps (VmHWM, reset after loading, so glibc's heap growth over the first steps counts)
and the seconds per step, and prints them next to `tasks.plan.estimates` for the same setup, with the
ratio estimate / measured. The CPU is shared, so wall time depends on the neighbours and multi-threaded
CPU time counts OpenMP spin-waits: the steps run on ONE thread and the estimate for one core is compared
with the CPU-seconds per step (the wall time it would take on an idle core); wall time is shown too.

    python benchmarks/bench_plan.py            # ~2-3 minutes on a shared 2-core CPU
    python benchmarks/bench_plan.py --steps 2 --configs 1x256 4x128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET_SHARE = 0.5  # the second half of every row is the learned reply
# the first four calibrated plan.cpu_gflops_per_core; 2x256 was not used for it (a held-out check)
DEFAULT_CONFIGS = ["1x64", "4x64", "1x256", "2x128gc", "2x256"]


def _rss_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def measure(batch: int, seq: int, checkpointing: bool, steps: int, cache: str) -> dict[str, float]:
    """One configuration in this (fresh) process: peak RSS over the steps and median seconds per step."""
    import torch

    torch.set_num_threads(1)
    baseline = _rss_gb("VmRSS")
    from peft import LoraConfig, get_peft_model

    from tasks.config.model import ModelConfig
    from tasks.model_loading import load_model
    from tasks.train.batching import IGNORE, MicroBatch, output_loss_sum

    runtime = _rss_gb("VmRSS")
    cfg = ModelConfig()
    model = load_model(cfg, cache)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=cfg.lora_target_modules)
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    targets = torch.roll(ids, -1, dims=1)
    targets[:, : int(seq * (1 - TARGET_SHARE))] = IGNORE
    targets[:, -1] = IGNORE
    mb = MicroBatch(ids, torch.arange(seq).repeat(batch, 1), targets, batch * seq, int((targets != IGNORE).sum()))

    def step() -> float:
        start = time.perf_counter()
        loss = output_loss_sum(model, mb) / mb.n_targets
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    loaded = _rss_gb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: measure the steps, not the loading
    step()  # warm-up (first-call kernels); its memory counts, its time does not
    walls, cpus = [], []
    for _ in range(steps):
        cpu = time.process_time()
        walls.append(step())
        cpus.append(time.process_time() - cpu)
    return {
        "baseline_gb": baseline,
        "runtime_gb": runtime,
        "loaded_gb": loaded,
        "peak_gb": _rss_gb("VmHWM"),
        "wall_s_per_step": sorted(walls)[len(walls) // 2],
        "cpu_s_per_step": sorted(cpus)[len(cpus) // 2],
        "threads": torch.get_num_threads(),
    }


def estimate(batch: int, seq: int, checkpointing: bool) -> dict[str, float]:
    from tasks.config.model import ModelConfig
    from tasks.config.plan import PlanConfig
    from tasks.plan.estimates import Setup, peak_memory, train_seconds

    cfg, model = PlanConfig(), ModelConfig()
    setup = Setup("lora", "fp32", batch, seq, TARGET_SHARE, lora_r=16, gradient_checkpointing=checkpointing)
    peak = peak_memory(model, setup, cfg, gpu=False)
    seconds = train_seconds(model, setup, batch * seq, cfg, 0, None, cpu_cores=1)
    return {"peak_gb": peak.value, "s_per_step": seconds.value, **{f"est_{k}": v for k, v in peak.parts.items()}}


def parse(config: str) -> tuple[int, int, bool]:
    gc = config.endswith("gc")
    batch, seq = config.removesuffix("gc").split("x")
    return int(batch), int(seq), gc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="BATCHxSEQ, suffix gc: checkpointing")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cache", default=str(ROOT / "work" / "cache"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure one config, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*parse(args.one), args.steps, args.cache)))
        return
    rows = []
    print(
        f"{'config':>9} | {'peak GB meas':>12} {'est':>6} {'ratio':>6} | {'CPU s/step':>11} {'est':>6} {'ratio':>6}"
        f" | {'wall s/step':>11} | {'GFLOP per CPU-s':>15}"
    )
    from tasks.config.model import ModelConfig
    from tasks.plan.estimates import Setup, flops_per_token

    for config in args.configs:
        batch, seq, gc = parse(config)
        out = subprocess.run(
            [sys.executable, __file__, "--one", config, "--steps", str(args.steps), "--cache", args.cache],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        meas = json.loads(out.strip().splitlines()[-1])
        est = estimate(batch, seq, gc)
        f = flops_per_token(ModelConfig(), Setup("lora", "fp32", batch, seq, TARGET_SHARE, gradient_checkpointing=gc))
        idle = meas["cpu_s_per_step"]
        gflops = f.value * batch * seq / meas["cpu_s_per_step"] / 1e9
        rows.append({"config": config, "measured": meas, "estimate": est, "gflops_per_cpu_s": gflops})
        print(
            f"{config:>9} | {meas['peak_gb']:12.2f} {est['peak_gb']:6.2f} {est['peak_gb'] / meas['peak_gb']:6.2f} | "
            f"{idle:11.2f} {est['s_per_step']:6.2f} {est['s_per_step'] / idle:6.2f} | "
            f"{meas['wall_s_per_step']:11.2f} | {gflops:15.1f}",
            flush=True,
        )
    first = rows[0]["measured"]
    print(
        f"\nprocess RSS: {first['baseline_gb']:.2f} GB bare python+torch, {first['runtime_gb']:.2f} GB with "
        f"transformers+peft imported (planner assumes runtime_overhead_gb_cpu); torch threads {first['threads']}"
    )
    rates = sorted(r["gflops_per_cpu_s"] for r in rows)
    print(f"GFLOP per CPU-second, median {rates[len(rates) // 2]:.1f} (planner: plan.cpu_gflops_per_core)")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
