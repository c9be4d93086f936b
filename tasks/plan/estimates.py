"""Memory, time and cost of a training setup, each figure with the formula that produced it.

Memory counts what autograd keeps for a Llama-style decoder (RMSNorm, GQA attention through a
memory-efficient SDPA kernel, SwiGLU MLP) with LoRA on the catalog's target modules, following
Korthikanti et al. 2022 ("Reducing Activation Recomputation") tensor by tensor. Time comes from
FLOPs (Kaplan/PaLM: 2·N per token forward, 2·N more for input gradients, 2·N for weight gradients,
plus 12·L·d_attn·s for attention) over a throughput: a stated utilisation (MFU) of the GPU's dense
bf16 peak, or the FLOP rate measured on this kind of CPU (benchmarks/bench_plan.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tasks.config.model import ModelConfig
from tasks.config.plan import PlanConfig

GB = 1e9
NF4_BYTES = 0.516  # 4-bit NF4 + double-quantised absmax per 64 weights (QLoRA paper: ~4.127 bits)


@dataclass
class Setup:
    """One way to train: method, precision and the micro-batch the memory peak depends on."""

    method: str  # full | lora | qlora
    precision: str  # fp32 | bf16 | fp16
    micro_batch: int
    seq_len: int
    target_share: float  # share of tokens the loss is taken on (logits are only computed there)
    lora_r: int = 16
    lora_dropout: bool = True
    gradient_checkpointing: bool = False


@dataclass
class Figure:
    """A number with the formula (and the values put into it) that produced it."""

    value: float
    formula: str
    parts: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def head_dims(m: ModelConfig) -> tuple[int, int]:
    """(query width, key/value width) of one attention layer."""
    head = m.head_dim or m.hidden_size // m.n_heads
    return m.n_heads * head, m.n_kv_heads * head


def module_shapes(m: ModelConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection LoRA can target, per layer."""
    h, i = m.hidden_size, m.intermediate_size
    q, kv = head_dims(m)
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "qkv_proj": (h, q + 2 * kv),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
        "gate_up_proj": (h, 2 * i),
    }


def linear_params(m: ModelConfig) -> int:
    """Parameters in the decoder's linear layers (what 4-bit quantisation applies to)."""
    h, i = m.hidden_size, m.intermediate_size
    q, kv = head_dims(m)
    return m.n_layers * (h * q + 2 * h * kv + q * h + 3 * h * i)


def embedding_params(m: ModelConfig) -> int:
    """Input embedding plus a separate LM head when the two are not tied."""
    return m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)


def matmul_params(m: ModelConfig) -> int:
    """Parameters that cost FLOPs per token: the linear layers and the LM head (a lookup is free)."""
    return linear_params(m) + m.vocab_size * m.hidden_size


def lora_params(m: ModelConfig, r: int) -> int:
    shapes = module_shapes(m)
    return m.n_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in m.lora_target_modules if t in shapes)


def element_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def weight_memory(m: ModelConfig, s: Setup) -> Figure:
    """Base weights: 16/32-bit everywhere, or NF4 linear layers with 16-bit embeddings (QLoRA)."""
    n = m.params_b * 1e9
    if s.method == "qlora":
        lin = linear_params(m)
        value = lin * NF4_BYTES + (n - lin) * 2
        return Figure(value / GB, "linear·0.516 B (NF4) + rest·2 B", {"linear": lin, "rest": n - lin})
    if s.method == "full":
        return Figure(n * 4 / GB, "N·4 B (fp32 master weights)", {"N": n})
    e = element_bytes(s.precision)
    return Figure(n * e / GB, f"N·{e} B ({s.precision})", {"N": n})


def trainable_memory(m: ModelConfig, s: Setup) -> Figure:
    """Trainable weights' gradients and AdamW moments (LoRA adapters are kept in fp32)."""
    if s.method == "full":
        n = m.params_b * 1e9
        return Figure(n * 12 / GB, "N·(4 grad + 8 AdamW) B", {"N": n})
    a = lora_params(m, s.lora_r)
    return Figure(a * 16 / GB, "A·(4 weight + 4 grad + 8 AdamW) B, A = L·Σ r·(in+out)", {"A": a})


def activation_bytes_per_token_layer(m: ModelConfig, s: Setup) -> float:
    """Bytes autograd keeps per token per decoder layer.

    Frozen base projections keep nothing (their input gradient needs only the weight); a LoRA
    module keeps its dropout mask (1 B) and dropped input for lora_A, and lora_A's r outputs.
    """
    e = element_bytes(s.precision)
    h, i, r = m.hidden_size, m.intermediate_size, s.lora_r
    q, _ = head_dims(m)
    norms = 2 * h * e  # the inputs of the two RMSNorms (the layer input and the attention residual)
    attention = 4 * q * e  # q, k, v (repeated to every head under a mask) and the output, for SDPA backward
    mlp = 3 * i * e  # gate output (SiLU backward), SiLU output and up output (the product's backward)
    if s.method == "full":
        # every linear layer keeps its input for the weight gradient
        return norms + attention + mlp + (2 * h + q + i) * e
    shapes = module_shapes(m)
    lora = 0.0
    for target in m.lora_target_modules:
        d_in = shapes.get(target, (h, h))[0]
        lora += (d_in * (e + 1) if s.lora_dropout else 0) + r * 4
    if not s.lora_dropout:
        lora += (2 * h + q + i) * e  # without dropout lora_A keeps the projections' inputs themselves
    return norms + attention + mlp + lora


def activation_memory(m: ModelConfig, s: Setup) -> Figure:
    """Activations of one micro-batch, with gradient checkpointing keeping only each layer's input."""
    tokens = s.micro_batch * s.seq_len
    per_layer = activation_bytes_per_token_layer(m, s)
    e = element_bytes(s.precision)
    if s.gradient_checkpointing:
        value = tokens * (m.n_layers * m.hidden_size * e + per_layer)
        formula = "b·s·(L·h·e + one layer's a)  [checkpointing: layer inputs + one recomputed layer]"
    else:
        value = tokens * m.n_layers * per_layer
        formula = "b·s·L·a"
    parts = {"b": s.micro_batch, "s": s.seq_len, "L": m.n_layers, "h": m.hidden_size, "e": e, "a": per_layer}
    return Figure(value / GB, formula + ", a = bytes per token per layer", parts)


def logits_memory(m: ModelConfig, s: Setup) -> Figure:
    """Logits on learned tokens only: fp32 logits, saved log-softmax and its gradient (+ a 16-bit copy)."""
    targets = s.micro_batch * s.seq_len * s.target_share
    copies = 3 if s.precision == "fp32" else 3.5
    value = targets * m.vocab_size * 4 * copies
    return Figure(value / GB, f"b·s·t·V·4 B·{copies}", {"t": s.target_share, "V": m.vocab_size})


def peak_memory(m: ModelConfig, s: Setup, cfg: PlanConfig, gpu: bool) -> Figure:
    """Peak training memory per device: runtime + weights + trainable state + activations + logits,
    plus what the allocator keeps of freed activations (glibc heaps on CPU, PyTorch's cache on GPU)."""
    activations = activation_memory(m, s).value
    logits = logits_memory(m, s).value
    slack = cfg.gpu_allocator_slack if gpu else cfg.cpu_allocator_slack
    parts = {
        "runtime": cfg.runtime_overhead_gb_gpu if gpu else cfg.runtime_overhead_gb_cpu,
        "weights": weight_memory(m, s).value,
        "trainable_state": trainable_memory(m, s).value,
        "activations": activations,
        "logits": logits,
        "allocator": slack * (activations + logits),
    }
    formula = f"runtime + weights + trainable_state + (activations + logits)·(1 + {slack:g} allocator slack)"
    return Figure(sum(parts.values()), formula, parts)


def flops_per_token(m: ModelConfig, s: Setup) -> Figure:
    """Training FLOPs per token: 6·N for full fine-tuning, 4·N with frozen weights, + attention."""
    n = matmul_params(m)
    q, _ = head_dims(m)
    weight_factor = 6 if s.method == "full" else 4
    recompute = 2 if s.gradient_checkpointing else 0
    attention = (12 + (4 if s.gradient_checkpointing else 0)) * m.n_layers * q * s.seq_len / 2
    value = (weight_factor + recompute) * n + attention
    factor = f"({weight_factor} + 2 recompute)" if recompute else f"{weight_factor}"
    attention_terms = "16·L·d_attn·s/2 (causal, recomputed)" if recompute else "12·L·d_attn·s/2 (causal)"
    formula = f"{factor}·N_mm + {attention_terms}"
    return Figure(value, formula, {"N_mm": n, "L": m.n_layers, "d_attn": q, "s": s.seq_len})


def gpu_tflops(cfg: PlanConfig, gpu_name: str | None) -> tuple[float, str]:
    """Dense bf16 peak of a named GPU (first catalog key in its name), else the configured default."""
    for key, tflops in cfg.gpu_tflops.items():
        if gpu_name and key.lower() in gpu_name.lower():
            return tflops, key
    return cfg.default_gpu_tflops, "default"


def train_seconds(
    m: ModelConfig, s: Setup, tokens: float, cfg: PlanConfig, gpus: int, gpu_name: str | None, cpu_cores: int
) -> Figure:
    """Wall time for `tokens` training tokens on the GPUs (MFU of peak) or on the CPU (measured rate)."""
    per_token = flops_per_token(m, s)
    total = per_token.value * tokens
    if gpus > 0:
        peak, key = gpu_tflops(cfg, gpu_name)
        mfu = cfg.mfu[s.method]
        rate = gpus * peak * 1e12 * mfu
        formula = f"tokens·F / (gpus·{peak:g} TFLOPS ({key})·MFU {mfu:g})"
    else:
        rate = cpu_cores * cfg.cpu_gflops_per_core * 1e9
        formula = f"tokens·F / (cores·{cfg.cpu_gflops_per_core:g} GFLOPS measured per core)"
    return Figure(total / rate, formula + f", F = {per_token.formula}", {"tokens": tokens, "F": per_token.value})


@dataclass
class Serving:
    """What serving the tuned model costs per month on own hardware, and what an API would cost."""

    own_cost_month: float
    api_cost_month: float
    devices: int
    replicas: int
    weight_bytes_per_param: float
    tokens_per_s_needed: float
    tokens_per_s_capacity: float
    formulas: dict[str, str]


def serving_estimate(
    m: ModelConfig,
    cfg: PlanConfig,
    prompt_tokens: float,
    completion_tokens: float,
    gpus: int,
    gpu_memory_gb: float,
    gpu_name: str | None,
) -> Serving:
    """Monthly cost of serving the merged model always-on vs paying an API per token."""
    n = m.params_b * 1e9
    requests = cfg.requests_per_month
    tokens_month = requests * (prompt_tokens + completion_tokens)
    needed = tokens_month / (30 * 86400) * cfg.traffic_peak_factor
    api = requests * (prompt_tokens * cfg.api_usd_per_1m_input + completion_tokens * cfg.api_usd_per_1m_output) / 1e6
    api_formula = (
        f"requests·(prompt·${cfg.api_usd_per_1m_input:g} + reply·${cfg.api_usd_per_1m_output:g}) / 1M ({cfg.api_name})"
    )
    if gpus == 0:
        # one CPU machine; decoding reads every weight once per token, so memory bandwidth sets the pace
        bytes_per_param = 4.0
        capacity = cfg.cpu_memory_bandwidth_gb_s * GB / (n * bytes_per_param)
        replicas = max(1, math.ceil(needed / capacity))
        own = replicas * cfg.cpu_hour_usd * cfg.serving_hours_month
        formulas = {
            "own": "replicas·cpu_hour_usd·hours_month",
            "capacity": "memory bandwidth / (N·4 B) tokens/s (one stream, fp32)",
            "api": api_formula,
        }
        return Serving(own, api, 1, replicas, bytes_per_param, needed, capacity, formulas)
    usable = gpu_memory_gb * cfg.memory_usable_share * GB
    # 16-bit when it fits a few cards, else 4-bit (AWQ/GPTQ/GGUF); +20% for the KV cache
    bytes_per_param = 2.0 if n * 2 * 1.2 <= usable * max(gpus, 1) else 0.55
    devices = max(1, math.ceil(n * bytes_per_param * 1.2 / usable))
    peak, _ = gpu_tflops(cfg, gpu_name)
    capacity = devices * peak * 1e12 * cfg.serve_mfu / (2 * n)
    replicas = max(1, math.ceil(needed / capacity))
    price = cfg.serving_gpu_hour_usd if cfg.serving_gpu_hour_usd is not None else cfg.gpu_hour_usd
    own = replicas * devices * price * cfg.serving_hours_month
    formulas = {
        "own": "replicas·gpus_per_replica·gpu_hour_usd·hours_month",
        "gpus_per_replica": f"⌈N·{bytes_per_param:g} B·1.2 (KV cache) / usable GPU memory⌉",
        "capacity": f"gpus·peak TFLOPS·{cfg.serve_mfu:g} / (2·N) tokens/s (batched decoding)",
        "needed": f"requests·(prompt+reply) / month seconds · {cfg.traffic_peak_factor:g} peak factor",
        "api": api_formula,
    }
    return Serving(own, api, devices, replicas, bytes_per_param, needed, capacity, formulas)


def decode_tokens_per_s_cpu(m: ModelConfig, cfg: PlanConfig) -> float:
    """One-stream decoding speed on a CPU: every fp32 weight is read once per token."""
    return cfg.cpu_memory_bandwidth_gb_s * GB / (m.params_b * 1e9 * 4)
