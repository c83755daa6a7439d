"""evaluate's effective sampling settings: ``evaluate`` params, with ``null`` ones from the base model's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlora.models.registry import SampleDefaults, get_base_model
from charlora.params import EvaluateParams, Params


@dataclass(frozen=True)
class Sampling:
    """evaluate's effective sampling values."""

    steps: int
    guidance: float
    resolution: int
    max_prompts: int | None  # None: every prompt
    image_checkpoints: int | None  # None: every checkpoint
    clip_model: str
    prompts_file: str


def resolve_sampling(evaluate: EvaluateParams, defaults: SampleDefaults) -> Sampling:
    """``evaluate`` params with ``null`` ones from the base model's defaults; 0 and 0.0 are values, not null."""

    def pick(value, default):
        return default if value is None else value

    return Sampling(pick(evaluate.steps, defaults.steps), pick(evaluate.guidance, defaults.guidance),
                    pick(evaluate.resolution, defaults.resolution), pick(evaluate.max_prompts, defaults.max_prompts),
                    pick(evaluate.image_checkpoints, defaults.image_checkpoints),
                    pick(evaluate.clip_model, defaults.clip_model), pick(evaluate.prompts_file, defaults.prompts_file))


def prompts_file(params: Params) -> Path:
    """The evaluation prompts file: ``evaluate.prompts_file``, or the base model's (micro: its world's words)."""
    return Path(resolve_sampling(params.evaluate, get_base_model(params.base_model.name).sampling).prompts_file)
