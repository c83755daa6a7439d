"""The pre-flight estimate of a training run's peak memory, made before anything loads.

mflux trains in two phases, and the peak is the larger of the two plus what the process itself holds:

- **warm-up**: the text encoder and the VAE encoder are loaded and every training image is encoded
  (VAE latents at the image's size, the prompt padded to 512 tokens); the transformer is not touched yet.
- **steps**: every weight is resident (mflux evaluates the whole model after each optimizer update),
  plus the LoRA factors with their gradients and AdamW's two moments (float32), the encoded data
  (all of it in memory, or one batch with ``low_ram``), and the activations the backward pass keeps.

Weights are counted from the model's own sizes (:mod:`charlora.models.geometry`): at the dtype the
files store them in, or packed to ``quantize`` bits with a scale and a bias per group of 64 (what
``mlx.nn.quantize`` keeps) for the Linear and Embedding weights mflux quantizes. Activations follow
the transformer's work per sample: ``S = image tokens + 512 prompt tokens`` (an image of
``w x h`` pixels is ``w*h/256`` tokens), hidden size ``d``, ``H`` heads; per block, what the backward
pass keeps:

- ``a x S x d`` values (projections, MLP, norms, RoPE): ``a`` = 76 in a double-stream block (two
  streams, each with its own modulation, MLP and LoRA layers), 9.3 in a single-stream block;
- ``b x H x S^2`` values: mlx computes gradients through attention unfused on Metal and the CPU and
  keeps each block's attention probabilities (mlx PR #2054; ``b`` = 1.03 double, 1.23 single); on
  CUDA, cuDNN's fused attention backward keeps none (mlx PR #2762), so the term is left out there;
- with gradient checkpointing, instead: ``CHECKPOINT_INPUTS x S x d`` per block (the saved block
  inputs) plus ``CHECKPOINT_BLOCKS`` times the largest block's (mflux recomputes one block at a
  time, last first);
- all of it times the batch size (mflux keeps every sample's graph until the step's gradients are evaluated).

Not counted: preview images during training (``train.preview_every``; mflux moves the optimizer state
to disk while it generates them) and mlx's buffer cache above the peak of live arrays (the presets cap
it with ``cache_limit_gb``). On a CPU, bfloat16 matrices are multiplied in float32, so activations
count 4 bytes there.

The constants were fitted to runs measured on this project's CPU machine (``make bench`` reports the
estimate/measured ratios; the README's "Memory" section has the figures and what was not measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlora.machine import GB
from charlora.models.geometry import QUANTIZE_GROUP, ComponentSize, ModelSizes, layer_shape
from charlora.train.settings import TrainSettings

# Fitted on the CPU (mlx 0.32, float32 activations, d = 512, H = 8, 2+4 and 5+20 blocks, S = 528-1536):
# (a, b) per block type, see the module docstring.
DOUBLE_BLOCK = (76.0, 1.03)
SINGLE_BLOCK = (9.3, 1.23)
CHECKPOINT_INPUTS = 1.0        # hidden-size values per token per block kept with gradient checkpointing
CHECKPOINT_BLOCKS = 1.1        # the largest block's activations, recomputed one block at a time
LORA_COPIES = 4                # float32 copies per LoRA parameter: the factor, its gradient, AdamW's two moments
# Encoding a picture: bytes per pixel per channel of the VAE's first level (128 for FLUX.2's VAE). The CPU
# convolution unfolds its input (im2col): measured 14-16 KB per pixel with 128 channels. Metal and CUDA
# convolve without that buffer: assumed four float32 maps of the first level (not measured here).
ENCODE_BYTES_CPU = 15 * 1024 / 128
ENCODE_BYTES_GPU = 4 * 4
RUNTIME_BYTES = int(0.17 * GB)  # Python, mlx, mflux, tokenizers: resident beyond mlx's arrays (measured 0.13-0.18 GB)
LATENT_CHANNELS = 128          # FLUX.2 latents after 2x2 patchify: the transformer's input channels per token


@dataclass(frozen=True)
class Backend:
    """How mlx computes here, as far as memory goes."""

    device: str                 # "cpu", "metal" or "cuda"
    compute_bytes: int          # mflux's compute precision: 2 (bfloat16) or 4 (float32, a CPU run)

    @property
    def fused_attention_grad(self) -> bool:
        """Whether attention gradients are computed without keeping the S x S matrices (CUDA's cuDNN)."""
        return self.device == "cuda"


def backend_for(machine_kind: str, compute_bytes: int) -> Backend:
    """The backend of a machine kind (:class:`charlora.machine.MachineMemory.kind`)."""
    device = {"apple": "metal", "nvidia": "cuda"}.get(machine_kind, "cpu")
    return Backend(device, compute_bytes)


@dataclass(frozen=True)
class Workload:
    """What the run processes: how many images, and the largest one's pixels after mflux's resize."""

    images: int
    pixels: int

    @property
    def image_tokens(self) -> int:
        """Transformer tokens of the largest image (VAE: 8x down, then 2x2 patches)."""
        return self.pixels // 256


def training_pixels(width: int, height: int, resolution: int) -> int:
    """Pixels mflux trains an image at: scaled to at most ``resolution`` squared in area, sides cut to multiples of 16."""
    if width * height > resolution * resolution:
        scale = (resolution * resolution / (width * height)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    return (width // 16 * 16) * (height // 16 * 16)


def workload(images: list[Path], resolution: int) -> Workload:
    """The workload of training ``images`` at ``resolution`` (reads their sizes only)."""
    from PIL import Image

    largest = 0
    for path in images:
        with Image.open(path) as image:
            largest = max(largest, training_pixels(*image.size, resolution))
    return Workload(len(images), largest)


def square_workload(images: int, resolution: int) -> Workload:
    """A workload of ``images`` square pictures at ``resolution`` (the README's tables, the presets' estimates)."""
    return Workload(images, resolution * resolution)


def weight_bytes(size: ComponentSize, stored: int, bits: int | None) -> int:
    """Bytes of a component's weights: as stored, or with its Linear/Embedding weights packed to ``bits``."""
    if bits is None:
        return size.total * stored
    groups = size.quantizable // QUANTIZE_GROUP
    return size.quantizable * bits // 8 + groups * 2 * stored + size.other * stored


def lora_parameters(sizes: ModelSizes, settings: TrainSettings) -> int:
    """Parameters of the LoRA factors (rank x (in + out) per targeted layer and block)."""
    total = 0
    for prefix, targets, (start, end) in (("transformer_blocks", settings.double_targets, settings.double_blocks),
                                          ("single_transformer_blocks", settings.single_targets, settings.single_blocks)):
        for target in targets:
            out_features, in_features = layer_shape(f"{prefix}.0.{target}", sizes.geometry)
            total += (end - start) * settings.rank * (in_features + out_features)
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak memory (bytes), by part and phase."""

    parts: dict[str, int]        # weights_transformer, weights_text_encoder, weights_vae, lora_and_optimizer, data,
                                 # activations (steps), vae_encoder_weights, encoding (warm-up), runtime
    warmup_bytes: int
    steps_bytes: int
    runtime_bytes: int
    backend: Backend

    @property
    def mlx_bytes(self) -> int:
        """The peak of mlx's own arrays (what ``mx.get_peak_memory()`` measures)."""
        return max(self.warmup_bytes, self.steps_bytes)

    @property
    def total_bytes(self) -> int:
        """The process's peak: mlx's arrays plus the runtime."""
        return self.mlx_bytes + self.runtime_bytes

    @property
    def phase(self) -> str:
        """Which phase peaks: "steps" or "warm-up"."""
        return "steps" if self.steps_bytes >= self.warmup_bytes else "warm-up"

    def summary(self) -> str:
        """``19.8 GB (steps: weights 16.0, LoRA + AdamW 0.3, data 0.1, activations 3.2; runtime 0.2)``."""
        p = {key: value / GB for key, value in self.parts.items()}
        weights = p["weights_transformer"] + p["weights_text_encoder"] + p["weights_vae"]
        if self.phase == "steps":
            detail = (f"steps: weights {weights:.1f}, LoRA + AdamW {p['lora_and_optimizer']:.1f}, "
                      f"data {p['data']:.1f}, activations {p['activations']:.1f}")
        else:
            detail = (f"warm-up: text encoder + VAE encoder {p['weights_text_encoder'] + p['vae_encoder_weights']:.1f}, "
                      f"encoding the largest image {p['encoding']:.1f}, data {p['data']:.1f}")
        return f"{self.total_bytes / GB:.1f} GB ({detail}; runtime {p['runtime']:.1f})"

    def as_record(self) -> dict:
        """GB figures for metrics/train.json."""
        return {"total_gb": round(self.total_bytes / GB, 3), "mlx_gb": round(self.mlx_bytes / GB, 3),
                "peak_phase": self.phase, "warmup_gb": round(self.warmup_bytes / GB, 3),
                "steps_gb": round(self.steps_bytes / GB, 3), "device": self.backend.device,
                "parts_gb": {key: round(value / GB, 3) for key, value in self.parts.items()}}


def activation_bytes(sizes: ModelSizes, settings: TrainSettings, work: Workload, backend: Backend, act: int) -> int:
    """What the backward pass keeps for one step (all samples of the batch)."""
    tokens = work.image_tokens + sizes.prompt_tokens
    hidden, heads = sizes.hidden, sizes.geometry["num_attention_heads"]

    def block(linear: float, attention: float) -> float:
        kept = linear * tokens * hidden
        if not backend.fused_attention_grad:
            kept += attention * heads * tokens * tokens
        return kept * act

    double, single = block(*DOUBLE_BLOCK), block(*SINGLE_BLOCK)
    counts = sizes.geometry["num_layers"], sizes.geometry["num_single_layers"]
    if settings.gradient_checkpointing:
        largest = max(double if counts[0] else 0, single if counts[1] else 0)
        per_sample = CHECKPOINT_INPUTS * tokens * hidden * act * sizes.blocks + CHECKPOINT_BLOCKS * largest
    else:
        per_sample = counts[0] * double + counts[1] * single
    return int(settings.batch_size * per_sample)


def estimate_memory(sizes: ModelSizes, settings: TrainSettings, work: Workload, backend: Backend) -> MemoryEstimate:
    """The estimated peak of training ``sizes``' model with ``settings`` on ``work``, on ``backend``."""
    bits, stored = settings.quantize, sizes.stored_bytes
    # Activations take the wider of the weights' dtype and the compute precision (mlx promotes float32); the
    # CPU multiplies bfloat16 matrices in float32 (measured: a bfloat16 run kept as much as a float32 one).
    act = 4 if backend.device == "cpu" else max(backend.compute_bytes, stored["transformer"])
    weights = {"weights_transformer": weight_bytes(sizes.transformer, stored["transformer"], bits),
               "weights_text_encoder": weight_bytes(sizes.text_encoder, stored["text_encoder"], bits),
               "weights_vae": weight_bytes(sizes.vae, stored["vae"], bits)}
    encoder_weights = weight_bytes(sizes.vae_encoder, stored["vae"], bits)
    per_image = ((work.image_tokens * LATENT_CHANNELS + sizes.prompt_tokens * sizes.geometry["joint_attention_dim"]) * act
                 + (work.image_tokens + sizes.prompt_tokens) * 4 * 4)  # latents, prompt embeddings, position ids
    data = per_image * (settings.batch_size if settings.low_ram else work.images)
    lora = lora_parameters(sizes, settings) * 4 * LORA_COPIES
    activations = activation_bytes(sizes, settings, work, backend, act)
    per_pixel = ENCODE_BYTES_CPU if backend.device == "cpu" else ENCODE_BYTES_GPU
    attention_tokens = work.pixels // 64  # the VAE's mid-block attends over the 8x smaller map, unfused
    encoding = int(per_pixel * sizes.vae_channels[0] * work.pixels + 2 * attention_tokens ** 2 * 4)
    warmup = weights["weights_text_encoder"] + encoder_weights + encoding + data
    steps = sum(weights.values()) + lora + data + activations
    parts = {**weights, "lora_and_optimizer": lora, "data": data, "activations": activations,
             "vae_encoder_weights": encoder_weights, "encoding": encoding, "runtime": RUNTIME_BYTES}
    return MemoryEstimate(parts, warmup, steps, RUNTIME_BYTES, backend)
