"""The Hydra tree composes, validates before any I/O, and the shell composes what the flow composes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from tasks.config import compose, to_container


def test_default_config_composes_every_group():
    cfg = compose()
    for group in ("data", "model", "train", "teacher", "expand", "eval", "tracking"):
        assert group in cfg, group
    assert cfg.model.source == "embedded"
    assert cfg.data.paths and cfg.data.paths[0].endswith("samples")


def test_override_changes_the_typed_value():
    cfg = compose(["train.epochs=3", "train.lora.r=8"])
    assert cfg.train.epochs == 3.0
    assert cfg.train.lora.r == 8


def test_misspelled_key_is_rejected_before_any_io():
    with pytest.raises(ConfigCompositionException, match="epochz"):
        compose(["train.epochz=3"])


def test_wrong_type_is_rejected_before_any_io():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose(["train.learning_rate=fast"])


def test_cli_cfg_job_prints_the_same_config_the_flow_composes(tmp_path):
    overrides = ["train.epochs=3", f"paths.work={tmp_path}"]
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", *overrides, "--cfg", "job", "--resolve"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    printed = yaml.safe_load(out)
    composed = to_container(compose(overrides))
    assert printed["train"] == composed["train"]
    assert printed["paths"]["work"] == str(tmp_path)
