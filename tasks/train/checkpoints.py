"""Checkpoints that make a killed run resumable to the same result as an uninterrupted one.

A checkpoint holds the trainable weights, the optimizer and scheduler state, every process's RNG state
and the loop's own state (step, best val loss, the logged series). It is written to a staging folder
and renamed into place, so a run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the optimizer updates (the adapter for LoRA, everything for full fine-tuning)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, path: Path) -> None:
    """Copy saved trainable weights back; every trainable parameter must be in the file."""
    saved = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(saved))
    if missing:
        raise RuntimeError(f"{path}: checkpoint lacks {len(missing)} trainable weights, e.g. {missing[0]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name].to(param.device, param.dtype))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step:07d}"


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop_state: dict[str, Any],
    rank: int,
    world: int,
    keep: int,
) -> Path:
    """Write checkpoint `step` (every process calls this; rank 0 writes the shared parts and publishes)."""
    final = checkpoint_dir(root, step)
    staging = final.with_name(final.name + ".partial")
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    _barrier(world)
    torch.save(_rng_state(), staging / f"rng-{rank}.pt")
    if rank == 0:
        save_file(trainable_state(model), str(staging / "trainable.safetensors"))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "loop": loop_state},
            staging / "state.pt",
        )
    _barrier(world)
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in sorted(root.glob(f"{PREFIX}*[0-9]"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(world)
    return final


def best_path(root: Path, step: int) -> Path:
    return root / f"best-{PREFIX}{step:07d}.safetensors"


def save_best(root: Path, step: int, model: torch.nn.Module) -> None:
    """Keep the weights of the best val loss so far, named by step, so each checkpoint's best stays findable."""
    root.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(best_path(root, step)))


def drop_other_bests(root: Path, step: int) -> None:
    """At the end of a run: only the chosen best weights stay (earlier ones may be a checkpoint's best)."""
    for old in root.glob(f"best-{PREFIX}*.safetensors"):
        if old != best_path(root, step):
            old.unlink(missing_ok=True)


def latest_checkpoint(root: Path) -> Path | None:
    done = sorted(p for p in root.glob(f"{PREFIX}*[0-9]") if (p / "state.pt").is_file())
    return done[-1] if done else None


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
    world: int,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this process's RNG; returns the loop state."""
    rng_files = sorted(path.glob("rng-*.pt"))
    if len(rng_files) != world:
        raise RuntimeError(
            f"{path} was written by {len(rng_files)} processes but this run has {world}: "
            "resume with the same train.nproc, or delete the folder to start over"
        )
    load_trainable_state(model, path / "trainable.safetensors")
    state = torch.load(path / "state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(torch.load(path / f"rng-{rank}.pt", weights_only=True))
    return dict(state["loop"])


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()
