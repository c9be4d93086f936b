"""Expansion throughput against a local HTTP teacher: concurrency 1 versus 8 (calls per second and their ratio).

Two teachers: a fixed-latency OpenAI-compatible server (each reply sleeps like a remote API's round trip), where
concurrent calls overlap; and the embedded model served by `afinar serve` (tasks.serve), where one CPU-bound model
answers one request at a time. Every run starts with an empty call cache, so every call is real.

    python benchmarks/bench_expand.py [--latency-ms 200] [--candidates 24] [--served-candidates 4] [--only served]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from scripted_server import ScriptedServer, running  # noqa: E402
from seed_examples import write_seed_examples  # noqa: E402

from tasks.config.data import DataConfig  # noqa: E402
from tasks.config.expand import ExpandConfig  # noqa: E402
from tasks.config.model import ModelConfig  # noqa: E402
from tasks.config.teacher import TeacherConfig  # noqa: E402
from tasks.expand import expand_examples  # noqa: E402
from tasks.model_loading import load_tokenizer  # noqa: E402
from tasks.serve import serving  # noqa: E402

CACHE = ROOT / "work" / "cache"
MUTATIONS = {"constraint": 1.0, "deepen": 1.0, "concretise": 1.0, "reasoning": 1.0, "breadth": 1.0}


def expand_once(seeds: Path, url: str, model: str, concurrency: int, cfg: ExpandConfig, tmp: Path) -> tuple[int, float]:
    """(real calls, seconds) of one expansion with an empty call cache."""
    run = tmp / f"{model}-c{concurrency}"
    teacher = TeacherConfig(
        kind="openai", base_url=url, model=model, concurrency=concurrency, calls_dir=str(run / "calls"), timeout_s=600
    )
    start = time.perf_counter()
    report = expand_examples(seeds, cfg, teacher, ModelConfig(), DataConfig(), CACHE, run / "out", seed=1)
    seconds = time.perf_counter() - start
    assert report.metrics["cache_hits"] == 0 and report.metrics["failed_calls"] == 0
    return int(report.metrics["calls"]), seconds


def compare(label: str, seeds: Path, url: str, model: str, cfg: ExpandConfig, tmp: Path) -> None:
    # 1, 8, then 1 again: on a shared machine the load drifts, the repeat shows by how much
    results = {}
    for tag, c in (("1", 1), ("8", 8), ("1 again", 1)):
        results[tag] = expand_once(seeds, url, model, c, cfg, tmp / tag.replace(" ", "-"))
    rate = {c: calls / seconds for c, (calls, seconds) in results.items()}
    print(f"\n{label}")
    print(f"{'concurrency':>12} {'calls':>6} {'seconds':>8} {'calls/s':>8}")
    for c, (calls, seconds) in results.items():
        print(f"{c:>12} {calls:>6} {seconds:>8.2f} {rate[c]:>8.2f}")
    baseline = (rate["1"] + rate["1 again"]) / 2
    print(f"{'ratio 8/1':>12} {'':>6} {'':>8} {rate['8'] / baseline:>8.2f}x  (vs the mean of both 1-runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--served-candidates", type=int, default=4)
    parser.add_argument("--only", choices=["latency", "served"], default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeds = tmp / "seeds.parquet"
        write_seed_examples(seeds, load_tokenizer(ModelConfig(), CACHE))
        budget = {"target_size": 1000, "max_calls": 10_000, "max_tokens": 10**7, "wave_size": 8}
        cfg = ExpandConfig(mutations=MUTATIONS, max_candidates=args.candidates, **budget)
        if args.only != "served":
            with running(ScriptedServer(latency_s=args.latency_ms / 1000)) as url:
                compare(f"fixed-latency server ({args.latency_ms:.0f} ms per reply)", seeds, url, "scripted", cfg, tmp)
        small = ExpandConfig(
            mutations=MUTATIONS,
            max_candidates=args.served_candidates,
            mutate_max_tokens=24,
            answer_max_tokens=32,
            judge_format="probabilities",
            **budget,
        )
        if args.only != "latency":
            with serving("embedded", cache_dir=CACHE, model_id="embedded") as url:
                compare("embedded SmolLM2-135M served by tasks.serve (CPU)", seeds, url, "embedded", small, tmp)


if __name__ == "__main__":
    main()
