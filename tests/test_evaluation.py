"""evaluate: a deterministic held-out loss that sees the LoRA, and the best-checkpoint pick."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from charlora.adapters import adapter_from_checkpoint
from charlora.errors import PipelineError
from charlora.evaluation import CheckpointScore, ValidationLoss, pick_best, spread_timesteps
from charlora.training import RUN_SUBDIR, good_checkpoints
from tests.conftest import make_train_dir


def test_spread_timesteps():
    assert spread_timesteps(25, 40, 4) == [26, 30, 34, 38]
    assert spread_timesteps(0, 3, 4) == [0, 1, 2]
    assert spread_timesteps(0, 8, 1) == [4]


def test_pick_best_takes_the_lowest_loss_then_the_earliest_step():
    scores = [CheckpointScore(4, Path("a"), 0.50), CheckpointScore(8, Path("b"), 0.41),
              CheckpointScore(12, Path("c"), 0.41), CheckpointScore(16, Path("d"), 0.45)]
    assert pick_best(scores).step == 8
    assert pick_best(list(reversed(scores))).step == 8
    with pytest.raises(PipelineError, match="no checkpoints"):
        pick_best([])


def test_validation_loss_is_deterministic_and_sees_the_lora(trained, tmp_path):
    params, root, _ = trained
    config = json.loads((root / "training" / "config.json").read_text())
    heldout = make_train_dir(tmp_path / "heldout", count=1)
    (heldout / "preview_1.txt").unlink()
    pairs = [(heldout / "char_001.png", "brmbl, test picture 0")]
    adapter = tmp_path / "final.safetensors"
    adapter.write_bytes(adapter_from_checkpoint(good_checkpoints(root / "training" / RUN_SUBDIR)[-1]))

    scorer = ValidationLoss(config, params.tiny_model, params.evaluate)
    base, with_lora = scorer.score(pairs, None), scorer.score(pairs, adapter)
    again = ValidationLoss(config, params.tiny_model, params.evaluate)
    assert again.score(pairs, None) == base and again.score(pairs, adapter) == with_lora
    assert with_lora != base, "the LoRA must change the held-out loss"
    other_noise = ValidationLoss(config, params.tiny_model, replace(params.evaluate, noise_seed=7))
    assert other_noise.score(pairs, None) != base
