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

Every tensor is accounted for: a key this table cannot map raises :class:`UnknownKeyError` naming
it; nothing is dropped silently. The table covers every layer inside the transformer blocks, the
layers the train stage can target; LoRAs on the embedders or the final layer are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from charlora.errors import PipelineError
from charlora.models.flux2_layers import (DIFFUSERS_RENAMES, DOUBLE_BLOCK_LAYERS, DOUBLE_TARGETS, LORA_FORMATS,
                                   SINGLE_BLOCK_LAYERS, SINGLE_TARGETS)

FORMATS = LORA_FORMATS
FORMAT_ALIASES = {"bfl": "comfyui", "peft": "diffusers"}

_BLOCKS = {"double": ("transformer_blocks", "double_blocks", DOUBLE_BLOCK_LAYERS),
           "single": ("single_transformer_blocks", "single_blocks", SINGLE_BLOCK_LAYERS)}
_CANONICAL = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
_SUFFIXES = {"down": ("lora_A.weight", "lora_down.weight"), "up": ("lora_B.weight", "lora_up.weight"), "alpha": ("alpha",)}


class UnknownKeyError(PipelineError):
    """A tensor whose key is not a FLUX.2 Klein block LoRA key in any known format."""


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


@dataclass(frozen=True)
class NativeLayer:
    """A layer as one format names it, and the canonical layers it holds (three for a fused qkv)."""

    name: str
    parts: tuple[str | None, ...]  # canonical path per slot; a one-element tuple when not fused

    @property
    def fused(self) -> bool:
        return len(self.parts) > 1


def normalise_format(name: str) -> str:
    fmt = FORMAT_ALIASES.get(name.lower(), name.lower())
    if fmt not in FORMATS:
        raise PipelineError(f"unknown LoRA format '{name}'. Use one of: {', '.join(FORMATS)} (bfl = comfyui, peft = diffusers).")
    return fmt


def _split_canonical(path: str) -> tuple[str, int, str, str, int | None]:
    """(double|single, block index, layer name, BFL name, fused slot) of a canonical path."""
    match = _CANONICAL.match(path)
    if match:
        kind = "double" if match.group(1) == "transformer_blocks" else "single"
        for name, bfl, slot in _BLOCKS[kind][2]:
            if name == match.group(3):
                return kind, int(match.group(2)), name, bfl, slot
    raise UnknownKeyError(f"'{path}' is not a layer of a FLUX.2 transformer block. LoRA layers can be "
                          f"transformer_blocks.N.{{{', '.join(DOUBLE_TARGETS)}}} or "
                          f"single_transformer_blocks.N.{{{', '.join(SINGLE_TARGETS)}}}.")


def native_layer(fmt: str, path: str) -> tuple[str, int | None]:
    """The name ``fmt`` gives the canonical layer ``path``, and its slot in a fused projection."""
    kind, block, name, bfl, slot = _split_canonical(path)
    if fmt == "mflux":
        return f"transformer.{path}", None
    if fmt == "diffusers":
        renamed = DIFFUSERS_RENAMES.get(name, name) if kind == "double" else name
        return f"transformer.{_BLOCKS[kind][0]}.{block}.{renamed}", None
    bfl_path = f"{_BLOCKS[kind][1]}.{block}.{bfl}"
    if fmt == "comfyui":
        return f"diffusion_model.{bfl_path}", slot
    return "lora_unet_" + bfl_path.replace(".", "_"), slot


def _parse_native(fmt: str, native: str) -> NativeLayer | None:
    """The canonical layers behind a native layer name, or None if ``fmt`` has no such layer."""
    if fmt in ("mflux", "diffusers"):
        if not native.startswith("transformer."):
            return None
        path = native.removeprefix("transformer.")
        for name, renamed in DIFFUSERS_RENAMES.items():
            if path.startswith("transformer_blocks.") and path.endswith("." + renamed):
                path = path[: -len(renamed)] + name
        try:
            _split_canonical(path)
        except UnknownKeyError:
            return None
        return NativeLayer(native, (path,))
    if fmt == "comfyui":
        match = re.match(r"^diffusion_model\.(double|single)_blocks\.(\d+)\.(.+)$", native)
        bfl_of = (lambda candidate: candidate)
    else:
        match = re.match(r"^lora_unet_(double|single)_blocks_(\d+)_(.+)$", native)
        bfl_of = (lambda candidate: candidate.replace(".", "_"))
    if not match:
        return None
    kind, block, rest = match.group(1), int(match.group(2)), match.group(3)
    parts = {slot: f"{_BLOCKS[kind][0]}.{block}.{name}" for name, bfl, slot in _BLOCKS[kind][2] if bfl_of(bfl) == rest}
    if not parts:
        return None
    if None in parts:
        return NativeLayer(native, (parts[None],))
    return NativeLayer(native, tuple(parts.get(slot) for slot in range(3)))


def detect_format(keys: Iterable[str], metadata: dict[str, str] | None = None) -> str:
    """The key format of a LoRA's tensor names (mflux vs diffusers by the output projection or metadata)."""
    keys = list(keys)
    if any(k.startswith("lora_unet_") for k in keys):
        return "kohya"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "comfyui"
    declared = (metadata or {}).get("lora_format") or (metadata or {}).get("format")
    if declared in FORMATS:
        return declared
    return "diffusers" if any(".attn.to_out.0." in k for k in keys) else "mflux"


def _split_key(key: str) -> tuple[str, str] | None:
    for role, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            if key.endswith("." + suffix):
                return key[: -len(suffix) - 1], role
    return None


def group_native(tensors: dict[str, torch.Tensor], fmt: str, source: str) -> dict[NativeLayer, dict[str, torch.Tensor]]:
    """Tensors of a file grouped by native layer ({"down", "up", "alpha"}); unknown keys raise."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    layers: dict[str, NativeLayer] = {}
    for key, tensor in tensors.items():
        split = _split_key(key)
        layer = _parse_native(fmt, split[0]) if split else None
        if layer is None:
            unknown.append(key)
            continue
        layers[layer.name] = layer
        grouped.setdefault(layer.name, {})[split[1]] = tensor
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise UnknownKeyError(
            f"{source}: {len(unknown)} tensor(s) are not FLUX.2 Klein block LoRA keys in the {fmt} format: {shown}. "
            "Nothing was converted. Only LoRAs on the transformer blocks' linear layers can be converted "
            f"(double blocks: {', '.join(DOUBLE_TARGETS)}; single blocks: {', '.join(SINGLE_TARGETS)}).")
    result = {}
    for name, roles in grouped.items():
        missing = [role for role in ("down", "up") if role not in roles]
        if missing:
            raise PipelineError(f"{source}: layer {name} has no {' and no '.join(missing)} matrix. The file is incomplete; "
                                "export it again from the trainer that made it.")
        down, up = roles["down"], roles["up"]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise PipelineError(f"{source}: layer {name} has down {tuple(down.shape)} and up {tuple(up.shape)}, "
                                "which are not a LoRA pair (up columns must equal down rows).")
        result[layers[name]] = roles
    return result


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
