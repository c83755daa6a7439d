"""Sample images through mflux's FLUX.2 Klein generation, with the sampler's final latents kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charlora.progress import silenced


class LatentRecorder:
    """mflux after-loop callback: keeps the final latents of the last generation (float32)."""

    def __init__(self) -> None:
        self.latents = None

    def call_after_loop(self, seed, prompt, latents, config) -> None:  # noqa: ARG002 (mflux's callback signature)
        import mlx.core as mx
        import numpy as np

        self.latents = np.array(latents.astype(mx.float32))


@dataclass
class Sample:
    """One generated image, its prompt and the sampler's final latents."""

    prompt_id: str
    prompt: str
    image: Any  # PIL image
    latents: Any  # numpy float32 final latents


def generate(model: Any, prompts: list[tuple[str, str]], seed: int, steps: int, guidance: float, resolution: int,
             progress: Callable[[str], None] | None = None) -> list[Sample]:
    """One image per (id, prompt), seed ``seed + index``: the same noise for the same prompt index in every run.

    mflux's own progress bar is silenced; ``progress(prompt_id)`` is called after each image.
    """
    recorder = LatentRecorder()
    model.callbacks.register(recorder)
    samples = []
    for index, (prompt_id, prompt) in enumerate(prompts):
        with silenced():
            image = model.generate_image(seed=seed + index, prompt=prompt, num_inference_steps=steps, width=resolution,
                                         height=resolution, guidance=guidance)
        samples.append(Sample(prompt_id, prompt, image.image, recorder.latents))
        if progress:
            progress(prompt_id)
    return samples
