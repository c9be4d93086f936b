"""The `afinar` command: `run` composes the Hydra config and runs the `finetune` flow; the other
commands live next to the stage they expose and are imported only when called."""

from __future__ import annotations

import importlib
import json
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from tasks.config import CONF_DIR, register_schemas

USAGE = """usage: afinar COMMAND [ARGS]

commands:
  run [overrides] [-m]     run the whole chain (Hydra overrides; --cfg job prints the config; -m sweeps)
  extract PATH...          show what afinar reads from files, before any run
  plan                     recommend model, method, hyperparameters and costs for your data and hardware
  serve MODEL_URI          serve a registered model behind an OpenAI-compatible API
  deploy                   create the Prefect deployments (finetune, scheduled retrain)
  export MODEL_URI OUT     write merged weights (safetensors) loadable by plain transformers
"""

# command -> "module:function"; each takes argv and returns an exit code
COMMANDS = {
    "extract": "tasks.extract.cli:main",
    "plan": "tasks.plan:main",
    "serve": "tasks.serve:main",
    "deploy": "flows.deploy:main",
    "export": "tasks.register:export_main",
}


def run(argv: list[str]) -> int:
    """`afinar run`: Hydra's own command line, so --cfg, --help, -m and overrides all behave as in Hydra."""
    register_schemas()
    sys.argv = ["afinar run", *argv]

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
    def _app(cfg: DictConfig) -> None:
        from flows.finetune import FinetuneParams, finetune

        overrides = list(HydraConfig.get().overrides.task)
        result = finetune(FinetuneParams(overrides=overrides))
        print(json.dumps(result, indent=2, default=str))

    _app()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # a local Prefect must not try to phone home from an offline machine
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # OpenMP threads that spin while waiting make torch ~15x slower on a busy CPU; set before torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run(rest)
    if command not in COMMANDS:
        print(f"afinar: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module, func = COMMANDS[command].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
