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
    header = {"__metadata__": merged, **{k: v for k, v in header.items() if k != "__metadata__"}}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as the format recommends
    return _HEADER_LENGTH.pack(len(encoded)) + encoded + data[start:]


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


def provenance(config: dict, fingerprint: dict, step: int, trigger: str, base_model_repo: str) -> dict[str, str]:
    """Metadata written into every extracted adapter."""
    import mlx.core as mx
    from importlib.metadata import version

    targets = config["lora_layers"]["targets"]
    return {
        "format": "mflux",
        "base_model": base_model_repo,
        "base_model_name": config["model"],
        "trigger_word": trigger,
        "lora_rank": str(targets[0]["rank"]) if targets else "0",
        # mflux keeps alpha out of the adapter tensors; the exports need it to reproduce the trained delta.
        "lora_alpha": str(targets[0]["alpha"]) if targets and targets[0].get("alpha") is not None else "null",
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
