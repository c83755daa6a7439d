"""The shipped micro model files: float16 weights, a sha256 manifest with the build's figures, and its check.

The weights live in git (``models/micro/``, under 20 MB in all); ``manifest.json`` lists every file
with its sha256 and size, the recipe it was built from and what the build measured. The base_model
stage and a test check the files against it before anything uses them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from charlora.fileio import sha256_file, utc_now, write_json

MANIFEST = "manifest.json"


def to_float16(folder: Path) -> None:
    """Rewrite every ``*.safetensors`` under ``folder`` with floating tensors in float16 (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    import torch

    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        tensors = {key: t.to(torch.float16) if t.is_floating_point() else t for key, t in tensors.items()}
        save_file(tensors, str(path), metadata=metadata)


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "size": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}


def write_manifest(folder: Path, recipe: dict, figures: dict, versions: dict[str, str]) -> dict:
    manifest = {"name": folder.name, "built_at": utc_now(), "recipe": recipe, "figures": figures, "versions": versions,
                "files": file_table(folder)}
    write_json(folder / MANIFEST, manifest)
    return manifest


def problems(folder: Path) -> list[str]:
    """What differs between ``folder`` and its manifest (empty: every file is as built)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing"]
    expected = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    actual = file_table(folder)
    found = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            found.append(f"{folder / name} is missing")
        elif name not in expected:
            found.append(f"{folder / name} is not in the manifest")
        elif actual[name]["sha256"] != expected[name]["sha256"]:
            found.append(f"{folder / name} has sha256 {actual[name]['sha256'][:12]}..., the manifest says "
                         f"{expected[name]['sha256'][:12]}...")
    return found


def install(source: Path, target: Path) -> None:
    """Copy a checked shipped folder to ``target`` (replacing it) and check the copy."""
    from charlora.errors import PipelineError

    found = problems(source)
    if found:
        raise PipelineError(f"the shipped model in {source} does not match its manifest: {'; '.join(found[:3])}. "
                            "Restore it with `git checkout -- " + str(source) + "` or rebuild it: make micro-model.")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    copied = problems(target)
    if copied:
        raise PipelineError(f"copying {source} to {target} failed: {copied[0]}. Is the disk full?")
