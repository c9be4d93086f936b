"""Stages are cached on their inputs and config: same inputs, same settings, same code → same folder.

A stage folder is named by a hash of the stage's config section, the content of its input files
and the afinar version; a finished stage leaves `report.json`, and a rerun finds and reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from tasks.accounting import StageReport

CACHE_VERSION = "1"


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_inputs(paths: Iterable[Path]) -> str:
    """Content hash of files and folders (every file below a folder, by relative path)."""
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            rel = f.relative_to(root) if root.is_dir() else Path(root.name)
            digest.update(str(rel).encode())
            digest.update(hash_file(f).encode() if f.exists() else b"missing")
    return digest.hexdigest()


def stage_key(stage: str, settings: Any, inputs: Iterable[Path] = ()) -> str:
    """Hash of the stage's settings (including upstream stage keys) and the content of raw input files."""
    payload = json.dumps({"stage": stage, "settings": settings, "v": CACHE_VERSION}, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode())
    digest.update(hash_inputs(inputs).encode())
    return digest.hexdigest()[:16]


def run_cached(
    stage: str,
    stages_dir: Path,
    settings: Any,
    work: Callable[[Path], StageReport],
    inputs: Iterable[Path] = (),
    upstream: Iterable[Path] = (),
) -> tuple[Path, StageReport, bool]:
    """Run `work(out_dir)` unless a finished folder for the same key exists; returns (dir, report, cached).

    `inputs` are raw files hashed by content; `upstream` are earlier stage folders, whose names
    are already their keys.
    """
    settings = {"settings": settings, "upstream": [Path(u).name for u in upstream]}
    out_dir = stages_dir / stage / stage_key(stage, settings, list(inputs))
    done = out_dir / "report.json"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir) + ".lock"):
        if done.is_file():
            return out_dir, StageReport.load(done), True
        # a killed earlier attempt leaves its files: stages overwrite them, training resumes from them
        out_dir.mkdir(parents=True, exist_ok=True)
        report = work(out_dir).check()
        report.save(done)
    return out_dir, report, False
