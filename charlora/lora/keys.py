"""How each LoRA format names a layer's tensors: key parsing and naming, format detection, grouping.

The four formats (see :mod:`charlora.lora.formats`) spell the same layer differently; the BFL
layout (comfyui, kohya) fuses query, key and value into one ``qkv`` layer, which a
:class:`NativeLayer` maps back to the canonical (mflux) layers it holds. A key no format knows
raises :class:`UnknownKeyError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class NativeLayer:
    """A layer as one format names it, and the canonical layers it holds (three for a fused qkv)."""

    name: str
    parts: tuple[str | None, ...]  # canonical path per slot; a one-element tuple when not fused

    @property
    def fused(self) -> bool:
        return len(self.parts) > 1


def normalise_format(name: str) -> str:
    """The canonical name of a format (aliases: bfl = comfyui, peft = diffusers)."""
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
