"""The plan as a readable terminal report (rich): decision first, then why, then the numbers and formulas."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table


def _reasons(items: list[str]) -> str:
    return "\n".join(f"• {r}" for r in items)


def print_report(plan: dict[str, Any], console: Console | None = None) -> None:
    """Render a plan made by `build_plan`."""
    console = console or Console()
    advice = plan["advice"]
    colour = {"finetune": "green", "retrieval": "yellow", "prompting": "yellow"}[advice]
    console.print(Panel(_reasons(plan["reasons"]), title=f"[bold {colour}]advice: {advice}"))

    data = plan["data"]
    facts = Table.grid(padding=(0, 2))
    facts.add_row(
        "hardware",
        f"{'detected' if plan['hardware']['detected'] else 'given'}: "
        f"{plan['hardware']['gpus']} GPU(s) × {plan['hardware']['gpu_memory_gb']:.0f} GB"
        if plan["hardware"]["gpus"]
        else f"CPU only, {plan['hardware']['cpu_cores']} cores, {plan['hardware']['ram_gb']:.0f} GB RAM",
    )
    facts.add_row(
        "data",
        f"{data['n_examples']} examples ({data['n_train']} train) from {data['kinds']}, language '{data['language']}'",
    )
    facts.add_row(
        "tokens",
        f"mean {data['tokens_mean']:.0f}, p95 {data['tokens_p95']:.0f}, max {data['tokens_max']}, "
        f"train total {data['train_tokens']:,.0f}; reply mean {data['completion_tokens_mean']:.0f}",
    )
    facts.add_row(
        "quality",
        f"{data['rows_quarantined']} of {data['rows_read']} rows quarantined, "
        f"{data['duplicate_share']:.0%} duplicate replies",
    )
    console.print(Panel(facts, title="what the plan is based on"))

    model, method, hp = plan["model"], plan["method"], plan["hyperparameters"]
    console.print(Panel(_reasons(model["reasons"]), title=f"[bold]model: {model['name']} ({model['params_b']:g}B)"))
    console.print(Panel(_reasons(method["reasons"]), title=f"[bold]method: {method['name']} ({method['precision']})"))
    table = Table("hyperparameter", "value")
    for key in (
        "lora_r",
        "lora_alpha",
        "learning_rate",
        "epochs",
        "max_seq_len",
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "gradient_checkpointing",
        "optimizer_steps",
    ):
        table.add_row(key, str(hp[key]))
    console.print(table)
    console.print(_reasons(hp["reasons"]))

    est = plan["estimates"]
    numbers = Table("estimate", "value", "formula")
    peak = est["peak_memory"]
    parts = ", ".join(f"{k} {v:.2f}" for k, v in peak["parts"].items())
    numbers.add_row("peak memory", f"{est['peak_memory_gb']:.2f} GB", f"{peak['formula']}\n= {parts} GB")
    numbers.add_row(
        "  with / without checkpointing",
        f"{est['peak_memory_gb_with_checkpointing']:.2f} / {est['peak_memory_gb_without_checkpointing']:.2f} GB",
        "",
    )
    numbers.add_row("training time", f"{est['train_hours']:.2f} h", est["train_time"]["formula"])
    numbers.add_row("training cost", f"${est['train_cost']:.2f}", est["train_cost_formula"])
    serving = est["serving"]
    numbers.add_row(
        "serving, own hardware",
        f"${est['serving_cost_month']:.0f}/month",
        serving["formulas"]["own"]
        + f"\n({serving['replicas']} replica(s), needs {serving['tokens_per_s_needed']:.1f} tokens/s, "
        f"one replica gives {serving['tokens_per_s_capacity']:.0f})",
    )
    numbers.add_row("same traffic on an API", f"${est['api_cost_month']:.0f}/month", serving["formulas"]["api"])
    console.print(numbers)
    console.print(Panel("afinar run " + " ".join(plan["overrides"]), title="run it"))
    for note in plan["notes"]:
        console.print(f"[dim]note: {note}")
