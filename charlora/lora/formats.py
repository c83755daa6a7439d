"""FLUX.2 Klein LoRA key formats, and exact conversion between them.

One LoRA, four spellings of its keys:

=========  ==============================================================  ====================
format     key of the double-block image query LoRA (block 0)              used by
=========  ==============================================================  ====================
mflux      ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``     mflux (this pipeline)
diffusers  ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``     diffusers / PEFT
comfyui    ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``   ComfyUI, BFL, ai-toolkit
kohya      ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``      kohya sd-scripts, A1111-style tools
=========  ==============================================================  ====================

mflux and diffusers differ only in the double-block output projection (``attn.to_out`` vs
``attn.to_out.0``). The BFL layout (comfyui, kohya) fuses query, key and value into one ``qkv``
projection; a fused LoRA holds the three separate ones exactly: the down matrices stacked, the
up matrices block-diagonal, so ``B @ A`` of the fused LoRA is the three ``B @ A`` stacked. Reading
a fused LoRA back splits the up matrix by rows and keeps the rank columns each part uses.

Every tensor is accounted for: a key the table (:mod:`charlora.lora.keys`) cannot map raises
:class:`UnknownKeyError` naming it; nothing is dropped silently. The table covers every layer inside the transformer blocks, the
layers the train stage can target; LoRAs on the embedders or the final layer are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from charlora.errors import PipelineError
from charlora.lora.keys import (FORMATS, UnknownKeyError, detect_format, group_native, native_layer,  # noqa: F401
                                normalise_format)

@dataclass
class LoraLayer:
    """One layer's LoRA: ``delta = scale * up @ down``."""

    down: torch.Tensor  # A, (rank, in_features)
    up: torch.Tensor  # B, (out_features, rank)
    scale: float = 1.0

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> torch.Tensor:
        """The weight delta in float64 (exact products of float32 inputs)."""
        return self.scale * (self.up.double() @ self.down.double())


@dataclass
class Lora:
    """A LoRA by canonical (mflux) layer path, e.g. ``transformer_blocks.0.attn.to_q``."""

    layers: dict[str, LoraLayer]
    metadata: dict[str, str] = field(default_factory=dict)
    source_format: str = "mflux"

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.layers.values())).up.dtype

    def deltas(self) -> dict[str, torch.Tensor]:
        return {path: layer.delta() for path, layer in self.layers.items()}


def _alpha_scale(roles: dict[str, torch.Tensor]) -> float:
    if "alpha" not in roles:
        return 1.0
    return float(roles["alpha"].double().item()) / roles["down"].shape[0]


def _mflux_alpha(metadata: dict[str, str]) -> float | None:
    """The training alpha an mflux adapter was trained with (mflux does not store it in the tensors)."""
    value = metadata.get("lora_alpha")
    return None if value in (None, "", "null", "None") else float(value)


def from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], fmt: str | None = None,
                 source: str = "LoRA") -> Lora:
    """Parse a LoRA state dict in any known format into canonical layers, exactly."""
    fmt = normalise_format(fmt) if fmt else detect_format(tensors, metadata)
    layers: dict[str, LoraLayer] = {}
    trained_alpha = _mflux_alpha(metadata) if fmt == "mflux" else None
    for layer, roles in group_native(tensors, fmt, source).items():
        down, up = roles["down"], roles["up"]
        # extract writes the trained alpha as .alpha tensors; older mflux adapters have it only in the metadata
        scale = _alpha_scale(roles) if "alpha" in roles or trained_alpha is None else trained_alpha / down.shape[0]
        if not layer.fused:
            layers[layer.parts[0]] = LoraLayer(down, up, scale)
            continue
        if up.shape[0] % 3:
            raise PipelineError(f"{source}: fused layer {layer.name} has {up.shape[0]} output rows, not three equal parts.")
        rows = up.shape[0] // 3
        for slot, path in enumerate(layer.parts):
            part_up = up[slot * rows:(slot + 1) * rows]
            used = torch.nonzero(part_up.abs().sum(dim=0)).flatten()
            if path is None or used.numel() == 0:
                continue  # an all-zero part contributes nothing (a fused LoRA without this projection)
            layers[path] = LoraLayer(down[used].contiguous(), part_up[:, used].contiguous(), scale)
    return Lora(layers, dict(metadata), fmt)


def to_tensors(lora: Lora, fmt: str) -> dict[str, torch.Tensor]:
    """The LoRA as a state dict in ``fmt``; ``B @ A`` (times alpha / rank for kohya) equals the original delta."""
    fmt = normalise_format(fmt)
    down_key, up_key = ("lora_down.weight", "lora_up.weight") if fmt == "kohya" else ("lora_A.weight", "lora_B.weight")
    if fmt == "mflux":
        # mflux applies every layer at scale 1, so a scale other than 1 is folded into the up matrix.
        return {k: v for path, layer in sorted(lora.layers.items()) for k, v in (
            (f"transformer.{path}.{down_key}", layer.down), (f"transformer.{path}.{up_key}", _scaled(layer.up, layer.scale)))}
    fused: dict[str, dict[int, LoraLayer]] = {}
    tensors: dict[str, torch.Tensor] = {}
    for path, layer in sorted(lora.layers.items()):
        name, slot = native_layer(fmt, path)
        if slot is None:
            _put(tensors, fmt, name, layer.down, layer.up, layer.scale, down_key, up_key)
        else:
            fused.setdefault(name, {})[slot] = layer
    for name, parts in fused.items():
        down, up = fuse_block_diagonal(parts)
        scales = {part.scale for part in parts.values()}
        if len(scales) == 1:
            _put(tensors, fmt, name, down, up, scales.pop(), down_key, up_key)
        else:  # parts trained at different scales: fold each into its block of the up matrix
            down, up = fuse_block_diagonal({slot: LoraLayer(p.down, _scaled(p.up, p.scale)) for slot, p in parts.items()})
            _put(tensors, fmt, name, down, up, 1.0, down_key, up_key)
    return tensors


def _scaled(up: torch.Tensor, scale: float) -> torch.Tensor:
    return up if scale == 1.0 else (up.double() * scale).to(up.dtype)


def _put(tensors: dict[str, torch.Tensor], fmt: str, name: str, down: torch.Tensor, up: torch.Tensor, scale: float,
         down_key: str, up_key: str) -> None:
    tensors[f"{name}.{down_key}"] = down.contiguous()
    if fmt == "kohya":  # kohya carries the scale as alpha (delta = alpha / rank * up @ down)
        tensors[f"{name}.{up_key}"] = up.contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(scale * down.shape[0], dtype=torch.float32)
    else:  # diffusers and ComfyUI read no alpha for these keys: fold the scale into the up matrix
        tensors[f"{name}.{up_key}"] = _scaled(up, scale).contiguous()


def fuse_block_diagonal(parts: dict[int, LoraLayer]) -> tuple[torch.Tensor, torch.Tensor]:
    """One LoRA for a fused q/k/v projection from separate ones: A stacked, B block-diagonal.

    ``B @ A`` is the three deltas stacked by rows (a missing part's rows are zero), exactly: the
    off-diagonal blocks are zeros, so they add nothing to any product.
    """
    reference = next(iter(parts.values()))
    rows = reference.up.shape[0]
    ranks = {slot: parts[slot].rank if slot in parts else 0 for slot in range(3)}
    down = torch.cat([parts[slot].down for slot in range(3) if slot in parts], dim=0)
    up = torch.zeros((3 * rows, sum(ranks.values())), dtype=reference.up.dtype)
    column = 0
    for slot in range(3):
        if slot in parts:
            if parts[slot].up.shape[0] != rows:
                raise PipelineError(f"q/k/v LoRAs of one fused projection have different output sizes "
                                    f"({parts[slot].up.shape[0]} vs {rows}).")
            up[slot * rows:(slot + 1) * rows, column:column + ranks[slot]] = parts[slot].up
            column += ranks[slot]
    return down, up


def read_lora(path: Path, fmt: str | None = None) -> Lora:
    """Read a ``.safetensors`` LoRA in any known format (detected from its keys when ``fmt`` is None)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise PipelineError(f"{path} does not exist. Give the path of a .safetensors LoRA.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise PipelineError(f"{path} is not a readable .safetensors file ({error}).") from None
    if not tensors:
        raise PipelineError(f"{path} holds no tensors; it is not a LoRA.")
    return from_tensors(tensors, metadata, fmt, source=str(path))


def export_metadata(lora: Lora, fmt: str) -> dict[str, str]:
    """Provenance of the source plus what this file is; the training alpha is folded in, so it is dropped."""
    metadata = {k: v for k, v in lora.metadata.items() if k not in ("lora_alpha", "format", "lora_format")}
    metadata.update({"format": "pt", "lora_format": fmt, "converted_from": lora.source_format})
    if fmt == "kohya":
        metadata["ss_network_module"] = "networks.lora"
    return metadata


def write_lora(lora: Lora, fmt: str, path: Path) -> dict[str, torch.Tensor]:
    """Write ``lora`` in ``fmt`` to ``path`` (atomically); returns the tensors written."""
    from safetensors.torch import save_file

    tensors = to_tensors(lora, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=export_metadata(lora, normalise_format(fmt)))
    partial.replace(path)
    return tensors
