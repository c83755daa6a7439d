"""The default run learns the character, and the metrics catch runs that do not.

One `dvc repro` of the default pipeline (the micro model, the shipped sample, default params) in a
fresh copy; then three broken runs from the same prepared data: captions shuffled between the
training pictures, the trigger word taken out of the captions, the LoRA applied at scale 0. The
thresholds come from measured runs with a margin (README: "What the default run shows").
"""

from __future__ import annotations

import json
import random
import sys

import pytest

from tests.conftest import clone_project, run, update_params

pytestmark = pytest.mark.slow

# Measured on the default run and on the broken ones (README); each threshold sits between them with a margin.
MIN_IDENTITY_GAIN = 0.10
MAX_LEAKAGE_SHARE = 1 / 3  # of the identity gain
MIN_PROMPT_FIT_SHARE = 0.9  # of the base model's prompt fit
MIN_HELDOUT_LOSS_DROP = 0.02  # relative: the LoRA's held-out loss at most 98 % of the base model's


def rerun_from_training(source, target, change_training_folder=None, params=None) -> dict:
    """A copy of a finished run whose training folder (after merge) is changed, trained and evaluated again.

    The stage scripts run directly (not `dvc repro`, which would rebuild data/train from the captions).
    """
    project = clone_project(source, target)
    if params:
        update_params(project, params)
    if change_training_folder:
        change_training_folder(project / "data/train/bramble")
    stages = ("evaluate",) if change_training_folder is None else ("train", "extract", "evaluate")
    for stage in stages:
        run([sys.executable, f"stages/{stage}.py"], project, timeout=1800)
    return json.loads((project / "metrics/eval.json").read_text())


def shuffle_captions(folder):
    """Every caption in the training folder (the character's and the prior pictures') moves to another picture."""
    captions = sorted(folder.glob("*.txt"))
    captions = [c for c in captions if not c.name.startswith("preview_")]
    texts = [c.read_text() for c in captions]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    for caption, index in zip(captions, order):
        caption.write_text(texts[index])


def remove_trigger(folder):
    for caption in folder.glob("*.txt"):
        caption.write_text(caption.read_text().replace("brmbl, ", "").replace("brmbl", ""))


def test_the_default_run_learns_the_character(default_run):
    project, evaluation, out = default_run
    assert "Running stage 'prior'" in out and "Running stage 'base_model'" in out
    gain, leakage = evaluation["identity_gain"], evaluation["leakage"]
    assert gain == pytest.approx(evaluation["identity"] - evaluation["base_identity"], abs=1e-5)
    assert gain >= MIN_IDENTITY_GAIN, evaluation
    assert leakage <= MAX_LEAKAGE_SHARE * gain, evaluation
    assert evaluation["prompt_fit"] >= MIN_PROMPT_FIT_SHARE * evaluation["base_prompt_fit"], evaluation
    assert evaluation["best_val_loss"] <= (1 - MIN_HELDOUT_LOSS_DROP) * evaluation["base_val_loss"], evaluation
    scored = [row for row in evaluation["checkpoints"] if "score" in row]
    assert scored[0]["step"] == evaluation["checkpoints"][0]["step"], "the first checkpoint gets images too"
    assert evaluation["best_score"] > scored[0]["score"], evaluation["checkpoints"]
    assert (project / "models/samples/comparison.png").is_file()


@pytest.mark.parametrize("broken", ["shuffled captions", "trigger word removed", "LoRA at scale 0"])
def test_a_broken_run_fails_the_gain_threshold(default_run, tmp_path, broken):
    project = default_run[0]
    if broken == "shuffled captions":
        evaluation = rerun_from_training(project, tmp_path / "project", shuffle_captions)
    elif broken == "trigger word removed":
        evaluation = rerun_from_training(project, tmp_path / "project", remove_trigger)
    else:
        evaluation = rerun_from_training(project, tmp_path / "project", params={"evaluate.lora_scale": 0.0})
    assert evaluation["identity_gain"] < MIN_IDENTITY_GAIN, evaluation
