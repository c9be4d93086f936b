"""From (objective, data statistics, hardware, catalog) to a plan: advice, model, method, hyperparameters,
estimates and the Hydra overrides that run it. Every decision carries the reason and the threshold behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from tasks.config.model import ModelConfig
from tasks.config.plan import PlanConfig
from tasks.plan.data_stats import DataStats
from tasks.plan.estimates import (
    Figure,
    Setup,
    decode_tokens_per_s_cpu,
    element_bytes,
    peak_memory,
    serving_estimate,
    train_seconds,
)
from tasks.plan.hardware import Hardware


class UnknownModelError(ValueError):
    """A pinned model is not in the catalog."""


@dataclass
class Candidate:
    """One catalog entry judged against the data and the hardware."""

    model: ModelConfig
    setup: Setup | None  # None: does not fit with any method
    peak: Figure | None
    train_s: Figure | None
    method_reason: str
    hard: list[str] = field(default_factory=list)  # disqualifying
    soft: list[str] = field(default_factory=list)  # preferences it misses
    excess: float = 0.0  # how far past the missed limits, summed as ratios (a tie-breaker)

    @property
    def soft_penalty(self) -> int:
        return sum(2 if s.startswith(("language", "time")) else 1 for s in self.soft)


def decide_advice(stats: DataStats, cfg: PlanConfig) -> tuple[str, list[str]]:
    """finetune, or retrieval / prompting when the data is too small or too poor (threshold stated)."""
    if stats.n_train < cfg.min_train_examples:
        few_shot = 5 * stats.tokens_mean
        if stats.document_token_share >= cfg.retrieval_document_share:
            return "retrieval", [
                f"{stats.n_train} training examples < plan.min_train_examples={cfg.min_train_examples}, and "
                f"{stats.document_token_share:.0%} of the tokens come from documents "
                f"(>= plan.retrieval_document_share={cfg.retrieval_document_share:.0%}): index the documents "
                "and retrieve passages into the prompt; fine-tuning on this little teaches style, not facts",
            ]
        return "prompting", [
            f"{stats.n_train} training examples < plan.min_train_examples={cfg.min_train_examples}: "
            f"put 5 of your best examples in a few-shot prompt (~{few_shot:.0f} tokens); collect more, or let "
            "the expand stage grow them with a strong teacher (teacher=openai) before tuning",
        ]
    if stats.poor_share > cfg.max_poor_share:
        return "prompting", [
            f"{stats.poor_share:.0%} of the rows were quarantined or repeat another reply "
            f"(> plan.max_poor_share={cfg.max_poor_share:.0%}): fix the data first (see quarantine.parquet) "
            "and prompt meanwhile; a model tuned on this learns the noise",
        ]
    if stats.completion_tokens_p50 < cfg.min_median_output_tokens:
        return "prompting", [
            f"the median reply has {stats.completion_tokens_p50:.0f} tokens "
            f"(< plan.min_median_output_tokens={cfg.min_median_output_tokens}): too little to learn from",
        ]
    reasons = [
        f"{stats.n_train} training examples >= plan.min_train_examples={cfg.min_train_examples}",
        f"{stats.poor_share:.0%} quarantined or duplicated <= plan.max_poor_share={cfg.max_poor_share:.0%}",
    ]
    if stats.document_token_share >= cfg.retrieval_document_share:
        reasons.append(
            f"{stats.document_token_share:.0%} of the tokens are documents: add retrieval for the facts, "
            "fine-tuning teaches the tone and format"
        )
    return "finetune", reasons


def target_params(objective: str, cfg: PlanConfig) -> tuple[float, str]:
    """Model size the objective calls for (first keyword that matches), else the default."""
    text = objective.lower()
    for keyword, size in cfg.objective_target_params_b.items():
        if keyword in text:
            return size, f"objective mentions '{keyword}': aim at <= {size:g}B parameters"
    return cfg.default_target_params_b, f"default size target <= {cfg.default_target_params_b:g}B parameters"


def sequence_length(stats: DataStats, model: ModelConfig, cfg: PlanConfig) -> int:
    """Covers 95% of the examples, rounded up to 128, within the model's context and the cap."""
    wanted = 128 * max(1, math.ceil(stats.tokens_p95 / 128))
    return int(min(wanted, model.context_length, cfg.max_seq_len_cap))


def batch_size(stats: DataStats, cfg: PlanConfig) -> int:
    """Sequences per optimizer step: the target, but at least ~8 steps per epoch on small data."""
    cap = max(1, stats.n_train // 8)
    return int(2 ** math.floor(math.log2(max(1, min(cfg.target_batch_sequences, cap)))))


def hyperparameters(stats: DataStats, model: ModelConfig, method: str) -> dict[str, Any]:
    """Rank, learning rate and epochs from the dataset size (the usual LoRA/QLoRA recipes)."""
    tokens = stats.train_tokens
    rank = 8 if tokens < 1e5 else 16 if tokens < 1e6 else 32 if tokens < 1e7 else 64
    epochs = 3 if stats.n_train < 500 else 2 if stats.n_train < 5000 else 1
    # full fine-tuning moves every weight, so it steps ten times more gently; big models halve the step
    big = model.params_b >= (7 if method == "full" else 30)
    lr = {"full": (2e-5, 1e-5)}.get(method, (2e-4, 1e-4))[big]
    return {
        "lora_r": rank,
        "lora_alpha": 2 * rank,
        "learning_rate": lr,
        "epochs": epochs,
        "reasons": [
            f"rank {rank}: {tokens:,.0f} training tokens (8 below 100k, 16 below 1M, 32 below 10M, else 64)",
            f"{epochs} epochs: {stats.n_train} training examples (3 below 500, 2 below 5000, else 1)",
            f"learning rate {lr:g}: {method} on a {model.params_b:g}B model",
        ],
    }


def precision_for(hw: Hardware, cfg: PlanConfig) -> str:
    """What the train stage computes in: bf16 on GPUs that have it, else fp32 (it has no fp16 mode)."""
    if not hw.gpus:
        return "fp32"
    old = any(name.lower() in (hw.gpu_name or "").lower() for name in cfg.no_bf16_gpus)
    return "fp32" if old else "bf16"


def _fit(
    model: ModelConfig, base: Setup, batch: int, budget_gb: float, cfg: PlanConfig, gpus: int = 0
) -> tuple[Setup, Figure] | None:
    """Largest power-of-two micro-batch that fits, without then with gradient checkpointing."""
    for checkpointing in (False, True):
        micro = batch
        while micro >= 1:
            setup = replace(base, micro_batch=micro, gradient_checkpointing=checkpointing)
            peak = peak_memory(model, setup, cfg, gpu=gpus > 0)
            if gpus > 1 and setup.method == "full":  # FSDP shards weights and optimizer state over the GPUs
                state = peak.parts["weights"] + peak.parts["trainable_state"]
                peak = Figure(peak.value - state + state / gpus, peak.formula + " (state / gpus)", peak.parts)
            if peak.value <= budget_gb:
                return setup, peak
            micro //= 2
    return None


def judge_candidate(
    model: ModelConfig, stats: DataStats, hw: Hardware, cfg: PlanConfig, objective_b: float, language: str | None
) -> Candidate:
    """Pick the method for one model and check it against licence, language, size, memory and time."""
    batch = batch_size(stats, cfg)
    seq = sequence_length(stats, model, cfg)
    hp = hyperparameters(stats, model, "lora")
    base = Setup("lora", precision_for(hw, cfg), batch, seq, stats.target_share, lora_r=hp["lora_r"])
    hard: list[str] = []
    soft: list[str] = []
    if cfg.commercial_use and not model.commercial_use:
        hard.append(f"licence '{model.licence}' does not allow commercial use")
    if language and language not in model.languages:
        soft.append(f"language: the data is '{language}', not among {model.languages}")
    excess = 0.0
    if model.params_b > objective_b * 1.1:
        soft.append(f"size: {model.params_b:g}B is above the {objective_b:g}B target")
        excess += model.params_b / objective_b
    fitted: tuple[Setup, Figure] | None = None
    reason = ""
    if hw.gpus:
        budget = hw.gpu_memory_gb * cfg.memory_usable_share
        epoch_tokens = stats.train_tokens * hp["epochs"]
        weights_gb = model.params_b * element_bytes(base.precision)
        if epoch_tokens >= cfg.full_finetune_min_tokens:
            fitted = _fit(model, replace(base, method="full"), batch, budget, cfg, hw.gpus)
            reason = (
                f"full fine-tuning: {epoch_tokens:,.0f} training tokens >= plan.full_finetune_min_tokens="
                f"{cfg.full_finetune_min_tokens:,} and the sharded state fits {hw.gpus}× {hw.gpu_memory_gb:g} GB"
            )
        if fitted is None and weights_gb <= cfg.lora_max_weight_share * hw.gpu_memory_gb:
            fitted = _fit(model, base, batch, budget, cfg, hw.gpus)
            reason = (
                f"LoRA: {base.precision} weights ({weights_gb:.1f} GB) take <= plan.lora_max_weight_share="
                f"{cfg.lora_max_weight_share:.0%} of {hw.gpu_memory_gb:g} GB, leaving room for activations"
            )
        if fitted is None:
            fitted = _fit(model, replace(base, method="qlora"), batch, budget, cfg, hw.gpus)
            reason = (
                f"QLoRA: {base.precision} weights ({weights_gb:.1f} GB) would take more than "
                f"plan.lora_max_weight_share={cfg.lora_max_weight_share:.0%} of {hw.gpu_memory_gb:g} GB; "
                "4-bit NF4 weights leave room"
            )
    else:
        budget = hw.ram_gb * cfg.memory_usable_share
        # bigger micro-batches buy a CPU no speed, only memory: cap the tokens per micro-batch
        micro = max(1, min(batch, cfg.cpu_micro_batch_tokens // seq))
        fitted = _fit(model, base, 2 ** math.floor(math.log2(micro)), budget, cfg)
        reason = "LoRA in fp32: CPU only (QLoRA's 4-bit kernels need a CUDA GPU; bf16 is slow on most CPUs)"
        speed = decode_tokens_per_s_cpu(model, cfg)
        if speed < cfg.min_decode_tokens_per_s:
            soft.append(
                f"speed: ~{speed:.1f} tokens/s when served on this CPU "
                f"< plan.min_decode_tokens_per_s={cfg.min_decode_tokens_per_s:g}"
            )
            excess += cfg.min_decode_tokens_per_s / speed
    if fitted is None:
        hard.append(f"does not fit in {budget:.0f} GB even at micro-batch 1 with gradient checkpointing")
        return Candidate(model, None, None, None, reason, hard, soft, excess)
    setup, peak = fitted
    tokens = stats.train_tokens * hp["epochs"]
    seconds = train_seconds(model, setup, tokens, cfg, hw.gpus, hw.gpu_name, hw.cpu_cores)
    limit = cfg.max_train_hours if hw.gpus else cfg.cpu_max_train_hours
    if seconds.value / 3600 > limit:
        knob = "plan.max_train_hours" if hw.gpus else "plan.cpu_max_train_hours"
        soft.append(f"time: ~{seconds.value / 3600:.1f} h of training > {knob}={limit:g}")
        excess += seconds.value / 3600 / limit
    return Candidate(model, setup, peak, seconds, reason, hard, soft, excess)


def choose(candidates: list[Candidate]) -> tuple[Candidate, list[str]]:
    """The largest model that meets every preference; else the one that misses the fewest."""
    usable = [c for c in candidates if not c.hard]
    if not usable:
        raise ValueError(
            "no catalog model fits this hardware and licence requirement: "
            + "; ".join(f"{c.model.name}: {', '.join(c.hard)}" for c in candidates[:3])
        )
    perfect = [c for c in usable if not c.soft]
    if perfect:
        best = max(perfect, key=lambda c: c.model.params_b)
        return best, [f"largest catalog model that meets every requirement ({len(perfect)} did)"]
    best = min(usable, key=lambda c: (c.soft_penalty, c.excess))
    return best, [f"no model meets every preference; this one misses the least: {'; '.join(best.soft)}"]


def overrides_for(model: ModelConfig, setup: Setup, hp: dict[str, Any], accumulation: int, gpus: int) -> list[str]:
    """The Hydra overrides that make `afinar run` train this plan (the train group, then its settings)."""
    overrides = [
        f"model={model.name}",
        f"train={setup.method}",
        f"train.lora.r={hp['lora_r']}",
        f"train.lora.alpha={hp['lora_alpha']}",
        f"train.learning_rate={hp['learning_rate']:g}",
        f"train.epochs={hp['epochs']}",
        f"train.max_seq_len={setup.seq_len}",
        f"data.transform.max_tokens={setup.seq_len}",
        f"train.per_device_batch_size={setup.micro_batch}",
        f"train.gradient_accumulation_steps={accumulation}",
        f"train.gradient_checkpointing={str(setup.gradient_checkpointing).lower()}",
        f"train.precision={setup.precision}",
    ]
    if gpus > 1:
        overrides.append(f"train.nproc={gpus}")
        if setup.method == "full":
            overrides.append("train.distributed=fsdp")  # the estimate shards weights and optimizer state
    return overrides


def build_plan(
    objective: str, stats: DataStats, hardware: Hardware, catalog: list[ModelConfig], cfg: PlanConfig
) -> dict[str, Any]:
    """The whole plan as plain data (the `--json` object, the MLflow `plan.json`)."""
    advice, advice_reasons = decide_advice(stats, cfg)
    size_b, size_reason = target_params(objective, cfg)
    language = stats.language if stats.language != "und" and stats.language_share >= 0.5 else None
    candidates = [judge_candidate(m, stats, hardware, cfg, size_b, language) for m in catalog]
    if cfg.model:
        pinned = [c for c in candidates if c.model.name == cfg.model]
        if not pinned:
            raise UnknownModelError(
                f"plan.model={cfg.model!r} is not in the catalog (conf/model/): "
                + ", ".join(c.model.name for c in candidates)
            )
        chosen, why = pinned[0], [f"pinned with plan.model={cfg.model}"]
        if chosen.hard:
            raise ValueError(f"model '{cfg.model}' cannot be used: {'; '.join(chosen.hard)}")
    else:
        chosen, why = choose(candidates)
    model, setup = chosen.model, chosen.setup
    assert setup is not None and chosen.peak is not None and chosen.train_s is not None
    hp = hyperparameters(stats, model, setup.method)
    batch = batch_size(stats, cfg)
    accumulation = max(1, math.ceil(batch / (setup.micro_batch * max(hardware.gpus, 1))))
    steps = math.ceil(stats.n_train * hp["epochs"] / (setup.micro_batch * accumulation * max(hardware.gpus, 1)))
    # peak memory both ways, so the user sees what gradient checkpointing buys
    with_gc = peak_memory(model, replace(setup, gradient_checkpointing=True), cfg, hardware.gpus > 0)
    without_gc = peak_memory(model, replace(setup, gradient_checkpointing=False), cfg, hardware.gpus > 0)
    hours = chosen.train_s.value / 3600
    price = cfg.gpu_hour_usd * hardware.gpus if hardware.gpus else cfg.cpu_hour_usd
    prompt = cfg.prompt_tokens_per_request or stats.prompt_tokens_mean
    reply = cfg.completion_tokens_per_request or stats.completion_tokens_mean
    serving = serving_estimate(model, cfg, prompt, reply, hardware.gpus, hardware.gpu_memory_gb, hardware.gpu_name)
    model_reasons = [
        *why,
        size_reason,
        f"licence {model.licence}: {'commercial use allowed' if model.commercial_use else 'NON-commercial only'}"
        + (f" ({model.licence_note})" if model.licence_note else ""),
        f"languages {model.languages}"
        + (f"; the data looks '{stats.language}' ({stats.language_share:.0%} of stopword hits)" if language else ""),
        f"fits: peak {chosen.peak.value:.1f} GB on {hardware.describe()}",
    ]
    if not hardware.gpus and any(s.startswith("time") for s in chosen.soft):
        model_reasons.append(
            "training on this CPU takes longer than the budget: see the GPU plan with `--gpus 1 --gpu-memory 24`"
        )
    if stats.has_system_prompts and not model.system_prompt:
        model_reasons.append("its chat template has no system role: system prompts are merged into the user turn")
    rejected = {c.model.name: c.hard + c.soft for c in candidates if c is not chosen and (c.hard or c.soft)}
    return {
        "advice": advice,  # finetune | retrieval | prompting
        "reasons": advice_reasons,  # why, with the threshold that decided it
        "objective": objective,
        "hardware": hardware.as_dict(),
        "data": stats.as_dict(),
        "model": {
            "name": model.name,
            "repo_id": model.repo_id,
            "source": model.source,
            "params_b": model.params_b,
            "licence": model.licence,
            "commercial_use": model.commercial_use,
            "languages": model.languages,
            "context_length": model.context_length,
            "reasons": model_reasons,
        },
        "method": {"name": setup.method, "precision": setup.precision, "reasons": [chosen.method_reason]},
        "hyperparameters": {
            "lora_r": hp["lora_r"],
            "lora_alpha": hp["lora_alpha"],
            "learning_rate": hp["learning_rate"],
            "epochs": hp["epochs"],
            "max_seq_len": setup.seq_len,
            "per_device_batch_size": setup.micro_batch,
            "gradient_accumulation_steps": accumulation,
            "effective_batch": setup.micro_batch * accumulation * max(hardware.gpus, 1),
            "gradient_checkpointing": setup.gradient_checkpointing,
            "optimizer_steps": steps,
            "reasons": [
                *hp["reasons"],
                f"max_seq_len {setup.seq_len}: covers the 95th percentile example ({stats.tokens_p95:.0f} tokens),"
                " rounded up to 128; transform truncates the longer ones",
                f"effective batch {batch}: plan.target_batch_sequences={cfg.target_batch_sequences}, "
                f"at most 1/8 of {stats.n_train} examples; micro-batch {setup.micro_batch} is the largest "
                "that fits memory" + (", with gradient checkpointing" if setup.gradient_checkpointing else ""),
            ],
        },
        "estimates": {
            "peak_memory_gb": round(chosen.peak.value, 3),
            "peak_memory": chosen.peak.as_dict(),
            "peak_memory_gb_with_checkpointing": round(with_gc.value, 3),
            "peak_memory_gb_without_checkpointing": round(without_gc.value, 3),
            "train_hours": round(hours, 4),
            "train_time": chosen.train_s.as_dict(),
            "train_cost": round(hours * price, 2),
            "train_cost_formula": (
                f"train_hours·{hardware.gpus}·${cfg.gpu_hour_usd:g}/GPU-hour"
                if hardware.gpus
                else f"train_hours·${cfg.cpu_hour_usd:g}/CPU-hour"
            ),
            "serving_cost_month": round(serving.own_cost_month, 2),
            "api_cost_month": round(serving.api_cost_month, 2),
            "serving": {
                "requests_per_month": cfg.requests_per_month,
                "prompt_tokens": round(prompt, 1),
                "completion_tokens": round(reply, 1),
                "devices_per_replica": serving.devices,
                "replicas": serving.replicas,
                "weight_bytes_per_param": serving.weight_bytes_per_param,
                "tokens_per_s_needed": round(serving.tokens_per_s_needed, 2),
                "tokens_per_s_capacity": round(serving.tokens_per_s_capacity, 2),
                "formulas": serving.formulas,
            },
        },
        "overrides": overrides_for(model, setup, hp, accumulation, hardware.gpus),
        "rejected_models": rejected,
        "notes": stats.notes,
    }
