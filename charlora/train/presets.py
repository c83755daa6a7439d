"""Memory presets: per base model, the mflux settings that keep training within a machine's memory.

``train.preset`` names one (``16gb`` ... ``64gb``: the machine's memory, an Apple Silicon Mac's unified
memory or an NVIDIA card's), ``auto`` lets :mod:`charlora.train.preflight` pick the largest that fits
the machine, and ``none`` uses no preset (the params and the model's defaults only). A preset sets:

- ``quantize``: mflux's quantization of the base model (bits; None keeps the weights as stored);
- ``gradient_checkpointing``: recompute each block in the backward pass (about 30 % slower per step,
  activations of about two blocks instead of all);
- ``low_ram``: mflux keeps the encoded images on disk, clears mlx's cache every step and tiles preview decoding;
- ``resolution``: the largest training resolution (None: the model's default);
- ``batch_size``: 1 in every preset (a larger batch is fewer, larger optimizer steps: another run, not
  only another memory footprint; set ``train.batch_size`` yourself);
- ``cache_limit_gb``: a cap on mlx's buffer cache (None: mlx's default).

Savings that leave the result as it is come first (checkpointing, low_ram, the cache cap), then those
that change it a little (8-bit, then 4-bit quantization), then the resolution. Explicit ``train.*``
values override a preset's fields. Models small enough to fit every preset (the tiny and micro
models) get the same settings from each: their own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from charlora.errors import PipelineError
from charlora.params import PRESET_CHOICES

PRESET_NAMES = tuple(name for name in PRESET_CHOICES if name.endswith("gb"))  # smallest first
FALLBACK = "16gb"  # auto's choice when the machine's memory cannot be detected: the most conservative


@dataclass(frozen=True)
class PresetSettings:
    """What a preset sets (each field can be overridden by the train.* param of the same name)."""

    quantize: int | None            # bits; None: weights as stored
    gradient_checkpointing: bool
    low_ram: bool
    resolution: int | None          # None: the base model's default
    batch_size: int = 1
    cache_limit_gb: float | None = None

    def describe(self) -> str:
        """``8-bit, gradient checkpointing, low_ram, 1024 px, batch 1``."""
        parts = [f"{self.quantize}-bit" if self.quantize else "full precision"]
        parts += ["gradient checkpointing"] if self.gradient_checkpointing else []
        parts += ["low_ram"] if self.low_ram else []
        parts += [f"{self.resolution} px" if self.resolution else "the model's resolution", f"batch {self.batch_size}"]
        parts += [f"mlx cache <= {self.cache_limit_gb:g} GB"] if self.cache_limit_gb else []
        return ", ".join(parts)


def nominal_gb(name: str) -> int:
    """The machine size a preset is named after (``24gb`` -> 24)."""
    return int(name.removesuffix("gb"))


_SMALL = PresetSettings(quantize=None, gradient_checkpointing=False, low_ram=False, resolution=None)
_FULL = PresetSettings(quantize=None, gradient_checkpointing=True, low_ram=False, resolution=1024)

# Each preset stays within 85 % of what a machine of its size gives training (charlora.machine: a Mac's
# 75 %), a margin for the estimate's error, taking the savings in the order above. Without gradient
# checkpointing, 1024 px needs about 62 GB (4B) and 112 GB (9B): no preset goes without it.
# Klein Base 4B: transformer 3.9 B + Qwen3-4B text encoder 4.0 B parameters (14.9 GB in bfloat16).
KLEIN_4B = {
    "64gb": _FULL,
    "48gb": _FULL,
    "32gb": PresetSettings(quantize=None, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=4),
    "24gb": PresetSettings(quantize=8, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=2),
    "16gb": PresetSettings(quantize=4, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=1),
}
# Klein Base 9B: transformer 9.1 B + Qwen3-8B text encoder 7.6 B parameters (31.2 GB in bfloat16).
# Its 16gb preset is the lowest it goes (4-bit, 512 px) and is tight: about 96 % of a 16 GB Mac's 12 GB.
KLEIN_9B = {
    "64gb": PresetSettings(quantize=None, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=4),
    "48gb": PresetSettings(quantize=8, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=4),
    "32gb": PresetSettings(quantize=4, gradient_checkpointing=True, low_ram=True, resolution=1024, cache_limit_gb=2),
    "24gb": PresetSettings(quantize=4, gradient_checkpointing=True, low_ram=True, resolution=768, cache_limit_gb=2),
    "16gb": PresetSettings(quantize=4, gradient_checkpointing=True, low_ram=True, resolution=512, cache_limit_gb=1),
}

PRESETS_BY_MODEL: dict[str, dict[str, PresetSettings]] = {
    "flux2-klein-base-4b": KLEIN_4B,
    "flux2-klein-base-9b": KLEIN_9B,
    # Small enough for every preset: each gives the model's own defaults.
    "flux2-klein-tiny": dict.fromkeys(PRESET_NAMES, _SMALL),
    "flux2-klein-micro": dict.fromkeys(PRESET_NAMES, _SMALL),
}


def presets_for(model_name: str) -> dict[str, PresetSettings]:
    """The presets of base model ``model_name``, smallest first."""
    table = PRESETS_BY_MODEL.get(model_name)
    if table is None:
        raise PipelineError(f"there are no memory presets for base model '{model_name}'. Set train.preset: none "
                            "and choose train.quantize, gradient_checkpointing, low_ram and resolution yourself.")
    return {name: table[name] for name in PRESET_NAMES}


def fits_everywhere(model_name: str) -> bool:
    """Whether every preset of the model is the same (a model small enough for any machine)."""
    return len(set(presets_for(model_name).values())) == 1
