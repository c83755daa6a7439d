"""evaluate: a deterministic held-out loss that sees the LoRA, and the best-checkpoint pick."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from charlora.errors import PipelineError
from charlora.evaluate.clip_metrics import diversity, identity, prompt_fit, score
from charlora.evaluate.heldout import ValidationLoss, spread_timesteps
from charlora.evaluate.run import pick_best, shortlist, trigger_binding
from charlora.evaluate.settings import resolve_sampling
from charlora.evaluate.sheets import contact_sheet
from charlora.lora.extract import adapter_from_checkpoint
from charlora.train.checkpoints import RUN_SUBDIR, good_checkpoints
from tests.conftest import make_train_dir


def test_spread_timesteps():
    assert spread_timesteps(25, 40, 4) == [26, 30, 34, 38]
    assert spread_timesteps(0, 3, 4) == [0, 1, 2]
    assert spread_timesteps(0, 8, 1) == [4]


def test_shortlist_and_best_pick_on_hand_made_tables():
    losses = {4: 0.50, 8: 0.41, 12: 0.41, 16: 0.45}
    assert shortlist(losses, 2) == [4, 8, 12]  # the first checkpoint always: the baseline
    assert shortlist(losses, 1) == [4, 8]
    assert shortlist(losses, None) == [4, 8, 12, 16]
    rows = [{"step": 4, "val_loss": 0.50}, {"step": 8, "val_loss": 0.41, "score": 0.90},
            {"step": 12, "val_loss": 0.41, "score": 0.95}, {"step": 16, "val_loss": 0.45, "score": 0.95}]
    assert pick_best(rows) == 12  # highest score; the tie with step 16 goes to the lower held-out loss
    assert pick_best([{"step": 4, "val_loss": 0.5}, {"step": 8, "val_loss": 0.4}, {"step": 12, "val_loss": 0.4}]) == 8
    with pytest.raises(PipelineError, match="no checkpoints"):
        pick_best([])


def test_clip_metrics_on_hand_made_embeddings(project_params):
    import numpy as np

    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert identity(np.stack([a, a]), np.stack([a])) == 1.0
    assert identity(np.stack([b]), np.stack([a])) == 0.0
    assert prompt_fit(np.stack([a, b]), np.stack([a, a])) == 0.5
    assert diversity(np.stack([a, a, a])) == 0.0 and diversity(np.stack([a, b])) == 1.0 and diversity(np.stack([a])) == 0.0
    metrics = {"identity": 0.8, "prompt_fit": 0.3, "leakage": 0.1, "diversity": 0.4}
    assert score(metrics, project_params.evaluate.score_weights) == pytest.approx(0.8 + 0.3 - 0.1 + 0.5 * 0.4)


def test_contact_sheet_layout():
    from PIL import Image

    from charlora.evaluate.sampling import Sample

    def samples(count, color):
        return [Sample(f"p{i}", f"prompt {i}", Image.new("RGB", (32, 32), color), None) for i in range(count)]

    sheet = contact_sheet([("step 4", samples(3, (255, 0, 0))), ("no trigger", samples(1, (0, 0, 255)))], cell=64)
    assert sheet.size == (110 + 3 * 64, 2 * (64 + 28))
    assert sheet.getpixel((110 + 2 * 64 + 32, 32)) == (255, 0, 0)  # row 1, column 3
    assert sheet.getpixel((110 + 32, 92 + 32)) == (0, 0, 255)  # row 2, column 1
    assert sheet.getpixel((110 + 64 + 32, 92 + 32)) == (255, 255, 255)  # row 2 has one image


@pytest.mark.slow
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


@pytest.mark.slow
def test_trigger_binding_compares_the_same_pictures_and_noise_under_two_captions(trained, tmp_path):
    """The held-out sets with and without the trigger word differ by their captions alone."""
    params, root, _ = trained
    config = json.loads((root / "training" / "config.json").read_text())
    picture = make_train_dir(tmp_path / "heldout", count=1) / "char_001.png"
    adapter = tmp_path / "final.safetensors"
    adapter.write_bytes(adapter_from_checkpoint(good_checkpoints(root / "training" / RUN_SUBDIR)[-1]))
    sets = {"with": [(picture, "brmbl, test picture 0")], "without": [(picture, "test picture 0")],
            "again": [(picture, "brmbl, test picture 0")]}

    scorer = ValidationLoss(config, params.tiny_model, params.evaluate)
    base, lora = scorer.score_sets(sets, None), scorer.score_sets(sets, adapter)
    assert base["again"] == base["with"] and lora["again"] == lora["with"], "same picture and caption: same noise, same loss"
    assert base["without"] != base["with"], "the trigger word is part of the conditioning"
    assert ValidationLoss(config, params.tiny_model, params.evaluate).score(sets["with"], adapter) == lora["with"]
    assert trigger_binding(base, base) == 0
    assert trigger_binding(lora, base) != 0, "a trained LoRA changes how much the trigger word tells the model"


@pytest.mark.slow
def test_lora_changes_generated_latents_and_generation_is_repeatable(trained, tiny_flux2):
    """Same seed and prompt: the LoRA moves the sampler's final latents (compared in float, not on PNGs)."""
    import numpy as np

    from charlora.evaluate.sampling import generate
    from charlora.models.loading import load_flux2

    params, root, _ = trained
    adapter = root / "final.safetensors"
    adapter.write_bytes(adapter_from_checkpoint(good_checkpoints(root / "training" / RUN_SUBDIR)[-1]))
    prompt = [("p", "brmbl, waving")]
    base = load_flux2("flux2-klein-tiny", tiny_flux2, params.tiny_model)
    first = generate(base, prompt, seed=3, steps=2, guidance=4.0, resolution=32)[0]
    repeat = generate(base, prompt, seed=3, steps=2, guidance=4.0, resolution=32)[0]
    lora = load_flux2("flux2-klein-tiny", tiny_flux2, params.tiny_model, lora_paths=[adapter], lora_scales=[1.0])
    with_lora = generate(lora, prompt, seed=3, steps=2, guidance=4.0, resolution=32)[0]
    assert first.image.size == (32, 32)
    assert np.array_equal(first.latents, repeat.latents)
    assert np.abs(with_lora.latents - first.latents).max() > 1e-6


def test_sampling_params_set_to_zero_are_honoured_and_null_takes_the_model_default(project_params):
    from charlora.models.registry import get_base_model

    defaults = get_base_model("flux2-klein-base-4b").sampling
    assert resolve_sampling(project_params.evaluate, defaults).guidance == 4.0  # null: the model's
    zero = replace(project_params.evaluate, guidance=0.0, steps=1, resolution=16, max_prompts=1, image_checkpoints=1,
                   clip_model="models/base/clip-tiny")
    assert resolve_sampling(zero, defaults) == type(resolve_sampling(zero, defaults))(
        1, 0.0, 16, 1, 1, "models/base/clip-tiny", zero.prompts_file or defaults.prompts_file)


@pytest.mark.slow
def test_the_base_model_pictures_come_back_from_the_cache_as_drawn(tiny_flux2, project_params, tmp_path):
    """What the cache gives back is what the base model drew (pixels and final latents), for the same model,
    prompts, seeds and sampling settings only."""
    import numpy as np

    from charlora.evaluate.base_samples import BaseSampleCache
    from charlora.evaluate.sampling import generate
    from charlora.models.loading import load_flux2

    prompts = [("park", "brmbl, in a park"), ("snow", "brmbl, in the snow")]
    cache = BaseSampleCache(tmp_path / "cache", "flux2-klein-tiny:a", steps=2, guidance=4.0, resolution=32)
    assert cache.load(prompts, seed=3) is None
    drawn = generate(load_flux2("flux2-klein-tiny", tiny_flux2, project_params.tiny_model), prompts, seed=3, steps=2,
                     guidance=4.0, resolution=32)
    cache.save(drawn, seed=3)
    cached = cache.load(prompts, seed=3)
    assert [s.prompt_id for s in cached] == ["park", "snow"]
    for old, new in zip(drawn, cached):
        assert np.array_equal(np.asarray(old.image), np.asarray(new.image))
        assert np.array_equal(old.latents, new.latents) and new.latents.dtype == old.latents.dtype
    assert cache.load(prompts, seed=4) is None and cache.load(prompts[::-1], seed=3) is None
    for other in (BaseSampleCache(tmp_path / "cache", "flux2-klein-tiny:b", 2, 4.0, 32),
                  BaseSampleCache(tmp_path / "cache", "flux2-klein-tiny:a", 3, 4.0, 32)):
        assert other.load(prompts, seed=3) is None
