"""Loading FLUX.2 Klein through mflux, with or without LoRA adapters, quietly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charlora import mlx_runtime
from charlora.models.registry import TINY, get_base_model
from charlora.params import TinyModelParams
from charlora.progress import silenced


def model_config(model_name: str, tiny: TinyModelParams | None = None, model_path: str | Path | None = None) -> Any:
    """mflux's ``ModelConfig`` for ``model_name``, registered with mflux first where mflux does not know it.

    The tiny model's entry comes from ``tiny``; a model whose geometry lives in its folder (the micro
    model) from ``model_path`` (default: its embedded folder). Also sets mlx's compute precision for
    this machine (:func:`charlora.mlx_runtime.use_cpu_precision`): every model load passes here.
    """
    from mflux.models.common.config.model_config import ModelConfig

    mlx_runtime.use_cpu_precision()
    spec = get_base_model(model_name)
    if spec.geometry_from_folder:
        from charlora.models.folder import register_model_folder

        return register_model_folder(spec.mflux_name, Path(model_path or spec.local_dir))
    if spec.name != TINY:
        return ModelConfig.from_name(spec.mflux_name)
    from charlora.models.tiny import register_tiny_model

    if tiny is None:
        raise ValueError("the tiny model needs its TinyModelParams to register its geometry")
    return register_tiny_model(tiny)


def load_flux2(model_name: str, model_path: str | Path | None, tiny: TinyModelParams | None = None,
               lora_paths: list[Path] | None = None, lora_scales: list[float] | None = None, bake_lora: bool = False,
               edit: bool = False) -> Any:
    """An mflux FLUX.2 Klein for ``model_name`` (a key of :data:`charlora.models.registry.BASE_MODELS`).

    ``edit=False``: ``Flux2Klein`` (text to image); ``edit=True``: ``Flux2KleinEdit``, whose
    ``generate_image(..., image_paths=[...])`` conditions on reference images (their tokens beside the
    image tokens). Both go through the same model registration and weight loading. The LoRA is kept
    as separate layers (``bake_lora=False``) so that small updates are applied in full rather than
    rounded away in bfloat16 base weights. mflux's loading banners are silenced.
    """
    import mlx.core as mx

    if edit:
        from mflux.models.flux2.variants.edit.flux2_klein_edit import Flux2KleinEdit as variant
    else:
        from mflux.models.flux2.variants import Flux2Klein as variant

    config = model_config(model_name, tiny, model_path)
    with silenced():
        model = variant(model_config=config, model_path=None if model_path is None else str(model_path),
                        lora_paths=[str(p) for p in lora_paths or []] or None, lora_scales=lora_scales,
                        bake_lora=bake_lora)
        # mlx loads weights lazily: evaluate them here, so that loading is timed as loading, not as the first image.
        mx.eval([getattr(model, part).parameters() for part in ("transformer", "text_encoder", "vae") if hasattr(model, part)])
    return model
