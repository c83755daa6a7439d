"""From a story to render jobs for one target (this machine's base model, or Runware): sizes, seeds, cache keys.

**Sizes.** A story's sizes are written for the real FLUX.2 Klein models (768x1344: 9:16 vertical).
A base model renders them times its ``shot_scale`` (registry: its ``shot_size`` against 768x1344;
tiny 32x64, so 64/1344), each side rounded to a multiple of 16 (at least 16), the longer side at
most its ``max_side``: 768x1344 becomes 32x64 on the tiny model and stays 768x1344 on the real
ones and on Runware. Reference images are prepared at up to 1024x1024 pixels of area (mflux's and
diffusers' limit for Klein references) times the same factor squared.

**Seeds.** A shot renders with ``seed`` (the story's seed base) plus a number derived from its id
(``crc32(id) mod 100000``), or with its own ``seed``: inserting, removing or reordering shots changes
no other shot's image, and editing a shot's prompt keeps its noise (the change shows the prompt's effect).

**Cache key.** The sha256 of everything that decides the pixels: the prompt as rendered (trigger
word in), size, seed, steps, guidance, LoRA scale, each reference's sha256 and prepared size, the
adapter's weights (the sha256 of its tensors, so a retrain to the same weights, whose file differs
only in its creation time, renders nothing; on Runware its AIR and file sha256), the base model and
the renderer (mflux version and compute precision, or Runware). Not the shot's position, nor its id beyond the seed it gives: moving a
shot renders nothing, nor does renaming one that sets its own seed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

from charlora.fileio import sha256_json
from charlora.models.registry import SampleDefaults
from charlora.shots.story import Reference, Shot, Story

SEED_SPREAD = 100_000
MAX_REFERENCE_AREA = 1024 * 1024  # mflux (and diffusers) condition Klein on references of at most 1 MP
CACHE_FORMAT = 1  # bump when the meaning of a cached image changes


@dataclass(frozen=True)
class Target:
    """Where shots render: ``where`` is "local" or "runware"; ``base_model`` a registry name or a Runware AIR."""

    where: str
    base_model: str
    sampling: SampleDefaults
    adapter: dict[str, str]  # what the manifest says of the LoRA: file, sha256 (+ tensors_sha256, or air on Runware)
    lora: str  # the LoRA's identity in the cache key: its weights' sha256 here, its AIR and file sha256 on Runware
    renderer: str  # e.g. "mflux 0.24.0, float32" or "runware"

    def describe(self) -> str:
        """Where a shot was rendered, for the manifest."""
        if self.where == "runware":
            return f"runware: {self.base_model} with {self.adapter['air']}"
        return f"this machine: {self.renderer}, {self.base_model}"


@dataclass
class Rendered:
    """A rendered shot: the PIL image, and the sampler's final latents where the renderer has them (mflux)."""

    image: Any
    latents: Any = None


@dataclass(frozen=True)
class Job:
    """One shot, resolved for a target: what is rendered, with which settings, under which cache key."""

    shot: Shot
    prompt: str
    width: int
    height: int
    seed: int
    steps: int
    guidance: float
    lora_scale: float
    references: tuple[Reference, ...]
    reference_sizes: tuple[tuple[int, int], ...]
    key: str

    @property
    def variant(self) -> str:
        """mflux's FLUX.2 Klein variant: ``edit`` (reference images) or ``txt2img``."""
        return "edit" if self.references else "txt2img"


def _multiple_of_16(pixels: float) -> int:
    return max(16, 16 * round(pixels / 16))


def scaled_size(size: tuple[int, int], sampling: SampleDefaults) -> tuple[int, int]:
    """A story size in the model's pixels: times ``shot_scale``, longer side within ``max_side``, multiples of 16."""
    width, height = (side * sampling.shot_scale for side in size)
    longest = max(width, height)
    if longest > sampling.max_side:
        width, height = width * sampling.max_side / longest, height * sampling.max_side / longest
    return _multiple_of_16(width), _multiple_of_16(height)


def reference_size(size: tuple[int, int], sampling: SampleDefaults) -> tuple[int, int]:
    """The size a reference is conditioned at: area within the model's limit, aspect kept, sides multiples of 16.

    Downscaled (never up, unless a side would fall under 16 px) to at most ``MAX_REFERENCE_AREA``
    times ``shot_scale`` squared, then cropped to multiples of 16, as mflux does.
    """
    width, height = size
    limit = MAX_REFERENCE_AREA * sampling.shot_scale ** 2
    scale = min(1.0, math.sqrt(limit / (width * height)))
    scale = max(scale, 16 / min(width, height))
    return (max(16, int(width * scale) // 16 * 16), max(16, int(height * scale) // 16 * 16))


def shot_seed(story: Story, shot: Shot) -> int:
    """The shot's own seed, or the story's seed base plus ``crc32(id) mod 100000``."""
    return shot.seed if shot.seed is not None else story.seed + zlib.crc32(shot.id.encode("utf-8")) % SEED_SPREAD


def plan_jobs(story: Story, target: Target) -> list[Job]:
    """A job per shot, in story order; ``steps`` and ``guidance`` left null take the target model's defaults."""
    steps = story.steps if story.steps is not None else target.sampling.steps
    guidance = story.guidance if story.guidance is not None else target.sampling.guidance
    jobs = []
    for shot in story.shots:
        width, height = scaled_size(shot.size or story.size, target.sampling)
        sizes = tuple(reference_size(ref.size, target.sampling) for ref in shot.references)
        seed = shot_seed(story, shot)
        key = sha256_json({
            "format": CACHE_FORMAT, "where": target.where, "base_model": target.base_model, "renderer": target.renderer,
            "lora": target.lora, "prompt": shot.prompt,
            "width": width, "height": height, "seed": seed, "steps": steps, "guidance": guidance,
            "lora_scale": story.lora_scale,
            "references": [{"sha256": ref.sha256, "size": list(size)} for ref, size in zip(shot.references, sizes)]})
        jobs.append(Job(shot, shot.prompt, width, height, seed, steps, guidance, story.lora_scale, shot.references,
                        sizes, key))
    return jobs
