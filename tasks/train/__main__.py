"""`python -m tasks.train`: the train stage alone, the entry point torchrun starts in every process.

    torchrun --nproc_per_node 2 -m tasks.train --examples EXAMPLES.parquet --out DIR [hydra overrides]

The config is composed from the same Hydra tree as `afinar run` (or passed as JSON by the launcher).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.config import compose, section_as
from tasks.config.model import ModelConfig
from tasks.config.train import LoraConfig, TrainConfig
from tasks.model_loading import offline_environment
from tasks.train.recipe import train_adapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.train", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, required=True, help="examples.parquet (Example contract)")
    parser.add_argument("--out", type=Path, required=True, help="the stage folder (resumed if it has checkpoints)")
    parser.add_argument("--cache", type=Path, default=None, help="model cache (default: paths.cache)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--model-json", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train-json", default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=1")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    model = ModelConfig(**json.loads(args.model_json)) if args.model_json else section_as(cfg.model, ModelConfig)
    if args.train_json:
        raw = json.loads(args.train_json)
        train = TrainConfig(**{**raw, "lora": LoraConfig(**raw["lora"])})
    else:
        train = section_as(cfg.train, TrainConfig)
    if model.source == "embedded":
        offline_environment()
    seed = cfg.seed if args.seed is None else args.seed
    train_adapter(args.examples, model, train, args.cache or Path(cfg.paths.cache), args.out, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
