"""Build the micro FLUX.2 Klein model and the micro CLIP from :mod:`charlora.models.micro.recipe` (``make micro-model``).

Phases, in order, each resumable from its checkpoint in the work folder and skipped when its result
is there:

- ``text``: the tokenizer and the seeded random Qwen3 text encoder;
- ``vae``: the VAE (encoder and decoder) on world pictures, then its latent statistics: the latent space is fixed;
- ``transformer``: the world encoded once (latents, prompt embeddings), then the transformer's pretraining
  (recipe ``pretraining``);
- ``focus``: the transformer's second pretraining, with the creature's tokens weighted more (recipe ``focus``);
- ``decoder``: the decoder alone for the frozen encoder (independent of ``transformer``: either order, or at once);
- ``clip``: the micro CLIP;
- ``ship``: the shipped folders in float16, the figures measured through mflux, the manifests.

Training runs in torch with the diffusers/transformers twins of mflux's classes; mflux loads the
result from the Hugging Face layout exactly as it loads the real model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from charlora.models.micro.recipe import MICRO, MICRO_CLIP, Recipe

PHASES = ("text", "vae", "transformer", "focus", "decoder", "clip", "ship")


def quick(recipe: Recipe) -> Recipe:
    """A minutes-long version of the recipe: the same code path, for tests (the weights are not good)."""
    return replace(recipe, vae=replace(recipe.vae, steps=8, decoder_steps=4, batch=4, stats_images=8),
                   pretraining=replace(recipe.pretraining, steps=6, restart_at=(3,), images=24, warmup_steps=2, batch=4),
                   focus=replace(recipe.focus, steps=4, images=24, warmup_steps=2),
                   clip=replace(recipe.clip, steps=4, batch=8), heldout_images=4)


class Build:
    """The work folder's phases: each reads what the earlier ones wrote there."""

    def __init__(self, recipe: Recipe, work_dir: Path, report: Callable[[str], None]):
        import torch

        torch.set_num_threads(recipe.threads)
        self.recipe, self.work, self.report = recipe, work_dir, report
        self.work.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.work / name

    def _done(self, name: str, marker: str = "config.json") -> bool:
        if (self.path(name) / marker).is_file():
            self.report(f"{name}: already built in {self.path(name)}; skipped")
            return True
        return False

    def _checkpointed(self, name: str) -> tuple[dict | None, Callable[[dict], None]]:
        import torch

        path = self.path(f"{name}.pt")
        state = torch.load(path, weights_only=False) if path.is_file() else None
        return state, lambda new_state: torch.save(new_state, path)

    def text(self) -> None:
        from charlora.models.micro import text

        if self._done("text_encoder"):
            return
        tokenizer = text.build_tokenizer(self.recipe.text)
        text.build_text_encoder(self.recipe.text, len(tokenizer)).save_pretrained(self.path("text_encoder"))
        tokenizer.save_pretrained(self.path("tokenizer"))

    def _text(self):
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        return AutoTokenizer.from_pretrained(self.path("tokenizer")), Qwen3ForCausalLM.from_pretrained(
            self.path("text_encoder")).eval()

    def vae(self) -> None:
        from charlora.models.micro import vae_pretrain

        if self._done("vae_joint"):
            return
        vae = vae_pretrain.build_vae(self.recipe.vae)
        resume, checkpoint = self._checkpointed("vae_joint")
        vae_pretrain.train_vae(vae, self.recipe.vae, self.report, resume=resume, checkpoint=checkpoint)
        vae_pretrain.measure_latent_stats(vae, self.recipe.vae.stats_seed, self.recipe.vae.stats_images)
        vae.save_pretrained(self.path("vae_joint"))

    def _vae(self, name: str):
        from diffusers import AutoencoderKLFlux2

        return AutoencoderKLFlux2.from_pretrained(self.path(name)).eval()

    def _world_latents(self, name: str, encode: Callable[[], object]):
        """The encoded pretraining data in ``name``.pt, encoded (``encode``) and saved the first time."""
        import torch

        path = self.path(f"{name}.pt")
        if path.is_file():
            return torch.load(path, weights_only=False)
        data = encode()
        torch.save(data, path)
        return data

    def _pretrain(self, name: str, model, data, recipe) -> None:
        """Pretrain ``model`` on ``data``, resuming from ``name``.pt; its EMA weights go to the folder ``name``."""
        from charlora.models.micro.transformer_pretrain import Pretraining

        training = Pretraining(model, data, recipe)
        resume, checkpoint = self._checkpointed(name)
        if resume:
            training.load(resume)
            self.report(f"{name}: resuming at step {training.step}")
        training.run(self.report, checkpoint)
        training.ema.save_pretrained(self.path(name))

    def transformer(self) -> None:
        from charlora.models.micro import transformer_pretrain

        if self._done("transformer"):
            return
        recipe = self.recipe.pretraining

        def encode():
            tokenizer, text_encoder = self._text()
            return transformer_pretrain.encode_world(self._vae("vae_joint"), tokenizer, text_encoder, recipe.images,
                                                     recipe.renders_per_caption, recipe.world_seed, self.report)

        data = self._world_latents("world_latents", encode)
        start = transformer_pretrain.build_transformer(self.recipe.transformer, data.embeddings.shape[-1])
        self._pretrain("transformer", start, data, recipe)

    def focus(self) -> None:
        """The focus pretraining (:data:`~charlora.models.micro.recipe.FOCUS`), from the float16-rounded weights."""
        from safetensors.torch import load_file

        from charlora.models.micro import transformer_pretrain

        focus = self.recipe.focus
        if not focus.steps or self._done("transformer_focus"):
            return

        def encode():  # the first pretraining's models as they ship (float16), so the shipped weights continue here
            tokenizer, text_encoder = self._text()
            return transformer_pretrain.encode_world(_rounded(self._vae("vae_joint")), tokenizer, _rounded(text_encoder),
                                                     focus.images, focus.renders_per_caption, focus.world_seed,
                                                     self.report, creature_shares=True)

        data = self._world_latents("focus_latents", encode)
        start = transformer_pretrain.build_transformer(self.recipe.transformer, data.embeddings.shape[-1])
        start.load_state_dict(load_file(self.path("transformer") / "diffusion_pytorch_model.safetensors"))
        self._pretrain("transformer_focus", _rounded(start), data, focus)

    def decoder(self) -> None:
        from charlora.models.micro import vae_pretrain

        if self._done("vae"):
            return
        vae = self._vae("vae_joint")
        resume, checkpoint = self._checkpointed("vae_decoder")
        vae_pretrain.train_vae(vae, self.recipe.vae, self.report, decoder_only=True, resume=resume, checkpoint=checkpoint)
        vae.save_pretrained(self.path("vae"))

    def clip(self) -> None:
        from charlora.models.micro import clip_pretrain

        if self._done(MICRO_CLIP):
            return
        model, processor = clip_pretrain.build_clip(self.recipe.clip)
        clip_pretrain.train_clip(model, processor, self.recipe.clip, self.report)
        model.save_pretrained(self.path(MICRO_CLIP))
        processor.save_pretrained(self.path(MICRO_CLIP))

    def ship(self, out_dir: Path, sheet: Path | None) -> dict:
        """Assemble, convert to float16, measure through mflux, write the manifests; returns the model's manifest."""
        from charlora.models import shipped
        from charlora.models.micro.figures import measure

        model_dir, clip_dir = out_dir / MICRO, out_dir / MICRO_CLIP
        for target in (model_dir, clip_dir):
            shutil.rmtree(target, ignore_errors=True)
        transformer = "transformer_focus" if self.recipe.focus.steps else "transformer"
        for part, source in (("text_encoder", "text_encoder"), ("tokenizer", "tokenizer"), ("vae", "vae"),
                             ("transformer", transformer)):
            shutil.copytree(self.path(source), model_dir / part)
        shutil.copytree(self.path(MICRO_CLIP), clip_dir)
        for folder in (model_dir, clip_dir):
            shipped.to_float16(folder)
        figures = measure(self.recipe, model_dir, clip_dir, self._vae("vae"), self.report, sheet)
        versions = _versions()
        shipped.write_manifest(clip_dir, {"clip": self.recipe.as_dict()["clip"]}, {"clip": figures["clip"]}, versions)
        return shipped.write_manifest(model_dir, self.recipe.as_dict(), figures, versions)


def _rounded(module):
    """``module`` with its weights rounded to float16 and back to float32: exactly what loading the shipped files gives."""
    return module.half().float()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "diffusers", "transformers", "mflux", "mlx")}


def build(recipe: Recipe, out_dir: Path, work_dir: Path, report: Callable[[str], None], phases=PHASES,
          sheet: Path | None = None) -> dict | None:
    """Run ``phases`` of the build in ``work_dir``; with ``ship`` among them, return the shipped model's manifest."""
    steps = Build(recipe, work_dir, report)
    for phase in phases:
        if phase == "ship":
            return steps.ship(out_dir, sheet)
        getattr(steps, phase)()
    return None
