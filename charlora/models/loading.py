"""Loading FLUX.2 Klein through mflux for generation, with or without LoRA adapters."""

from __future__ import annotations

from pathlib import Path

from charlora.base_models import TINY, get_base_model
from charlora.params import TinyModelParams


def load_flux2(model_name: str, model_path: str | Path | None, tiny: TinyModelParams | None = None,
               lora_paths: list[Path] | None = None, lora_scales: list[float] | None = None, bake_lora: bool = False):
    """An mflux ``Flux2Klein`` for ``model_name`` (a key of :data:`charlora.base_models.BASE_MODELS`).

    The LoRA is kept as separate layers (``bake_lora=False``) so that small updates are applied in
    full rather than rounded away in bfloat16 base weights.
    """
    from mflux.models.common.config.model_config import ModelConfig
    from mflux.models.flux2.variants import Flux2Klein

    spec = get_base_model(model_name)
    if spec.name == TINY:
        from charlora.tiny_model import register_tiny_model

        if tiny is None:
            raise ValueError("the tiny model needs its TinyModelParams to register its geometry")
        config = register_tiny_model(tiny)
    else:
        config = ModelConfig.from_name(spec.mflux_name)
    return Flux2Klein(model_config=config, model_path=None if model_path is None else str(model_path),
                      lora_paths=[str(p) for p in lora_paths or []] or None, lora_scales=lora_scales, bake_lora=bake_lora)
