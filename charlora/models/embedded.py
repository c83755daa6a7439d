"""The base_model stage: make the embedded base model named by ``base_model.name`` ready to load.

- ``flux2-klein-micro`` (the default): the shipped float16 weights in ``models/micro/`` are checked
  against their sha256 manifest and copied to ``models/base/`` with the micro CLIP. Nothing is trained.
- ``flux2-klein-tiny``: built from ``tiny_model`` params in seconds (random weights), with a tiny CLIP.
- A real model (or ``base_model.path`` set): nothing to prepare here; mflux loads or downloads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from charlora import layout
from charlora.fileio import staged_dir
from charlora.models.registry import MICRO, TINY
from charlora.models.shipped import MANIFEST, install
from charlora.params import Params


def prepare_base_model(params: Params, base_dir: Path, report: Callable[[str], None]) -> dict:
    """Fill ``base_dir`` (replaced as a whole) with what ``params.base_model`` needs; return a description."""
    name = params.base_model.name
    with staged_dir(base_dir) as staging:
        if name == MICRO and params.base_model.path is None:
            for shipped in (layout.SHIPPED_MICRO_DIR / MICRO, layout.SHIPPED_MICRO_DIR / "clip-micro"):
                install(shipped, staging / shipped.name)
            figures = json.loads((staging / MICRO / MANIFEST).read_text(encoding="utf-8"))["figures"]
            report(f"micro FLUX.2 Klein (pretrained on the cartoon world: VAE {figures['vae_psnr_db']} dB PSNR) and "
                   f"micro CLIP checked against their sha256 manifests and installed in {base_dir}")
            return {"base_model": name, "installed": [MICRO, "clip-micro"], "figures": figures}
        if name == TINY and params.base_model.path is None:
            from charlora.models.tiny import build_tiny_model
            from charlora.models.tiny_clip import build_tiny_clip

            description = build_tiny_model(params.tiny_model, staging / TINY)
            build_tiny_clip(staging / "clip-tiny", seed=params.tiny_model.seed)
            report(f"tiny FLUX.2 Klein model ({description['transformer']['num_layers']} double + "
                   f"{description['transformer']['num_single_layers']} single blocks, random weights) and tiny CLIP "
                   f"written to {base_dir}")
            return {"base_model": name, "installed": [TINY, "clip-tiny"]}
        report(f"{name}: nothing to prepare here; mflux loads "
               + (f"base_model.path {params.base_model.path}" if params.base_model.path else "it from the Hugging Face Hub"))
        return {"base_model": name, "installed": []}


def model_identity(params: Params, base_dir: Path = layout.BASE_MODELS_DIR) -> str:
    """A string that changes when the base model's weights do: for caches of what the base model generated.

    The micro model: the sha256 of its manifest (which lists every file's sha256); the tiny model:
    its params; a real model: its name and ``base_model.path``.
    """
    from dataclasses import asdict

    from charlora.fileio import sha256_file, sha256_json

    name = params.base_model.name
    if name == MICRO and params.base_model.path is None:
        return f"{MICRO}:{sha256_file(base_dir / MICRO / MANIFEST)}"
    if name == TINY and params.base_model.path is None:
        return f"{TINY}:{sha256_json(asdict(params.tiny_model))}"
    return f"{name}:{params.base_model.path or 'hub'}"
