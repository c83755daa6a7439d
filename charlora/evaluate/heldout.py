"""Held-out validation loss: mflux's training objective on the images merge kept out of training.

The loss is flow matching's ``mean((clean + predicted - noise)^2)`` at fixed timesteps spread over
the training range and fixed noise, with a checkpoint's LoRA or without any, so two runs give the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlora.errors import PipelineError
from charlora.layout import IMAGE_SUFFIXES
from charlora.models.loading import model_config
from charlora.params import EvaluateParams, TinyModelParams
from charlora.progress import silenced


@dataclass
class HeldoutItem:
    """One held-out image, encoded once: latents, prompt conditioning and size."""

    name: str
    clean_latents: Any
    cond: Any
    width: int
    height: int


def spread_timesteps(low: int, high: int, count: int) -> list[int]:
    """``count`` timestep indices spread evenly over ``[low, high)`` (fewer if the range is smaller)."""
    span = high - low
    if span <= count:
        return list(range(low, high))
    return sorted({low + (2 * i + 1) * span // (2 * count) for i in range(count)})


def heldout_pairs(heldout_dir: Path) -> list[tuple[Path, str]]:
    """(image, caption) pairs of the held-out folder; at least one."""
    pairs = []
    for image in sorted(p for p in heldout_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        pairs.append((image, image.with_suffix(".txt").read_text(encoding="utf-8").strip()))
    if not pairs:
        raise PipelineError(f"no held-out images in {heldout_dir}. Set merge.heldout_fraction above 0 and run dvc repro.")
    return pairs


class ValidationLoss:
    """Loads the base model through mflux's FLUX.2 training adapter and scores adapters on held-out data."""

    def __init__(self, training_config: dict, tiny: TinyModelParams | None, params: EvaluateParams) -> None:
        self.training_config = training_config
        self.tiny = tiny
        self.params = params
        loop = training_config["training_loop"]
        self.timesteps = spread_timesteps(int(loop["timestep_low"]), int(loop["timestep_high"]), params.num_timesteps)
        self.items: dict[str, list[HeldoutItem]] = {}  # encoded pictures per named set of pairs

    def _adapter(self, lora: Path | None) -> tuple[Any, Any]:
        from mflux.models.flux2.training_adapter.flux2_training_adapter import Flux2TrainingAdapter

        config = model_config(self.training_config["model"], self.tiny, self.training_config["model_path"])
        adapter = Flux2TrainingAdapter(model_config=config, quantize=self.training_config["quantize"],
                                       model_path=self.training_config["model_path"])
        if lora is not None:
            adapter.load_lora_adapter(path=lora)
        return adapter, config

    def _encode(self, adapter: Any, pairs: list[tuple[Path, str]]) -> list[HeldoutItem]:
        from mflux.models.common.training.utils import TrainingUtil
        from PIL import Image

        items = []
        for index, (image, prompt) in enumerate(pairs):
            with Image.open(image) as opened:
                width, height = TrainingUtil.resolve_dimensions(
                    width=opened.width, height=opened.height, max_resolution=self.training_config["max_resolution"])
            clean, cond = adapter.encode_data(data_id=index, image_path=image, prompt=prompt, width=width, height=height)
            items.append(HeldoutItem(image.stem, clean, cond, width, height))
        return items

    def score(self, pairs: list[tuple[Path, str]], lora: Path | None) -> float:
        """Mean held-out loss with ``lora`` (None: the base model alone)."""
        return self.score_sets({"pairs": pairs}, lora)["pairs"]

    def score_sets(self, sets: dict[str, list[tuple[Path, str]]], lora: Path | None) -> dict[str, float]:
        """Mean held-out loss of each named set of pairs with ``lora``, from one load of the model.

        A set's pictures are encoded on its first call. Item ``i`` of every set gets the same noise, so
        two sets of the same pictures under other captions differ by the captions alone.
        """
        with silenced():
            adapter, config_of_model = self._adapter(lora)
            for name, pairs in sets.items():
                if name not in self.items:
                    # The LoRA only touches the transformer: latents and prompt embeddings are encoded once.
                    self.items[name] = self._encode(adapter, pairs)
        return {name: self._mean_loss(adapter, config_of_model, self.items[name]) for name in sets}

    def _mean_loss(self, adapter: Any, config_of_model: Any, items: list[HeldoutItem]) -> float:
        import mlx.core as mx
        from mflux.models.common.config.config import Config
        from mflux.models.common.latent_creator.latent_creator import LatentCreator

        losses = []
        for i, item in enumerate(items):
            config = Config(model_config=config_of_model, num_inference_steps=int(self.training_config["steps"]),
                            width=item.width, height=item.height, guidance=float(self.training_config["guidance"]),
                            scheduler="flow_match_euler_discrete")
            sigmas = config.scheduler.sigmas
            for j, t in enumerate(self.timesteps):
                noise = mx.random.normal(shape=item.clean_latents.shape, dtype=config.precision,
                                         key=mx.random.key(self.params.noise_seed + 1000 * i + j))
                latents_t = LatentCreator.add_noise_by_interpolation(clean=item.clean_latents, noise=noise, sigma=sigmas[t])
                predicted = adapter.predict_noise(t=t, latents_t=latents_t, sigmas=sigmas, cond=item.cond, config=config)
                losses.append(float((item.clean_latents + predicted - noise).astype(mx.float32).square().mean()))
        return sum(losses) / len(losses)
