"""extract: the LoRA adapter out of mflux's checkpoint zips, with provenance metadata.

mflux stores each checkpoint as a zip holding ``NNNNNNN_adapter.safetensors`` next to optimizer
and iterator state. We copy the adapter out byte for byte in its tensor data and only rewrite the
safetensors header's ``__metadata__``, so the tensors are provably unchanged.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

from charlora.errors import PipelineError
from charlora.fileio import utc_now

_HEADER_LENGTH = struct.Struct("<Q")


def read_safetensors_header(data: bytes) -> tuple[dict, int]:
    """(header dict, offset where tensor data starts) of safetensors bytes."""
    if len(data) < 8:
        raise ValueError("not a safetensors file (shorter than 8 bytes)")
    (length,) = _HEADER_LENGTH.unpack_from(data)
    if length > len(data) - 8:
        raise ValueError("not a safetensors file (header longer than the file)")
    return json.loads(data[8 : 8 + length]), 8 + length


def with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    """The same safetensors bytes with ``metadata`` merged into ``__metadata__`` (tensor bytes untouched)."""
    header, start = read_safetensors_header(data)
    merged = {**header.get("__metadata__", {}), **{k: str(v) for k, v in metadata.items()}}
    return _safetensors_bytes({**header, "__metadata__": merged}, data[start:])


def _safetensors_bytes(header: dict, tensor_data: bytes) -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as the format recommends
    return _HEADER_LENGTH.pack(len(encoded)) + encoded + tensor_data


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
    with open(path, "rb") as handle:
        (length,) = _HEADER_LENGTH.unpack(handle.read(8))
        return json.loads(handle.read(length)).get("__metadata__", {})


def adapter_from_checkpoint(checkpoint: Path) -> bytes:
    """The ``*_adapter.safetensors`` bytes inside an mflux checkpoint zip."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            names = [n for n in archive.namelist() if n.endswith("_adapter.safetensors")]
            if len(names) != 1:
                raise PipelineError(f"{checkpoint} holds {len(names)} adapter files, expected 1. "
                                    "Is it an mflux training checkpoint? Rerun training: dvc repro -f train.")
            return archive.read(names[0])
    except zipfile.BadZipFile as error:
        raise PipelineError(f"{checkpoint} is not a readable zip ({error}). Rerun training: dvc repro -f train.") from error


def trained_alpha(config: dict) -> float | None:
    """The LoRA alpha an mflux training config used (one for all targets; None: scale 1)."""
    alphas = {t.get("alpha") for t in config["lora_layers"]["targets"]}
    if len(alphas) > 1:
        raise PipelineError(f"the training config uses several LoRA alphas {sorted(map(str, alphas))}; "
                            "this pipeline trains every target with train.lora.alpha. Rerun training: dvc repro -f train.")
    return alphas.pop() if alphas else None


def provenance(config: dict, fingerprint: dict, step: int, trigger: str, base_model_repo: str) -> dict[str, str]:
    """Metadata written into every extracted adapter."""
    import mlx.core as mx
    from importlib.metadata import version

    targets = config["lora_layers"]["targets"]
    alpha = trained_alpha(config)
    return {
        "format": "mflux",
        "base_model": base_model_repo,
        "base_model_name": config["model"],
        "trigger_word": trigger,
        "lora_rank": str(targets[0]["rank"]) if targets else "0",
        # "null": scale 1; a number: also written as each layer's .alpha tensor (with_lora_alpha)
        "lora_alpha": "null" if alpha is None else str(alpha),
        "lora_targets": json.dumps([{"module_path": t["module_path"], "blocks": t.get("blocks")} for t in targets]),
        "steps": str(step),
        "seed": str(config["seed"]),
        "resolution": str(config["max_resolution"]),
        "learning_rate": str(config["optimizer"]["learning_rate"]),
        "training_data_sha256": fingerprint["data_sha256"],
        "params_sha256": fingerprint["config_sha256"],
        "mflux_version": version("mflux"),
        "mlx_version": mx.__version__,
        "created_at": utc_now(),
    }
