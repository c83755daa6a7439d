"""prior: prior-preservation pictures planned from the captions, generated once, cached by what decides them."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from PIL import Image

from charlora.data.prior import fit_size, generate_priors, is_prior, plan_priors, resolve_prior, without_trigger
from charlora.fileio import write_json
from charlora.models.registry import MICRO, TINY, get_base_model
from tests.conftest import noise_image


@pytest.mark.parametrize("caption, expected", [
    ("brmbl, sitting in the snow, small", "sitting in the snow, small"),
    ("sitting beside brmbl, on the left", "sitting beside, on the left"),
    ("brmbl", ""),
    ("brmbl-like fox, brmbl, waving", "brmbl-like fox, waving"),  # only the whole word goes
])
def test_the_trigger_word_is_taken_out_of_the_caption(caption, expected):
    assert without_trigger(caption, "brmbl") == expected


def test_sizes_keep_the_picture_shape_in_multiples_of_16():
    assert fit_size(1024, 768, 128) == (128, 96)
    assert fit_size(768, 1365, 128) == (64, 128) or fit_size(768, 1365, 128) == (80, 128)
    assert fit_size(4000, 100, 128) == (128, 16)


def project_files(tmp_path, count=3):
    processed, captions = tmp_path / "processed", tmp_path / "captions"
    captions.mkdir(parents=True)
    manifest = []
    for index in range(1, count + 1):
        noise_image(processed / f"char_{index:03d}.png", (96, 64), seed=index)
        (captions / f"char_{index:03d}.txt").write_text(f"brmbl, jumping in the snow, picture {index}\n")
        manifest.append({"name": f"char_{index:03d}", "width": 1024, "height": 683})
    write_json(processed / "manifest.json", manifest)
    return processed, captions


def test_priors_are_planned_per_picture_with_their_own_seeds(tmp_path, project_params):
    processed, captions = project_files(tmp_path)
    pictures = plan_priors(processed, captions, "brmbl", project_params.prior, 2, 128)
    assert [p.name for p in pictures] == [f"char_00{i}_prior{k}" for i in (1, 2, 3) for k in (1, 2)]
    assert len({p.seed for p in pictures}) == 6
    assert pictures[0].caption == "jumping in the snow, picture 1" and (pictures[0].width, pictures[0].height) == (128, 80)
    assert is_prior(tmp_path / "char_001_prior2.png") and not is_prior(tmp_path / "char_001.png")


class StandInModel:
    """Stands in for mflux's FLUX.2 Klein: a flat picture whose colour depends on the prompt (counts its calls)."""

    def __init__(self):
        self.calls = []

    def generate_image(self, *, seed, prompt, num_inference_steps, width, height, guidance):
        self.calls.append(prompt)
        return SimpleNamespace(image=Image.new("RGB", (width, height), (len(prompt) * 7 % 256, seed % 256, 0)))


def test_only_new_or_changed_pictures_are_generated(tmp_path, project_params):
    processed, captions = project_files(tmp_path)
    cache, loads, runs = tmp_path / "cache", [], []

    def run(model_identity="micro:abc", steps=12):
        runs.append(1)
        out = tmp_path / f"out{len(runs)}"
        out.mkdir()
        model = StandInModel()
        pictures = plan_priors(processed, captions, "brmbl", project_params.prior, 2, 128)
        summary = generate_priors(pictures, out, cache, model_identity, steps, 4.0, lambda: loads.append(1) or model)
        return summary, model, out

    first, model, out = run()
    assert first["generated"] == 6 and len(model.calls) == 6 and len(loads) == 1
    assert (out / "char_002_prior1.txt").read_text() == "jumping in the snow, picture 2\n"
    with Image.open(out / "char_002_prior1.png") as picture:
        assert picture.size == (128, 80)
    again, model, _ = run()
    assert again == {**first, "generated": 0, "cached": 6} and model.calls == [] and len(loads) == 1  # no model loaded
    (captions / "char_003.txt").write_text("brmbl, waving on a beach\n")
    changed, model, _ = run()
    assert changed["generated"] == 2 and model.calls == ["waving on a beach"] * 2
    assert run(steps=20)[0]["generated"] == 6  # other sampling settings: other pictures
    assert run(model_identity="micro:other")[0]["generated"] == 6  # another base model: other pictures


def test_prior_settings_follow_the_base_model(project_params):
    micro = replace(project_params, base_model=replace(project_params.base_model, name=MICRO))
    assert resolve_prior(micro, get_base_model(MICRO)).per_image == get_base_model(MICRO).sampling.prior_per_image > 0
    tiny = replace(project_params, base_model=replace(project_params.base_model, name=TINY))
    assert resolve_prior(tiny, get_base_model(TINY)).per_image == 0
    explicit = replace(micro, prior=replace(micro.prior, per_image=0, steps=3))
    settings = resolve_prior(explicit, get_base_model(MICRO))
    assert (settings.per_image, settings.steps, settings.resolution) == (0, 3, 128)


def test_pictures_drawn_in_two_processes_are_the_ones_one_process_draws(tmp_path, project_params, tiny_flux2, capsys):
    """prior.workers 2: two processes, each with its own model, draw every picture the one process draws, to the
    byte (each picture has its own seed), and the progress display counts them all."""
    from functools import partial

    from charlora.models.loading import load_flux2

    processed, captions = project_files(tmp_path)
    pictures = plan_priors(processed, captions, "brmbl", project_params.prior, 1, 32)
    load = partial(load_flux2, TINY, tiny_flux2, project_params.tiny_model)
    drawn = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        out.mkdir()
        summary = generate_priors(pictures, out, tmp_path / f"cache{workers}", "tiny:t", 2, 1.0, load, workers=workers)
        assert summary["generated"] == len(pictures) == 3
        drawn[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
    assert drawn[1] == drawn[2] and len(drawn[1]) == 3
    out = capsys.readouterr().out
    assert "loading the base model in 2 processes for 3 prior picture(s)" in out
    assert out.count("prior: picture 3/3") == 2, out


def test_prior_workers_default_to_every_core_for_an_embedded_model_on_a_cpu(project_params):
    import os

    import mlx.core as mx

    micro = replace(project_params, base_model=replace(project_params.base_model, name=MICRO))
    on_cpu = mx.default_device() == mx.cpu
    assert resolve_prior(micro, get_base_model(MICRO)).workers == ((os.cpu_count() or 1) if on_cpu else 1)
    real = replace(project_params, base_model=replace(project_params.base_model, name="flux2-klein-base-4b"))
    assert resolve_prior(real, get_base_model("flux2-klein-base-4b")).workers == 1
    assert resolve_prior(replace(micro, prior=replace(micro.prior, workers=3)), get_base_model(MICRO)).workers == 3
