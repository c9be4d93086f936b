"""`afinar deploy`: the `finetune` and scheduled `retrain` deployments on a Prefect server.

`afinar deploy [OVERRIDES...]` registers both in a process work pool (created if missing); a
worker (`prefect worker start --pool afinar`) started in the project folder runs them.
`afinar deploy --serve` instead serves both from this process (no worker; stops with Ctrl-C).
`deployments/prefect.yaml` declares the same two deployments for `prefect deploy --all`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from flows.finetune import FinetuneParams, finetune
from flows.retrain import RetrainParams, retrain

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CRON = "0 3 * * *"  # every night at 03:00


async def ensure_work_pool(name: str) -> None:
    """A process work pool (runs flows as subprocesses of the worker), created once."""
    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deployment_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Name → settings of the two deployments (shared by `deploy` and `--serve`)."""
    finetune_params = FinetuneParams(overrides=args.overrides)
    retrain_params = RetrainParams(drop_folder=str(Path(args.drop_folder).resolve()), overrides=args.overrides)
    return {
        "finetune": {
            "parameters": {"params": finetune_params.model_dump()},
            "description": "The whole chain on Hydra overrides (the same as `afinar run key=value ...`).",
            "tags": ["afinar"],
        },
        "retrain": {
            "parameters": {"params": retrain_params.model_dump()},
            "cron": args.cron,
            "concurrency_limit": 1,
            "description": "Train on the newest CRM export in the drop folder, once per export content.",
            "tags": ["afinar", "scheduled"],
        },
    }


def main(argv: list[str]) -> int:
    """`afinar deploy [OVERRIDES...] [--pool P] [--cron EXPR] [--drop-folder DIR] [--serve] [--paused]`."""
    parser = argparse.ArgumentParser(prog="afinar deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides both deployments start with")
    parser.add_argument("--pool", default="afinar", help="process work pool to deploy to (created if missing)")
    parser.add_argument("--cron", default=DEFAULT_CRON, help=f"retrain schedule (default {DEFAULT_CRON!r})")
    parser.add_argument("--drop-folder", default="work/drop", help="folder the CRM exports are dropped into")
    parser.add_argument("--paused", action="store_true", help="create the retrain schedule paused")
    parser.add_argument("--serve", action="store_true", help="serve from this process instead of a work pool")
    args = parser.parse_args(argv)
    Path(args.drop_folder).mkdir(parents=True, exist_ok=True)
    settings = deployment_settings(args)
    settings["retrain"]["paused"] = args.paused
    flows = {"finetune": finetune, "retrain": retrain}
    if args.serve:
        serve(*(flows[name].to_deployment(name=name, **kw) for name, kw in settings.items()))
        return 0
    if not PREFECT_API_URL.value():
        parser.error("no Prefect server: start one (`prefect server start`) and set PREFECT_API_URL")
    asyncio.run(ensure_work_pool(args.pool))
    for name, kw in settings.items():
        source = flows[name].from_source(source=str(ROOT), entrypoint=f"flows/{name}.py:{name}")
        deployment_id = source.deploy(name=name, work_pool_name=args.pool, print_next_steps=False, **kw)
        print(f"afinar deploy: {name}/{name} ({deployment_id}) in pool '{args.pool}'")
    print(f"start a worker in {ROOT}: prefect worker start --pool {args.pool}")
    return 0
