"""The machine a plan is for: detected (CUDA GPUs and their memory, else CPU cores and RAM) or given."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Hardware:
    gpus: int
    gpu_memory_gb: float  # per GPU; 0 without GPUs
    gpu_name: str | None
    cpu_cores: int
    ram_gb: float
    detected: bool

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus > 0 else "cpu"

    def describe(self) -> str:
        if self.gpus:
            return f"{self.gpus}× {self.gpu_name or 'GPU'} ({self.gpu_memory_gb:.0f} GB each)"
        return f"CPU only: {self.cpu_cores} cores, {self.ram_gb:.0f} GB RAM"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind}


def _ram_gb() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 1e9
    except ImportError:  # psutil comes with mlflow, but the planner should not depend on it
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def detect_hardware(
    gpus: int | None = None, gpu_memory_gb: float | None = None, gpu_name: str | None = None, cpu: bool = False
) -> Hardware:
    """What this machine has, with any of the user's overrides applied (`cpu=True` ignores GPUs)."""
    import torch

    found = 0 if cpu else torch.cuda.device_count()
    memory, name = 0.0, None
    if found:
        props = torch.cuda.get_device_properties(0)
        memory, name = props.total_memory / 1e9, props.name
    n = 0 if cpu else (gpus if gpus is not None else found)
    if n and gpu_memory_gb is None and not found:
        raise ValueError("--gpus without a detected GPU needs --gpu-memory GB (the memory of each GPU)")
    return Hardware(
        gpus=n,
        gpu_memory_gb=(gpu_memory_gb if gpu_memory_gb is not None else memory) if n else 0.0,
        gpu_name=gpu_name or name if n else None,
        cpu_cores=_cpu_cores(),
        ram_gb=_ram_gb(),
        detected=gpus is None and gpu_memory_gb is None and not cpu,
    )
