"""Rendering shots on this machine through mflux, with the best LoRA.

A shot without references goes through FLUX.2 Klein text to image (``Flux2Klein``); a shot with
references through the edit variant (``Flux2KleinEdit``), which encodes each prepared reference
with the VAE and puts its tokens beside the image tokens. Each variant is loaded once, with the
LoRA, only if a shot needs it, and only one is in memory at a time (the runner renders the text to
image shots first). Loading is timed apart from the per-shot rate; mflux's own bars are silenced.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from charlora.evaluate.sampling import LatentRecorder
from charlora.models.loading import load_flux2
from charlora.params import TinyModelParams
from charlora.progress import Progress, silenced
from charlora.shots.plan import Job, Rendered

VARIANT_CLASSES = {"txt2img": "Flux2Klein", "edit": "Flux2KleinEdit"}


class LocalRenderer:
    """Renders jobs (:class:`~charlora.shots.plan.Job`) with mflux.

    The training run's base model, with the best LoRA at the story's scale.
    """

    def __init__(self, model_name: str, model_path: str | None, tiny: TinyModelParams, adapter: Path,
                 lora_scale: float, progress: Progress) -> None:
        self.model_name, self.model_path, self.tiny = model_name, model_path, tiny
        self.adapter, self.lora_scale, self.progress = adapter, lora_scale, progress
        self.model: Any = None
        self.variant: str | None = None
        self.recorder = LatentRecorder()

    def _load(self, variant: str) -> Any:
        if self.variant == variant:
            return self.model
        self.model = self.variant = None
        gc.collect()  # the other variant's weights go before these load
        what = "the edit variant, for shots with references" if variant == "edit" else "text to image"
        with self.progress.warmup(f"loading {self.model_name} with the LoRA ({what})"):
            self.model = load_flux2(self.model_name, self.model_path, self.tiny, lora_paths=[self.adapter],
                                    lora_scales=[self.lora_scale], edit=variant == "edit")
        self.model.callbacks.register(self.recorder)
        self.variant = variant
        return self.model

    def render(self, job: Job, references: list[Path]) -> Rendered:
        """Render ``job``; ``references`` are its prepared reference files, in order."""
        model = self._load(job.variant)
        extra = {"image_paths": [str(path) for path in references]} if references else {}
        with silenced():
            result = model.generate_image(seed=job.seed, prompt=job.prompt, num_inference_steps=job.steps,
                                          width=job.width, height=job.height, guidance=job.guidance, **extra)
        return Rendered(result.image, self.recorder.latents)

    def describe(self, job: Job) -> str:
        """The mflux class a job renders with."""
        return VARIANT_CLASSES[job.variant]
