"""extract: the LoRA adapter out of mflux's checkpoint zips, with provenance metadata.

mflux stores each checkpoint as a zip holding ``NNNNNNN_adapter.safetensors`` next to optimizer
and iterator state. The adapter is copied out byte for byte in its tensor data; only the
safetensors header's ``__metadata__`` is rewritten (:mod:`charlora.lora.safetensors`), so the
tensors are provably unchanged.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from charlora.errors import PipelineError
from charlora.fileio import read_json, staged_dir, utc_now, write_bytes_atomic
from charlora.lora.safetensors import tensors_sha256, with_lora_alpha, with_metadata
from charlora.models.registry import get_base_model
from charlora.params import Params
from charlora.train.checkpoints import RUN_SUBDIR, checkpoint_step, good_checkpoints


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
    from importlib.metadata import version

    import mlx.core as mx

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


def extract_adapters(params: Params, training_dir: Path, lora_dir: Path, report: Callable[[str], None]) -> dict:
    """Write every checkpoint's adapter to ``lora_dir/checkpoints`` and the last one as ``lora_dir/<name>.safetensors``.

    Returns ``metrics/extract.json``: the final adapter and every checkpoint's file and ``tensors_sha256``.
    """
    name, trigger = params.character.name, params.character.trigger
    config = read_json(training_dir / "config.json")
    fingerprint = read_json(training_dir / "fingerprint.json")
    checkpoints = good_checkpoints(training_dir / RUN_SUBDIR, report)
    if not checkpoints:
        raise PipelineError(f"no checkpoints in {training_dir / RUN_SUBDIR}. Run training first: dvc repro train.")
    base_repo = get_base_model(params.base_model.name).hf_repo
    alpha = trained_alpha(config)
    entries = []
    checkpoints_dir = lora_dir / "checkpoints"
    with staged_dir(checkpoints_dir) as staging:
        for checkpoint in checkpoints:
            step = checkpoint_step(checkpoint)
            adapter = with_lora_alpha(adapter_from_checkpoint(checkpoint), alpha)
            data = with_metadata(adapter, provenance(config, fingerprint, step, trigger, base_repo))
            file_name = f"{name}-step{step:06d}.safetensors"
            (staging / file_name).write_bytes(data)
            entries.append({"step": step, "file": str(checkpoints_dir / file_name), "tensors_sha256": tensors_sha256(data)})
    final = lora_dir / f"{name}.safetensors"
    write_bytes_atomic(final, Path(entries[-1]["file"]).read_bytes())
    return {"final": {**entries[-1], "file": str(final)}, "checkpoints": entries}
