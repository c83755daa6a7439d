"""mflux's training config (the ``mflux-train --config`` JSON schema) from the effective settings."""

from __future__ import annotations

import os
from pathlib import Path

from charlora.errors import PipelineError
from charlora.models.registry import BaseModelSpec
from charlora.train.settings import TrainSettings


def lora_targets(settings: TrainSettings) -> list[dict]:
    """mflux ``lora_layers.targets`` entries for the double- and single-stream block ranges."""
    targets = []
    for prefix, names, (start, end) in (("transformer_blocks", settings.double_targets, settings.double_blocks),
                                        ("single_transformer_blocks", settings.single_targets, settings.single_blocks)):
        for name in names:
            target = {"module_path": f"{prefix}.{{block}}.{name}", "blocks": {"start": start, "end": end},
                      "rank": settings.rank}
            if settings.alpha is not None:
                target["alpha"] = settings.alpha
            targets.append(target)
    return targets


def optimizer_config(settings: TrainSettings, total_steps: int) -> dict:
    """mflux's ``optimizer`` section: the optimizer, its learning rate and the schedule over ``total_steps``.

    Raises :class:`PipelineError` when the warm-up would last the whole run.
    """
    if settings.lr_warmup_steps >= total_steps:
        raise PipelineError(
            f"params.yaml: 'train.lr_warmup_steps' is {settings.lr_warmup_steps}, but the run has {total_steps} steps "
            f"(images x epochs / batch size); the learning rate would never reach train.learning_rate. "
            f"Use fewer warm-up steps or more epochs.")
    optimizer = {"name": settings.optimizer, "learning_rate": settings.learning_rate}
    if settings.lr_warmup_steps:
        optimizer["lr_warmup_steps"] = settings.lr_warmup_steps
    if settings.lr_schedule == "cosine":
        optimizer["lr_schedule"] = "cosine"
        optimizer["lr_total_steps"] = total_steps
    return optimizer


def learning_rate_line(settings: TrainSettings) -> str:
    """The learning rate and its schedule in words, for the progress display: ``learning rate 0.001, warm-up 40 steps, cosine decay to 0``."""
    parts = [f"learning rate {settings.learning_rate:g}"]
    if settings.lr_warmup_steps:
        parts.append(f"warm-up {settings.lr_warmup_steps} steps")
    parts.append("cosine decay to 0" if settings.lr_schedule == "cosine" else "constant")
    return ", ".join(parts)


def mflux_config(settings: TrainSettings, model: BaseModelSpec, model_path: str | None, data_dir: Path,
                 config_path: Path, run_dir: Path, total_steps: int) -> dict:
    """mflux's training config (``mflux-train --config`` schema) for these settings.

    ``data`` is relative to the config file, as mflux resolves it; ``output_path`` to the project root.
    ``total_steps`` is the run's length, over which a cosine schedule decays.
    """
    config = {
        "model": model.mflux_name,
        "model_path": model_path,
        "data": os.path.relpath(data_dir, config_path.parent),
        "seed": settings.seed,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "quantize": settings.quantize,
        "max_resolution": settings.resolution,
        "low_ram": settings.low_ram,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "cache_limit_gb": settings.cache_limit_gb,
        "training_loop": {"num_epochs": settings.epochs, "batch_size": settings.batch_size,
                          "timestep_low": settings.timestep_low, "timestep_high": settings.timestep_high},
        "optimizer": optimizer_config(settings, total_steps),
        "checkpoint": {"save_frequency": settings.checkpoint_every, "output_path": run_dir.as_posix()},
        "lora_layers": {"targets": lora_targets(settings)},
    }
    if settings.preview_every > 0:
        config["monitoring"] = {"preview_width": settings.preview_resolution, "preview_height": settings.preview_resolution,
                                "plot_frequency": settings.preview_every, "generate_image_frequency": settings.preview_every}
    return config
