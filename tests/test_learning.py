"""The default run on the micro model learns the character, and the metrics catch runs that cannot.

One `dvc repro` of the default pipeline (the micro model, the shipped sample, default params) in a
fresh copy (the session's ``default_run``), held to the issue's bar (#13). Then runs that must fail
it, each from a copy of the same finished run: the captions shuffled between the training pictures
(the character's and the prior pictures'), the trigger word taken out of the captions, and the LoRA
applied at scale 0. The thresholds and the figures they were set from are in the README
("What the default run shows").
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from tests.conftest import clone_project, run, update_params

pytestmark = pytest.mark.slow

MIN_IDENTITY_GAIN = 0.10
MAX_LEAKAGE_SHARE = 1 / 3  # of the identity gain
MIN_PROMPT_FIT_SHARE = 0.9  # of the base model's prompt fit
MIN_HELDOUT_LOSS_DROP = 0.02  # relative: the LoRA's held-out loss at most 98 % of the base model's


def learned(evaluation: dict) -> bool:
    """The gain threshold: the character appears with the trigger word, and much less without it."""
    gain = evaluation["identity_gain"]
    return gain >= MIN_IDENTITY_GAIN and evaluation["leakage"] <= MAX_LEAKAGE_SHARE * gain


def retrain(source: Path, target: Path, change_captions) -> dict:
    """A copy of a finished run whose training captions (after merge) are changed, trained and evaluated again.

    The stage scripts run directly (`dvc repro` would rebuild the training folder from the captions).
    """
    project = clone_project(source, target)
    change_captions(sorted(p for p in (project / "data/train").rglob("*.txt") if not p.name.startswith("preview_")))
    for stage in ("train", "extract", "evaluate"):
        run([sys.executable, f"stages/{stage}.py"], project, timeout=1800)
    return json.loads((project / "metrics/eval.json").read_text())


def shuffle_captions(captions: list[Path]) -> None:
    """Every caption moves to another picture: the trigger word no longer marks the character's pictures."""
    texts = [c.read_text(encoding="utf-8") for c in captions]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    for caption, index in zip(captions, order):
        caption.write_text(texts[index], encoding="utf-8")


def remove_trigger(captions: list[Path]) -> None:
    for caption in captions:
        caption.write_text(caption.read_text(encoding="utf-8").replace("brmbl, ", "").replace("brmbl", ""),
                           encoding="utf-8")


def test_the_default_run_learns_the_character(default_run):
    project, evaluation, out = default_run
    assert "Running stage 'prior'" in out and "Running stage 'base_model'" in out
    assert "flux2-klein-micro" in (project / "models/training/config.json").read_text()
    gain = evaluation["identity_gain"]
    assert gain == pytest.approx(evaluation["identity"] - evaluation["base_identity"], abs=1e-5)
    assert gain >= MIN_IDENTITY_GAIN, evaluation
    assert evaluation["leakage"] <= MAX_LEAKAGE_SHARE * gain, evaluation
    assert evaluation["prompt_fit"] >= MIN_PROMPT_FIT_SHARE * evaluation["base_prompt_fit"], evaluation
    assert evaluation["best_val_loss"] <= (1 - MIN_HELDOUT_LOSS_DROP) * evaluation["base_val_loss"], evaluation
    scored = [row for row in evaluation["checkpoints"] if "score" in row]
    assert scored[0]["step"] == evaluation["checkpoints"][0]["step"], "the first checkpoint is always scored"
    assert evaluation["best_score"] > scored[0]["score"], evaluation["checkpoints"]
    assert (project / "models/samples/comparison.png").is_file()


@pytest.mark.parametrize("change_captions", [shuffle_captions, remove_trigger], ids=["shuffled", "no-trigger"])
def test_a_run_with_broken_captions_fails_the_gain_threshold(default_run, tmp_path, change_captions):
    evaluation = retrain(default_run[0], tmp_path / "project", change_captions)
    assert not learned(evaluation), evaluation


def test_a_lora_at_scale_0_gains_nothing(default_run, tmp_path):
    """The same checkpoints at scale 0: every picture is the base model's, so identity gain and leakage vanish."""
    project = clone_project(default_run[0], tmp_path / "project")
    update_params(project, {"evaluate.lora_scale": 0.0, "evaluate.image_checkpoints": 1})
    run([sys.executable, "stages/evaluate.py"], project, timeout=1800)
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    scored = [row for row in evaluation["checkpoints"] if "score" in row]
    assert scored and all(row["latent_shift"] == pytest.approx(0, abs=1e-6) for row in scored), scored
    assert all(abs(row["identity_gain"]) < 1e-4 and row["leakage"] == pytest.approx(0, abs=1e-4) for row in scored)
    assert not learned(evaluation), evaluation
