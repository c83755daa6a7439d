"""The base model's evaluation pictures, cached by what decides them (``data/cache/base_samples``).

Every evaluation draws the base model's pictures for its prompts and seeds, to measure the LoRA
against. They change only with the base model, the prompt, the seed and the sampling settings, so an
experiment that changes training (``dvc exp run -S train.lora.rank=8``) takes them from here instead
of drawing them again: on the real model that is minutes per experiment. An entry is ``<key>.png``
and ``<key>.npy`` (the sampler's final latents, which ``latent_shift`` compares); the latents are
written last, so an entry with both files is complete.
"""

from __future__ import annotations

import io
from pathlib import Path

from charlora.evaluate.sampling import Sample
from charlora.fileio import sha256_json, write_bytes_atomic


class BaseSampleCache:
    """Pictures of one base model at one sampling setting, by prompt and seed."""

    def __init__(self, folder: Path, model_identity: str, steps: int, guidance: float, resolution: int) -> None:
        self.folder = folder
        self.settings = {"model": model_identity, "steps": steps, "guidance": guidance, "resolution": resolution}

    def _paths(self, prompt: str, seed: int) -> tuple[Path, Path]:
        key = sha256_json({**self.settings, "prompt": prompt, "seed": seed})
        return self.folder / f"{key}.png", self.folder / f"{key}.npy"

    def load(self, prompts: list[tuple[str, str]], seed: int) -> list[Sample] | None:
        """The samples of :func:`~charlora.evaluate.sampling.generate` for ``prompts`` (seed ``seed + index``),
        or None when any of them is missing."""
        import numpy as np
        from PIL import Image

        samples = []
        for index, (prompt_id, prompt) in enumerate(prompts):
            image_path, latents_path = self._paths(prompt, seed + index)
            if not latents_path.is_file():
                return None
            with Image.open(image_path) as image:
                samples.append(Sample(prompt_id, prompt, image.convert("RGB"), np.load(latents_path)))
        return samples

    def save(self, samples: list[Sample], seed: int) -> None:
        """Keep what :func:`~charlora.evaluate.sampling.generate` drew for seed ``seed``."""
        import numpy as np

        for index, sample in enumerate(samples):
            image_path, latents_path = self._paths(sample.prompt, seed + index)
            png, latents = io.BytesIO(), io.BytesIO()
            sample.image.save(png, format="PNG")
            np.save(latents, sample.latents)
            write_bytes_atomic(image_path, png.getvalue())
            write_bytes_atomic(latents_path, latents.getvalue())
