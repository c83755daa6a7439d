"""What the micro model's build measures: VAE reconstruction and how well generated pictures fit their prompts.

Every figure is on world pictures the build never trained on (``heldout_seed``). Prompt fit is
judged by the micro CLIP, on the generated pictures and, as the ceiling, on the world's own
renderings of the same captions; chance is given beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from charlora.evaluate.clip_metrics import ClipScorer
from charlora.progress import silenced
from charlora.world import COLOURS, SCENES, SPECIES, caption, render, sample_specs
from charlora.world.captions import SCENE_PHRASES


def attribute_accuracy(image_embeddings: np.ndarray, texts: Callable, specs, attribute: str) -> float:
    """Zero-shot accuracy of CLIP naming ``attribute`` (scene, colour, species) of each picture."""
    if attribute == "scene":
        choices = list(SCENES)
        prompts = [f"a creature {SCENE_PHRASES[s]}" for s in choices]
        truth = [s.scene for s in specs]
    elif attribute == "colour":
        choices, truth = list(COLOURS), [s.creature.colour for s in specs]
        prompts = [f"a {c} creature" for c in choices]
    else:
        choices, truth = list(SPECIES), [s.creature.species for s in specs]
        prompts = [f"a {c}" for c in choices]
    guesses = (image_embeddings @ texts(prompts).T).argmax(axis=1)
    return float(np.mean([choices[g] == t for g, t in zip(guesses, truth)]))


def prompt_fit_figures(generate: Callable[[str, int], Any], clip_dir: Path, seed: int, count: int,
                       sheet: Path | None = None) -> dict:
    """Generate ``count`` held-out captions and score them with CLIP against the world's own pictures."""
    specs = sample_specs(count, seed)
    captions = [caption(spec) for spec in specs]
    generated = [generate(text, index) for index, text in enumerate(captions)]
    real = [render(spec, generated[0].size) for spec in specs]
    clip = ClipScorer(str(clip_dir))  # the evaluate stage's CLIP scorer: the same embeddings as the metrics
    images, texts = clip.images, clip.texts
    text_embeddings = texts(captions)
    figures: dict[str, Any] = {"prompts": count}
    for label, pictures in (("generated", generated), ("world", real)):
        embedded = images(pictures)
        similarity = embedded @ text_embeddings.T
        own = np.diag(similarity)
        figures[label] = {
            "caption_top1": float(np.mean(similarity.argmax(axis=1) == np.arange(count))),
            "prompt_fit": float(own.mean()),
            "prompt_fit_margin": float(own.mean() - (similarity.sum() - own.sum()) / (count * (count - 1))),
            **{f"{a}_accuracy": attribute_accuracy(embedded, texts, specs, a) for a in ("scene", "colour", "species")},
        }
    figures["chance"] = {"caption_top1": 1 / count, "scene_accuracy": 1 / len(SCENES),
                         "colour_accuracy": 1 / len(COLOURS), "species_accuracy": 1 / len(SPECIES)}
    if sheet is not None:
        from charlora.models.micro.sheet import side_by_side

        side_by_side(real[:16], generated[:16], captions[:16]).save(sheet)
    return figures


def measure(recipe, model_dir: Path, clip_dir: Path, torch_vae, report: Callable[[str], None],
            sheet: Path | None) -> dict:
    """The shipped files' figures, through mflux: VAE PSNR, prompt fit of generated pictures, CLIP's own scores."""
    from charlora import mlx_runtime
    from charlora.models.folder import register_model_folder
    from charlora.models.micro.recipe import MICRO
    from charlora.models.micro.vae_pretrain import heldout_psnr, torch_roundtrip

    mlx_runtime.use_cpu_precision()
    import mlx.core as mx
    from mflux.models.flux2.variants import Flux2Klein

    model = Flux2Klein(model_config=register_model_folder(MICRO, model_dir), model_path=str(model_dir))

    def mflux_roundtrip(picture: np.ndarray) -> np.ndarray:
        latents = model.vae.encode(mx.array(picture[None]))
        return np.array(model.vae.decode(latents).astype(mx.float32))[0]

    vae_torch = heldout_psnr(torch_roundtrip(torch_vae), recipe.heldout_seed, recipe.heldout_images)
    vae_mflux = heldout_psnr(mflux_roundtrip, recipe.heldout_seed, recipe.heldout_images)
    report(f"vae: held-out PSNR {vae_mflux:.2f} dB through mflux (float16 files), {vae_torch:.2f} dB in torch float32")
    sampling = {"steps": 20, "guidance": 4.0, "width": 128, "height": 128}

    def generate(prompt: str, index: int):
        with silenced():  # mflux's bar per picture, 48 times over
            return model.generate_image(seed=index, prompt=prompt, num_inference_steps=sampling["steps"],
                                        width=sampling["width"], height=sampling["height"],
                                        guidance=sampling["guidance"]).image

    report(f"transformer: drawing {min(48, recipe.heldout_images)} held-out captions ({sampling['steps']} steps each)")
    fit = prompt_fit_figures(generate, clip_dir, recipe.heldout_seed, min(48, recipe.heldout_images), sheet)
    report(f"transformer: prompt fit {fit['generated']} (world pictures: {fit['world']}, chance {fit['chance']})")
    return {"vae_psnr_db": round(vae_mflux, 2), "vae_psnr_db_torch_float32": round(vae_torch, 2), "sampling": sampling,
            "prompt_fit": fit, "clip": fit["world"]}
