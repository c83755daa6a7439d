"""safetensors bytes: header and metadata, an adapter's ``.alpha`` scalars, and a hash of its tensors.

extract copies an adapter out of mflux's checkpoint byte for byte in its tensor data and only
rewrites the header's ``__metadata__`` (or appends ``.alpha`` scalars after the existing data), so
the trained tensors are provably unchanged. Reading metadata goes through safetensors itself.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

_HEADER_LENGTH = struct.Struct("<Q")


def read_safetensors_header(data: bytes) -> tuple[dict, int]:
    """(header dict, offset where tensor data starts) of safetensors bytes."""
    if len(data) < 8:
        raise ValueError("not a safetensors file (shorter than 8 bytes)")
    (length,) = _HEADER_LENGTH.unpack_from(data)
    if length > len(data) - 8:
        raise ValueError("not a safetensors file (header longer than the file)")
    return json.loads(data[8 : 8 + length]), 8 + length


def read_file_header(path: Path) -> dict:
    """The header of a safetensors file, reading only its first bytes (the tensors can be gigabytes)."""
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (length,) = _HEADER_LENGTH.unpack(start)
        return json.loads(handle.read(length))


def _safetensors_bytes(header: dict, tensor_data: bytes) -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as the format recommends
    return _HEADER_LENGTH.pack(len(encoded)) + encoded + tensor_data


def with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    """The same safetensors bytes with ``metadata`` merged into ``__metadata__`` (tensor bytes untouched)."""
    header, start = read_safetensors_header(data)
    merged = {**header.get("__metadata__", {}), **{k: str(v) for k, v in metadata.items()}}
    return _safetensors_bytes({**header, "__metadata__": merged}, data[start:])


def with_lora_alpha(data: bytes, alpha: float | None) -> bytes:
    """The same adapter with a ``<layer>.alpha`` scalar for every LoRA pair (``alpha`` None: unchanged).

    mflux trains each layer at scale alpha / rank but saves only ``lora_A``/``lora_B``, so its own loader
    (and every other) would apply the adapter at scale 1. mflux's loader, like kohya's, reads a layer's
    ``.alpha`` and multiplies ``lora_B`` by alpha / rank. The scalars are appended after the existing
    tensor data, which stays byte for byte as it was.
    """
    if alpha is None:
        return data
    header, start = read_safetensors_header(data)
    end = max((info["data_offsets"][1] for name, info in header.items() if name != "__metadata__"), default=0)
    value = struct.pack("<f", float(alpha))
    added = {}
    for name in sorted(k for k in header if k.endswith(".lora_A.weight")):
        added[name.removesuffix(".lora_A.weight") + ".alpha"] = {
            "dtype": "F32", "shape": [], "data_offsets": [end + 4 * len(added), end + 4 * len(added) + 4]}
    return _safetensors_bytes({**header, **added}, data[start : start + end] + value * len(added))


def tensors_sha256(data: bytes) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes: equal for equal weights, whatever the metadata."""
    header, start = read_safetensors_header(data)
    digest = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        begin, end = info["data_offsets"]
        digest.update(json.dumps([name, info["dtype"], info["shape"]]).encode("utf-8"))
        digest.update(data[start + begin : start + end])
    return digest.hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (empty if it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return handle.metadata() or {}
