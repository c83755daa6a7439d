"""The micro FLUX.2 Klein model: shipped files match their manifest, mflux loads them like the real model,
and mflux computes what the diffusers/transformers twins it was trained with compute."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from charlora.errors import PipelineError
from charlora.models import shipped
from charlora.models.micro.recipe import MICRO, MICRO_CLIP

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "micro"
MIN_TRAIT_MARGIN = 0.05  # of identity; measured margins: README, "The micro CLIP, and what identity can see"


@pytest.mark.parametrize("name", [MICRO, MICRO_CLIP])
def test_shipped_files_match_their_manifest(name):
    folder = SHIPPED / name
    assert shipped.problems(folder) == []
    manifest = json.loads((folder / shipped.MANIFEST).read_text())
    assert manifest["files"] and all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 20 * 1024 * 1024, f"the shipped micro models take {total / 2**20:.1f} MB; the budget is 20 MB"


def test_a_changed_or_missing_file_is_named_and_install_refuses(tmp_path):
    folder = shutil.copytree(SHIPPED / MICRO_CLIP, tmp_path / MICRO_CLIP)
    weights = next(folder.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    (folder / "config.json").unlink()
    found = shipped.problems(folder)
    assert any(weights.name in p and "sha256" in p for p in found) and any("config.json is missing" in p for p in found)
    with pytest.raises(PipelineError, match="does not match its manifest"):
        shipped.install(folder, tmp_path / "installed")
    assert not (tmp_path / "installed").exists()


def test_mflux_loads_the_folder_with_its_own_geometry_and_computes_what_torch_computes():
    """Transformer, VAE and text encoder: mflux (mlx) against the diffusers/transformers twins, same weights."""
    import mlx.core as mx
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from mflux.models.flux2.model.flux2_text_encoder.prompt_encoder import Flux2PromptEncoder
    from transformers import Qwen3ForCausalLM

    from charlora import mlx_runtime
    from charlora.models.folder import register_model_folder
    from charlora.models.micro.text import embed_prompts
    from charlora.models.micro.transformer_pretrain import position_ids

    mlx_runtime.use_cpu_precision()
    folder = SHIPPED / MICRO
    config = register_model_folder(MICRO, folder)
    from mflux.models.flux2.variants import Flux2Klein

    model = Flux2Klein(model_config=config, model_path=str(folder))
    transformer = Flux2Transformer2DModel.from_pretrained(folder / "transformer").float().eval()
    assert len(model.transformer.transformer_blocks) == transformer.config.num_layers
    assert model.vae.encoder.conv_in.weight.shape[0] == json.loads((folder / "vae/config.json").read_text())[
        "block_out_channels"][0]

    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 48, 128)).astype(np.float32)  # a 128x96 picture: 8 x 6 tokens
    prompt = rng.standard_normal((1, 512, transformer.config.joint_attention_dim)).astype(np.float32) * 0.05
    image_ids, text_ids = position_ids(96, 128)
    for sigma in (0.2, 0.8):
        ours = np.array(model.transformer(hidden_states=mx.array(latents), encoder_hidden_states=mx.array(prompt),
                                          timestep=mx.array([sigma]), img_ids=mx.array(image_ids.numpy()),
                                          txt_ids=mx.array(text_ids.numpy()), guidance=None))
        with torch.inference_mode():
            theirs = transformer(hidden_states=torch.from_numpy(latents), encoder_hidden_states=torch.from_numpy(prompt),
                                 timestep=torch.tensor([sigma]), img_ids=image_ids, txt_ids=text_ids,
                                 return_dict=False)[0].numpy()
        assert np.abs(ours - theirs).max() < 1e-4 * max(1.0, np.abs(theirs).max())

    vae = AutoencoderKLFlux2.from_pretrained(folder / "vae").float().eval()
    picture = rng.uniform(-1, 1, (1, 3, 96, 128)).astype(np.float32)
    with torch.inference_mode():
        encoded = vae.encode(torch.from_numpy(picture)).latent_dist.mode()
        decoded = vae.decode(encoded).sample.numpy()
    assert np.abs(np.array(model.vae.encode(mx.array(picture))) - encoded.numpy()).max() < 1e-4
    assert np.abs(np.array(model.vae.decode(mx.array(encoded.numpy()))) - decoded).max() < 1e-3

    tokenizer = model.tokenizers["qwen3"].tokenizer
    encoder = Qwen3ForCausalLM.from_pretrained(folder / "text_encoder").float().eval()
    text = "a round orange fox with a teal scarf, sitting in the snow"
    ours, _ = Flux2PromptEncoder.encode_prompt(text, tokenizer=model.tokenizers["qwen3"], text_encoder=model.text_encoder)
    theirs = embed_prompts(tokenizer, encoder, [text]).astype(np.float32)
    assert np.abs(np.array(ours) - theirs).max() < 2e-3  # the twin's embeddings are stored in float16


def test_the_sized_vae_hook_leaves_other_models_full_size(tmp_path):
    from mflux.models.flux2 import flux2_initializer

    from charlora.models.folder import register_model_folder

    register_model_folder(MICRO, SHIPPED / MICRO)
    assert flux2_initializer.Flux2VAE.__name__ == "Flux2VAE"  # only swapped while a registered model is built
    vae = flux2_initializer.Flux2VAE()
    assert vae.encoder.conv_in.weight.shape[0] == 128  # FLUX.2's own width


@pytest.mark.slow
def test_the_build_runs_end_to_end_on_a_quick_recipe(tmp_path):
    """make micro-model's code path, every phase for a few steps: loadable weights, a manifest, figures."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "tools/build_micro_model.py"), "--quick", "--out",
                             str(tmp_path / "out"), "--work", str(tmp_path / "work")], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (MICRO, MICRO_CLIP):
        assert shipped.problems(tmp_path / "out" / name) == []
    figures = json.loads((tmp_path / "out" / MICRO / shipped.MANIFEST).read_text())["figures"]
    assert {"vae_psnr_db", "prompt_fit", "clip"} <= set(figures)
    assert 0 <= figures["prompt_fit"]["generated"]["scene_accuracy"] <= 1


def test_the_shipped_clip_matches_world_pictures_to_their_own_captions():
    """CLIP loaded from the shipped folder reads text as it was trained (a CLIPTokenizer would be rebuilt on load
    with OpenAI's pre-tokenizer, and every caption would then pool to the same embedding)."""
    from charlora.evaluate.clip_metrics import ClipScorer
    from charlora.world import caption, render, sample_specs

    specs = sample_specs(12, 9000)
    clip = ClipScorer(str(SHIPPED / MICRO_CLIP))
    images, texts = clip.images, clip.texts
    similarity = images([render(spec, (128, 128)) for spec in specs]) @ texts([caption(spec) for spec in specs]).T
    top1 = float(np.mean(similarity.argmax(axis=1) == np.arange(len(specs))))
    assert top1 >= 0.5, f"the shipped CLIP finds the picture's own caption for {top1:.0%} of 12 (chance 8 %)"


def evaluation_shots() -> list[dict[str, str]]:
    """The scene, pose, size and position of each micro evaluation prompt (validation/micro_prompts.json)."""
    from charlora.evaluate.prompts import load_prompts
    from charlora.world import parse_scene_caption

    prompts = load_prompts(ROOT / "validation/micro_prompts.json", "brmbl", None)
    return [parse_scene_caption(prompt.without_trigger) for prompt in prompts]


@pytest.mark.parametrize("trait", [{"colour": "brown"}, {"accessory_colour": "red"}, {"species": "mouse"}],
                         ids=["brown", "red-scarf", "mouse"])
def test_the_shipped_clip_tells_bramble_from_a_creature_one_trait_away(trait):
    """Identity as evaluate measures it (mean CLIP similarity to bramble's pictures), for bramble and for a
    creature that differs from it in one trait, both drawn by the world in the evaluation prompts' scenes: bramble
    scores clearly higher. (The CLIP built before look-alike batches and 96 px told only the body colour apart.)"""
    from dataclasses import replace

    from charlora.evaluate.clip_metrics import ClipScorer, identity
    from charlora.world import BRAMBLE, Spec, render

    sys.path.insert(0, str(ROOT / "tools"))
    import make_sample_character as sample

    clip = ClipScorer(str(SHIPPED / MICRO_CLIP))
    reference = clip.images([render(shot.spec, (128, 128)) for shot in sample.SHOTS])

    shots = evaluation_shots()

    def score(creature):
        return identity(clip.images([render(Spec(creature, **shot, seed=seed), (128, 128))
                                     for shot in shots for seed in (0, 1)]), reference)

    bramble, other = score(BRAMBLE), score(replace(BRAMBLE, **trait))
    assert bramble - other >= MIN_TRAIT_MARGIN, (bramble, other)


def test_the_learning_rate_restarts_and_a_resumed_build_follows_the_recipe():
    """The first cycle of a recipe with a warm restart is the schedule of a recipe that stops there (so a build
    resumed from that recipe's last checkpoint is the build from scratch), and a resumed build takes its learning
    rate from the recipe, not from the checkpoint's schedule."""
    from dataclasses import replace

    import torch

    from charlora.models.micro.recipe import RECIPE
    from charlora.models.micro.transformer_pretrain import Pretraining, WorldLatents

    short = replace(RECIPE.pretraining, steps=40, restart_at=(), warmup_steps=5)
    long = replace(short, steps=70, restart_at=(40,))
    data = WorldLatents({(16, 16): np.zeros((2, 1, 4), np.float16)}, {(16, 16): np.zeros(2, int)},
                        np.zeros((2, 512, 4), np.float16), ["a", " "])

    def training(recipe):
        return Pretraining(torch.nn.Linear(4, 4), data, recipe)

    first, second = training(short), training(long)
    factors = [second._learning_rate_factor(step) for step in range(70)]
    assert factors[:40] == [first._learning_rate_factor(step) for step in range(40)]
    assert factors[39] == pytest.approx(0.05, abs=0.005) and factors[40] == pytest.approx(1 / 5)
    assert max(factors[40:]) == pytest.approx(1.0) and factors[45] > factors[60] > factors[69]

    for _ in range(40):  # the short recipe's run to its end, then the long recipe resumes from its state
        first.optimizer.step()
        first.schedule.step()
    first.step = 40
    second.load(first.state())
    assert second.step == 40
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(long.learning_rate / 5)
    faster = training(replace(long, learning_rate=2 * long.learning_rate))  # a recipe whose learning rate changed
    faster.load(first.state())
    faster.schedule.step()
    assert faster.optimizer.param_groups[0]["lr"] == pytest.approx(2 * long.learning_rate * (2 / 5))


def test_the_creature_share_of_each_token_follows_where_the_creature_stands():
    """The focus phase's token weights: the creature's share of each 16 px token, in the transformer's token order."""
    from dataclasses import replace

    from charlora.models.micro.world_data import creature_share
    from charlora.world import sample_specs

    spec = replace(sample_specs(1, seed=7)[0], size="large")
    columns = {}
    for position in ("left", "centre", "right"):
        shares = creature_share(replace(spec, position=position), (128, 80))
        assert shares.shape == (5 * 8,) and 0 <= shares.min() and shares.max() <= 1 and shares.max() > 0.5
        grid = shares.reshape(5, 8)  # rows of tokens, as mflux packs them (row-major)
        columns[position] = float((grid.sum(axis=0) * np.arange(8)).sum() / grid.sum())
    assert columns["left"] < columns["centre"] < columns["right"]
    small = creature_share(replace(spec, size="small"), (128, 80))
    assert small.sum() < creature_share(spec, (128, 80)).sum()
