"""A rough expected training time, before anything is measured: work (FLOPs) over an assumed speed.

The train stage's start line needs a time before the first step; once steps are measured the
progress display's ETA (from measured steps only) replaces it. The work is counted from the model's
sizes: per step ``(3, or 4 with gradient checkpointing) x batch x (2 x transformer parameters x S +
4 x S^2 x d x blocks)`` for forward and backward over ``S`` tokens; per image, the VAE encoder's
convolutions and the text encoder's forward pass over 512 tokens. The speeds are assumptions, stated
on the line: the CPU figures were measured on this project's 2-core machine (float32 with the
OpenBLAS that :mod:`charlora.mlx_runtime` loads, otherwise mlx's reference BLAS); the Metal and CUDA
figures are not measured here (no Mac or GPU was available): typical sustained rates of an
M-series Pro/Max GPU and of a data-centre GPU in bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass

from charlora.models.geometry import ModelSizes
from charlora.train.memory import Backend, Workload
from charlora.train.settings import TrainSettings

# Sustained FLOP/s (training steps, encoding); see the docstring. On this CPU, float32 with OpenBLAS: steps
# 80 GFLOP/s, the VAE's convolutions 32 (they unfold their input first); bfloat16 or mlx's reference BLAS: 1.5-3.
FLOPS = {"cpu-blas": (80e9, 32e9), "cpu": (3e9, 3e9), "metal": (10e12, 5e12), "cuda": (100e12, 50e12)}
STEP_OVERHEAD_S = {"cpu": 0.15, "metal": 0.05, "cuda": 0.05}  # per step beyond the arithmetic (measured on the CPU)


@dataclass(frozen=True)
class TimeEstimate:
    """Expected seconds of the warm-up (encoding) and of the steps, and the speed assumed."""

    encode_seconds: float
    step_seconds: float
    speed: str

    def total_seconds(self, steps: int) -> float:
        """Warm-up (encoding) plus ``steps`` steps."""
        return self.encode_seconds + self.step_seconds * steps


def step_flops(sizes: ModelSizes, settings: TrainSettings, work: Workload) -> float:
    """Floating-point operations of one training step."""
    tokens = work.image_tokens + sizes.prompt_tokens
    forward = 2 * sizes.transformer.total * tokens + 4 * tokens * tokens * sizes.hidden * sizes.blocks
    passes = 4 if settings.gradient_checkpointing else 3  # forward + backward (2x), + a recomputed forward
    return settings.batch_size * passes * forward


def encode_flops(sizes: ModelSizes, work: Workload) -> float:
    """Floating-point operations of encoding one image (VAE encoder convolutions and attention, text encoder)."""
    channels = sizes.vae_channels
    per_pixel = 2 * 27 * channels[0]
    for level, width in enumerate(channels):
        per_pixel += 2 * 2 * 2 * 9 * width * width / 4 ** level  # two resnet blocks of two 3x3 convolutions
    per_pixel += 2 * 2 * 2 * 9 * channels[-1] ** 2 / 4 ** (len(channels) - 1)  # the mid block's two resnets
    attention = 4 * (work.pixels / 4 ** (len(channels) - 1)) ** 2 * channels[-1]
    text = 2 * sizes.text_encoder.total * sizes.prompt_tokens
    return per_pixel * work.pixels + attention + text


def speed_of(backend: Backend, optimized_blas: bool) -> tuple[tuple[float, float], str]:
    """((steps, encoding) FLOP/s, how they were chosen) for ``backend``."""
    if backend.device == "cpu":
        key = "cpu-blas" if optimized_blas and backend.compute_bytes == 4 else "cpu"
        how = "measured on this project's 2-core CPU" + (" with OpenBLAS" if key == "cpu-blas" else "")
    else:
        key, how = backend.device, "assumed, not measured"
    return FLOPS[key], f"{FLOPS[key][0] / 1e9:g} GFLOP/s on {backend.device}, {how}"


def estimate_time(sizes: ModelSizes, settings: TrainSettings, work: Workload, backend: Backend,
                  optimized_blas: bool = False) -> TimeEstimate:
    """The expected seconds per step and of encoding ``work.images`` images."""
    (steps_speed, encode_speed), how = speed_of(backend, optimized_blas)
    per_step = step_flops(sizes, settings, work) / steps_speed + STEP_OVERHEAD_S[backend.device]
    return TimeEstimate(work.images * encode_flops(sizes, work) / encode_speed, per_step, how)
