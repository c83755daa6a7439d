"""Checks that an exported LoRA file is the same LoRA as the mflux original.

Two independent checks per file:

- :func:`check_deltas` reads the file's tensors in that format's own terms (a fused ``qkv`` is one
  layer, kohya's ``alpha`` scales it) and compares every layer's ``scale * B @ A`` with the
  original's deltas arranged the same way. It does not use the converter's splitting code.
- :func:`check_with_diffusers` loads the file the way ``Flux2KleinPipeline.load_lora_weights``
  does (``Flux2LoraLoaderMixin.lora_state_dict`` then ``load_lora_into_transformer``) into a
  diffusers ``Flux2Transformer2DModel`` of the base model's geometry, reads back the delta PEFT
  built for every layer, and (for small models) runs the transformer with and without the LoRA
  and with the original deltas merged into the weights.
"""

from __future__ import annotations

import copy
import inspect
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from charlora.errors import PipelineError
from charlora.lora.formats import Lora, LoraLayer
from charlora.lora.keys import group_native, native_layer, normalise_format

ADAPTER_NAME = "export_check"
# Geometries with more parameters than this are checked without base weights (no forward pass).
FORWARD_MAX_PARAMETERS = 50_000_000
OUTPUT_RTOL = 1e-2


def tolerance(dtype: torch.dtype) -> float:
    """Allowed max |delta error| relative to max |delta|: rounding of a folded scale in the file's dtype."""
    return 1e-6 if dtype in (torch.float32, torch.float64) else 1e-2


@dataclass
class DeltaCheck:
    """The delta comparison of one file with the original."""

    keys: int
    layers: int
    max_abs_error: float
    max_abs_delta: float
    ok: bool


@dataclass
class DiffusersCheck:
    """What diffusers' own loader made of one file."""

    loaded: bool
    lora_layers: int = 0
    max_abs_error: float | None = None
    output_change: float | None = None  # max |transformer output with LoRA - without|
    output_error: float | None = None  # max |output with LoRA - output with the original deltas merged|
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    note: str = ""
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Deltas are compared a block of rows at a time: a real model's full deltas would need tens of GB. Blocks
# of about 2 MB stay in the CPU's cache and out of the allocator's mmap path (blocks of 4096 rows, ~100 MB
# each, made the real 4B check 4-7x slower, mostly in page faults).
CHUNK_BYTES = 2 << 20


@dataclass
class Comparison:
    """Running max |found - expected| and max |expected| over layers."""

    max_abs_error: float = 0.0
    max_abs_delta: float = 0.0

    def add(self, found: LoraLayer, expected: dict[int, LoraLayer]) -> None:
        """Compare ``found``'s delta with ``expected`` stacked by rows ({row offset: layer}; gaps are zero)."""
        rows = found.up.shape[0]
        chunk = max(1, CHUNK_BYTES // (8 * found.down.shape[1]))
        found_up, found_down = found.scale * found.up.double(), found.down.double()
        parts = [(offset, layer.scale * layer.up.double(), layer.down.double()) for offset, layer in expected.items()]
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            got = found_up[start:stop] @ found_down
            want = torch.zeros_like(got)
            for offset, up, down in parts:
                lo, hi = max(start, offset), min(stop, offset + up.shape[0])
                if lo < hi:
                    want[lo - start:hi - start] = up[lo - offset:hi - offset] @ down
            self.max_abs_error = max(self.max_abs_error, float((got - want).abs().max()))
            self.max_abs_delta = max(self.max_abs_delta, float(want.abs().max()))

    def ok(self, dtype: torch.dtype) -> bool:
        return self.max_abs_error <= tolerance(dtype) * self.max_abs_delta


def _native_parts(original: Lora, fmt: str) -> dict[str, dict[int | None, str]]:
    """Native layer name -> {slot: canonical path} for the original's layers in ``fmt``."""
    parts: dict[str, dict[int | None, str]] = {}
    for path in original.layers:
        name, slot = native_layer(fmt, path)
        parts.setdefault(name, {})[slot] = path
    return parts


def check_deltas(original: Lora, tensors: dict[str, torch.Tensor], fmt: str, source: str) -> DeltaCheck:
    """Every layer's delta in ``tensors`` (format ``fmt``) against the original; missing or extra layers fail.

    A fused layer is compared with the original's q, k and v deltas stacked by rows, so this does
    not rely on how the converter splits fused layers.
    """
    fmt = normalise_format(fmt)
    expected = _native_parts(original, fmt)
    found = {layer.name: roles for layer, roles in group_native(tensors, fmt, source).items()}
    if set(found) != set(expected):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise PipelineError(f"{source}: layers differ from the original (missing: {missing or 'none'}; "
                            f"extra: {extra or 'none'}). The export is wrong; report this as a bug.")
    comparison = Comparison()
    for name, roles in found.items():
        scale = float(roles["alpha"].double().item()) / roles["down"].shape[0] if "alpha" in roles else 1.0
        parts = expected[name]
        rows = original.layers[next(iter(parts.values()))].up.shape[0]
        stacked = {(slot or 0) * rows: original.layers[path] for slot, path in parts.items()}
        comparison.add(LoraLayer(roles["down"], roles["up"], scale), stacked)
    return DeltaCheck(keys=len(tensors), layers=len(found), max_abs_error=comparison.max_abs_error,
                      max_abs_delta=comparison.max_abs_delta, ok=comparison.ok(original.dtype))


def parameter_count(geometry: dict[str, Any]) -> int:
    """Parameters of a diffusers transformer of ``geometry`` (built on the meta device)."""
    from diffusers import Flux2Transformer2DModel

    with torch.device("meta"):
        model = Flux2Transformer2DModel(**_diffusers_kwargs(geometry))
    return sum(p.numel() for p in model.parameters())


def _diffusers_kwargs(geometry: dict[str, Any]) -> dict[str, Any]:
    from diffusers import Flux2Transformer2DModel

    accepted = inspect.signature(Flux2Transformer2DModel.__init__).parameters
    unknown = sorted(set(geometry) - set(accepted))
    if unknown:
        raise PipelineError(f"diffusers' Flux2Transformer2DModel has no argument(s) {unknown} that mflux's model uses; "
                            "the pinned diffusers and mflux versions disagree. Reinstall with `make setup`.")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in geometry.items()}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip())


def _forward(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def _inputs(geometry: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image_tokens, text_tokens = 4, 8
    ids = torch.zeros(1, image_tokens, 4)
    ids[0, :, 1], ids[0, :, 2] = torch.tensor([0, 0, 1, 1.0]), torch.tensor([0, 1, 0, 1.0])  # a 2x2 latent grid
    return {"hidden_states": torch.randn(1, image_tokens, geometry["in_channels"], generator=generator),
            "encoder_hidden_states": torch.randn(1, text_tokens, geometry["joint_attention_dim"], generator=generator),
            "timestep": torch.tensor([0.5]), "img_ids": ids, "txt_ids": torch.zeros(1, text_tokens, 4)}


def _peft_layer(module) -> LoraLayer:
    """The LoRA PEFT holds for this layer (its delta is scaling * B @ A), read from the loaded modules."""
    down = module.lora_A[ADAPTER_NAME].weight.detach()
    up = module.lora_B[ADAPTER_NAME].weight.detach()
    if down.is_meta or up.is_meta:
        raise PipelineError("diffusers left the LoRA weights unloaded (meta tensors); the check cannot read them.")
    return LoraLayer(down, up, float(module.scaling[ADAPTER_NAME]))


def check_with_diffusers(path: Path, original: Lora, geometry: dict[str, Any], forward: bool | None = None,
                         seed: int = 0) -> DiffusersCheck:
    """Load ``path`` with diffusers' FLUX.2 LoRA loader and compare what it applies with ``original``.

    ``forward=None`` runs the transformer when the geometry is small enough to hold in memory
    (the tiny model); a real 4B/9B geometry is built on the meta device and only the per-layer
    deltas are compared.
    """
    from diffusers import Flux2Transformer2DModel
    from diffusers.loaders.lora_pipeline import Flux2LoraLoaderMixin
    from peft.tuners.lora import LoraLayer

    if forward is None:
        forward = parameter_count(geometry) <= FORWARD_MAX_PARAMETERS
    expected = {native_layer("diffusers", p)[0].removeprefix("transformer."): p for p in original.layers}
    collect = _Collect()
    diffusers_logger = logging.getLogger("diffusers")
    diffusers_logger.addHandler(collect)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(seed)
            if forward:
                model = Flux2Transformer2DModel(**_diffusers_kwargs(geometry)).eval()
                merged = copy.deepcopy(model)
            else:
                # Uninitialised storage: the operating system commits no memory for pages nothing writes, and
                # only the LoRA layers are written, so a 4B geometry costs little more than the LoRA itself.
                with torch.device("meta"):
                    model = Flux2Transformer2DModel(**_diffusers_kwargs(geometry)).eval()
                model.to_empty(device="cpu")
            try:
                state_dict = Flux2LoraLoaderMixin.lora_state_dict(str(path))
                Flux2LoraLoaderMixin.load_lora_into_transformer(state_dict, transformer=model, adapter_name=ADAPTER_NAME)
            except Exception as error:  # diffusers and peft raise ValueError, KeyError, RuntimeError, ...
                return DiffusersCheck(loaded=False, error=f"{type(error).__name__}: {str(error).strip()[:500]}",
                                      warnings=collect.messages)
        messages = collect.messages + [str(w.message) for w in caught if "lora" in str(w.message).lower()]
    finally:
        diffusers_logger.removeHandler(collect)

    applied = {name: _peft_layer(module) for name, module in model.named_modules()
               if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A}
    # A fused q/k/v LoRA without one of the three projections gives that projection an all-zero LoRA: harmless.
    unexpected = sorted(name for name, layer in applied.items() if name not in expected and bool(layer.up.abs().max() > 0))
    missing = sorted(set(expected) - set(applied))
    comparison = Comparison()
    for name in set(expected) & set(applied):
        comparison.add(applied[name], {0: original.layers[expected[name]]})
    error = comparison.max_abs_error if set(expected) & set(applied) else None
    check = DiffusersCheck(loaded=True, lora_layers=len(applied), max_abs_error=error, missing=missing,
                           unexpected=unexpected, warnings=messages)
    check.ok = not missing and not unexpected and not messages and error is not None and comparison.ok(original.dtype)
    if not forward:
        check.note = "geometry too large to run here: per-layer deltas compared on a model without base weights, no forward pass"
        return check
    for name, path in expected.items():  # the reference: the original deltas merged into plain weights
        merged.get_submodule(name).weight.data += original.layers[path].delta().to(torch.float32)
    inputs = _inputs(geometry, seed)
    with_lora = _forward(model, inputs)
    model.disable_adapters()
    without = _forward(model, inputs)
    model.enable_adapters()
    check.output_change = float((with_lora - without).abs().max())
    check.output_error = float((with_lora - _forward(merged, inputs)).abs().max())
    # The LoRA path and merged weights round differently in float32; the gap must be far below the LoRA's effect.
    check.ok = check.ok and check.output_change > 0 and check.output_error <= OUTPUT_RTOL * check.output_change
    return check
