"""The default run on the micro model learns the character, and the metrics catch runs that cannot.

One `dvc repro` of the default pipeline (the micro model, the shipped sample, default params) in a
fresh copy (the session's ``default_run``), held to the issue's bar (#13): an identity gain of 0.10 or
more with leakage under a third of it, prompt fit kept, a best checkpoint that beats the first. Then
runs that must fail the gain threshold, each from a copy of the same finished run: the captions shuffled
between the training pictures (the character's and the prior pictures'), the trigger word taken out of
the captions, and the LoRA applied at scale 0. The thresholds and the figures they were set from are in
the README ("What the default run shows").
"""

from __future__ import annotations

import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clone_project, run, update_params

pytestmark = pytest.mark.slow

# The bar (#13); the measured figures are in the README ("What the default run shows").
MIN_IDENTITY_GAIN = 0.10
MAX_LEAKAGE_SHARE = 1 / 3  # of the identity gain
MIN_PROMPT_FIT_SHARE = 0.9  # of the base model's prompt fit
MIN_HELDOUT_LOSS_DROP = 0.05  # relative: the LoRA's held-out loss at most 95 % of the base model's


def learned(evaluation: dict) -> bool:
    """The gain threshold: the character appears with the trigger word, and much less without it."""
    gain = evaluation["identity_gain"]
    return gain >= MIN_IDENTITY_GAIN and evaluation["leakage"] <= MAX_LEAKAGE_SHARE * gain


def shuffle_captions(captions: list[Path]) -> None:
    """Every caption moves to another picture: the trigger word no longer marks the character's pictures."""
    texts = [c.read_text(encoding="utf-8") for c in captions]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    for caption, index in zip(captions, order):
        caption.write_text(texts[index], encoding="utf-8")


def remove_trigger(captions: list[Path]) -> None:
    """The trigger word taken out of every caption: the LoRA learns bramble for every prompt."""
    from charlora.data.prior import without_trigger

    for caption in captions:
        caption.write_text(without_trigger(caption.read_text(encoding="utf-8"), "brmbl") + "\n", encoding="utf-8")


BREAKS = {"shuffled": shuffle_captions, "no-trigger": remove_trigger}


def retrain_with_broken_captions(default_project: Path, project: Path, name: str) -> dict:
    """A copy of the default run whose training captions (after merge) are broken by ``BREAKS[name]``, trained and
    evaluated again: its metrics/eval.json. The stage scripts run directly (`dvc repro` would rebuild the training
    folder from the captions)."""
    clone_project(default_project, project)
    captions = sorted(p for p in (project / "data/train").rglob("*.txt") if not p.name.startswith("preview_"))
    assert len(captions) >= 10
    BREAKS[name](captions)
    for stage in ("train", "extract", "evaluate"):
        run([sys.executable, f"stages/{stage}.py"], project, timeout=1800)
    return json.loads((project / "metrics/eval.json").read_text())


def evaluate_at_scale_0(default_project: Path, default_best_step: int, project: Path) -> tuple[dict, str, set[int]]:
    """A copy of the default run evaluated again with the LoRA at scale 0: (metrics/eval.json, evaluate's output,
    the steps it was given). It scores the first checkpoint and the default run's best (extract.json narrowed to
    them): at scale 0 every checkpoint draws the base model's pictures, so the others would only add time."""
    clone_project(default_project, project)
    update_params(project, {"evaluate.lora_scale": 0.0})
    extracted = json.loads((project / "metrics/extract.json").read_text())
    first_and_best = {extracted["checkpoints"][0]["step"], default_best_step}
    extracted["checkpoints"] = [entry for entry in extracted["checkpoints"] if entry["step"] in first_and_best]
    (project / "metrics/extract.json").write_text(json.dumps(extracted))
    result = run([sys.executable, "stages/evaluate.py"], project, timeout=1800)
    return json.loads((project / "metrics/eval.json").read_text()), result.stdout + result.stderr, first_and_best


@pytest.fixture(scope="module")
def runs_from_the_default_run(default_run, tmp_path_factory) -> dict[str, Any]:
    """The runs that must fail, all from copies of the finished default run and all at once (mlx on a CPU keeps to
    about one core each, and the other test worker may be done): each break's eval.json by name, and "scale 0"."""
    project, evaluation, _ = default_run
    with ThreadPoolExecutor(len(BREAKS) + 1) as pool:
        scale_0 = pool.submit(evaluate_at_scale_0, project, evaluation["best_step"],
                              tmp_path_factory.mktemp("scale-0") / "project")
        broken = {name: pool.submit(retrain_with_broken_captions, project, tmp_path_factory.mktemp(name) / "project", name)
                  for name in BREAKS}
        return {**{name: future.result() for name, future in broken.items()}, "scale 0": scale_0.result()}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_run_with_broken_captions_fails_the_gain_threshold(runs_from_the_default_run, name):
    evaluation = runs_from_the_default_run[name]
    assert evaluation["latent_shift"] > 0, "the broken run trained a LoRA that changes the pictures"
    assert not learned(evaluation), evaluation


def test_the_default_run_is_measured_against_the_base_model(default_run):
    project, evaluation, out = default_run
    assert "Running stage 'prior'" in out and "Running stage 'base_model'" in out
    assert "flux2-klein-micro" in (project / "models/training/config.json").read_text()
    assert evaluation["identity_gain"] == pytest.approx(evaluation["identity"] - evaluation["base_identity"], abs=1e-5)
    rows = evaluation["checkpoints"]
    scored = [row for row in rows if "score" in row]
    assert scored[0]["step"] == rows[0]["step"], "the first checkpoint is always scored: the baseline"
    assert len(scored) >= 2 and all(row["latent_shift"] > 0 for row in scored), "the LoRA changes the pictures"
    best = next(row for row in rows if row["step"] == evaluation["best_step"])
    assert evaluation["trigger_binding"] == best["trigger_binding"], "eval.json's trigger_binding is the best checkpoint's"
    assert (project / "models/samples/comparison.png").is_file()


def test_the_lora_keeps_prompt_fit_and_the_best_checkpoint_beats_the_first(default_run):
    evaluation = default_run[1]
    assert evaluation["prompt_fit"] >= MIN_PROMPT_FIT_SHARE * evaluation["base_prompt_fit"], evaluation
    first = next(row for row in evaluation["checkpoints"] if "score" in row)
    assert evaluation["best_score"] > first["score"], evaluation["checkpoints"]


def test_the_default_run_learns_the_character(default_run):
    assert learned(default_run[1]), default_run[1]


def test_the_default_run_lowers_the_held_out_loss_and_the_trigger_word_does_the_work(default_run):
    """The best checkpoint predicts the held-out pictures of bramble better than the base model does, and better
    with the trigger word in their captions than without it (trigger binding above 0)."""
    evaluation = default_run[1]
    assert evaluation["best_val_loss"] <= (1 - MIN_HELDOUT_LOSS_DROP) * evaluation["base_val_loss"], evaluation
    assert evaluation["trigger_binding"] > 0, evaluation


def test_prompt_fit_reads_each_prompt_without_its_trigger_word(default_run):
    """The best checkpoint's saved pictures, embedded again: prompt fit is their similarity to the prompts with
    the trigger word left out (CLIP never learned it), and leaving it out does change the figure."""
    from charlora.evaluate.clip_metrics import ClipScorer, open_rgb, prompt_fit
    from charlora.evaluate.prompts import load_prompts
    from charlora.params import load_params

    project, evaluation, _ = default_run
    params = load_params(project / "params.yaml")
    prompts = load_prompts(project / "validation/micro_prompts.json", params.character.trigger, None)
    step_dir = project / f"models/samples/step{evaluation['best_step']:06d}"
    shown = [p for p in prompts if (step_dir / f"{p.id}.png").is_file()]
    clip = ClipScorer(str(project / "models/base/clip-micro"))
    pictures = clip.images([open_rgb(step_dir / f"{p.id}.png") for p in shown])
    without_trigger = prompt_fit(pictures, clip.texts([p.without_trigger for p in shown]))
    with_trigger = prompt_fit(pictures, clip.texts([p.text for p in shown]))
    assert len(shown) >= 2
    assert evaluation["prompt_fit"] == pytest.approx(without_trigger, abs=1e-4)
    assert abs(without_trigger - with_trigger) > 0.01, (without_trigger, with_trigger)


def test_a_lora_at_scale_0_gains_nothing(runs_from_the_default_run):
    """The default run's checkpoints at scale 0: every picture is the base model's, so identity gain and leakage
    vanish. The base model's pictures come from the default run's cache: the LoRA at scale 0 draws exactly them."""
    evaluation, output, steps_given = runs_from_the_default_run["scale 0"]
    assert "pictures: from the cache" in output
    scored = [row for row in evaluation["checkpoints"] if "score" in row]
    assert all(row["latent_shift"] == pytest.approx(0, abs=1e-6) for row in scored), scored
    assert all(abs(row["identity_gain"]) < 1e-4 and row["leakage"] == pytest.approx(0, abs=1e-4) for row in scored)
    assert sorted(row["step"] for row in scored) == sorted(steps_given)
    assert not learned(evaluation), evaluation
