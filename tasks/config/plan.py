"""`plan` group: what the planner assumes about prices, throughput and thresholds (every figure overridable)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlanConfig:
    objective: str = ""
    commercial_use: bool = False  # True: drop catalog entries whose licence forbids commercial use
    model: str | None = None  # pin a catalog entry instead of choosing one
    # hardware overrides (None: detected)
    gpus: int | None = None
    gpu_memory_gb: float | None = None
    gpu_name: str | None = None
    cpu: bool = False
    # advice: below these, fine-tuning is not yet worth it
    min_train_examples: int = 100
    retrieval_document_share: float = 0.5  # share of tokens from documents (pdf, transcript)
    max_poor_share: float = 0.3  # quarantined + duplicate rows over rows read
    min_median_output_tokens: int = 3
    # model choice: target size by objective keyword (first match), else default_target_params_b
    default_target_params_b: float = 8.0
    objective_target_params_b: dict[str, float] = field(
        default_factory=lambda: {
            "classif": 3.0,
            "extract": 3.0,
            "tag": 3.0,
            "route": 3.0,
            "triag": 3.0,
            "chat": 8.0,
            "sales": 8.0,
            "support": 8.0,
            "vend": 8.0,
            "atendimento": 8.0,
            "suporte": 8.0,
            "reason": 32.0,
            "code": 32.0,
            "math": 32.0,
            "analys": 32.0,
            "raciocínio": 32.0,
        }
    )
    max_train_hours: float = 24.0
    cpu_max_train_hours: float = 4.0
    min_decode_tokens_per_s: float = 10.0  # interactive chat reads at ~7 tokens/s
    memory_usable_share: float = 0.9
    lora_max_weight_share: float = 0.5  # LoRA only while the unquantised weights take at most this share of a GPU
    full_finetune_min_tokens: int = 20_000_000
    target_batch_sequences: int = 16
    cpu_micro_batch_tokens: int = 1024
    max_seq_len_cap: int = 4096
    # throughput: GPU from dense bf16 peak × utilisation; CPU from the measured rate of this machine
    gpu_tflops: dict[str, float] = field(
        default_factory=lambda: {
            "H200": 989.0,
            "H100": 989.0,
            "A100": 312.0,
            "L40S": 362.0,
            "A6000": 155.0,
            "A10": 125.0,
            "L4": 121.0,
            "4090": 165.0,
            "3090": 71.0,
            "V100": 125.0,
            "T4": 65.0,
        }
    )
    default_gpu_tflops: float = 150.0
    no_bf16_gpus: list[str] = field(default_factory=lambda: ["T4", "V100", "P100", "P40"])  # pre-Ampere
    mfu: dict[str, float] = field(default_factory=lambda: {"full": 0.40, "lora": 0.35, "qlora": 0.25})
    serve_mfu: float = 0.2
    # one core's fp32 training rate, measured by benchmarks/bench_plan.py (LoRA on SmolLM2-135M, one thread,
    # 55-73 GFLOP per CPU-second over batch 1-4 × 64-256 tokens); cores are assumed to add up linearly
    cpu_gflops_per_core: float = 64.0
    # one-stream decoding reads every weight per token: SmolLM2-135M fp32 decoded 18.7 tokens per CPU-second
    # on one thread here (0.54 GB × 18.7 ≈ 10 GB/s)
    cpu_memory_bandwidth_gb_s: float = 10.0
    runtime_overhead_gb_cpu: float = 0.45  # python, torch, transformers and peft resident (measured)
    runtime_overhead_gb_gpu: float = 1.0  # CUDA context and kernels (assumed)
    # freed activations the allocator keeps, as a share of live activations: glibc's heaps grow over the
    # first steps on CPU (measured by benchmarks/bench_plan.py); PyTorch's caching allocator on GPU (assumed)
    cpu_allocator_slack: float = 1.0
    gpu_allocator_slack: float = 0.1
    # prices
    gpu_hour_usd: float = 2.0
    cpu_hour_usd: float = 0.05
    serving_gpu_hour_usd: float | None = None  # None: gpu_hour_usd
    serving_hours_month: float = 730.0
    requests_per_month: int = 100_000
    traffic_peak_factor: float = 3.0  # busiest hour over the monthly average
    prompt_tokens_per_request: int | None = None  # None: the data's mean prompt
    completion_tokens_per_request: int | None = None  # None: the data's mean reply
    api_name: str = "gpt-4o-mini list price"
    api_usd_per_1m_input: float = 0.15
    api_usd_per_1m_output: float = 0.60
    max_token_sample: int = 2000  # examples tokenized for the statistics (the rest extrapolated)
