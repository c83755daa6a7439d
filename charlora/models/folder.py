"""A FLUX.2 Klein model folder of any size, registered with mflux from its own config files.

mflux takes a model's geometry from its ``AVAILABLE_MODELS`` registry, not from the folder, and
always builds the full-size FLUX.2 VAE. A small model folder in the Hugging Face layout of
``black-forest-labs/FLUX.2-klein-base-4B`` (``transformer/``, ``text_encoder/``, ``vae/``,
``tokenizer/``, each with the ``config.json`` that diffusers or transformers wrote) describes itself,
so :func:`register_model_folder` reads those configs and adds a registry entry: the same
``model_name`` family as Klein Base 4B (so mflux takes the FLUX.2 base training path) with the
folder's transformer and text-encoder sizes. For the VAE it installs one narrow hook: while
``Flux2Initializer._init_models`` builds a model of a registered folder, the ``Flux2VAE`` it
constructs is :class:`SizedFlux2VAE` with the folder's channels. Everything else, the weight
loading above all, is mflux's own code path, the one the real model's download goes through.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from charlora.errors import PipelineError

# Registered names -> the VAE geometry their folders declare (read by the initializer hook).
_VAE_GEOMETRY: dict[str, dict[str, Any]] = {}


def _config(folder: Path, component: str) -> dict[str, Any]:
    path = folder / component / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path} is missing or not JSON ({error}); {folder} is not a complete FLUX.2 Klein "
                            "model folder. Rebuild or reinstall it (dvc repro base_model).") from error


def transformer_overrides(folder: Path) -> dict[str, Any]:
    """mflux ``Flux2Transformer`` arguments from ``transformer/config.json`` (diffusers' Flux2Transformer2DModel)."""
    config = _config(folder, "transformer")
    keys = ("in_channels", "num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads",
            "joint_attention_dim", "timestep_guidance_channels", "mlp_ratio", "rope_theta")
    overrides = {key: config[key] for key in keys if key in config}
    overrides["axes_dims_rope"] = tuple(config["axes_dims_rope"])
    return overrides


def text_encoder_overrides(folder: Path) -> dict[str, Any]:
    """mflux ``Qwen3TextEncoder`` arguments from ``text_encoder/config.json`` (transformers' Qwen3 config)."""
    config = _config(folder, "text_encoder")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "max_position_embeddings", "rope_theta", "rms_norm_eps", "head_dim")
    overrides = {key: config[key] for key in keys if key in config}
    # transformers 5 keeps rope_theta under rope_parameters; mflux's default (1e6) is not the folder's.
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        overrides["rope_theta"] = rope["rope_theta"]
    return overrides


def vae_geometry(folder: Path) -> dict[str, Any]:
    """Encoder/decoder sizes from ``vae/config.json`` (diffusers' AutoencoderKLFlux2)."""
    config = _config(folder, "vae")
    if config.get("latent_channels", 32) != 32:
        raise PipelineError(f"{folder}/vae has {config['latent_channels']} latent channels; mflux's FLUX.2 code "
                            "needs 32 (it packs 2x2 patches into 128 transformer channels).")
    channels = tuple(config["block_out_channels"])
    return {"block_out_channels": channels,
            "decoder_block_out_channels": tuple(config.get("decoder_block_out_channels") or channels),
            "layers_per_block": config.get("layers_per_block", 2), "norm_num_groups": config.get("norm_num_groups", 32)}


def _sized_vae_class():
    """mflux's ``Flux2VAE`` with encoder and decoder sizes as arguments (defined lazily: mlx imports late)."""
    from mlx import nn
    from mflux.models.flux2.model.flux2_vae.common.batch_norm_stats import Flux2BatchNormStats
    from mflux.models.flux2.model.flux2_vae.decoder.decoder import Flux2Decoder
    from mflux.models.flux2.model.flux2_vae.encoder.encoder import Flux2Encoder
    from mflux.models.flux2.model.flux2_vae.vae import Flux2VAE

    class SizedFlux2VAE(Flux2VAE):
        """``Flux2VAE`` whose ``Flux2Encoder``/``Flux2Decoder`` take the folder's channels.

        ``Flux2VAE.__init__`` always builds the full-size encoder, so this one builds the same five
        parts (encoder, decoder, quant_conv, post_quant_conv, bn) itself; encode/decode are inherited.
        """

        def __init__(self, block_out_channels, decoder_block_out_channels, layers_per_block, norm_num_groups):
            nn.Module.__init__(self)
            self.encoder = Flux2Encoder(block_out_channels=block_out_channels, layers_per_block=layers_per_block,
                                        norm_num_groups=norm_num_groups)
            self.decoder = Flux2Decoder(block_out_channels=decoder_block_out_channels,
                                        layers_per_block=layers_per_block, norm_num_groups=norm_num_groups)
            self.quant_conv = nn.Conv2d(2 * self.latent_channels, 2 * self.latent_channels, kernel_size=1, padding=0)
            self.post_quant_conv = nn.Conv2d(self.latent_channels, self.latent_channels, kernel_size=1, padding=0)
            self.bn = Flux2BatchNormStats(num_features=4 * self.latent_channels, eps=1e-4, momentum=0.1)

    return SizedFlux2VAE


def _install_vae_hook() -> None:
    """Wrap ``Flux2Initializer._init_models`` once: registered folders get a VAE of their own size."""
    from mflux.models.flux2 import flux2_initializer
    from mflux.models.flux2.flux2_initializer import Flux2Initializer

    original = Flux2Initializer.__dict__["_init_models"].__func__
    if getattr(original, "_charlora_sized_vae", False):
        return
    full_size = flux2_initializer.Flux2VAE
    sized = _sized_vae_class()

    def _init_models(model) -> None:
        geometry = _VAE_GEOMETRY.get(model.model_config.aliases[0])
        if geometry is None:
            return original(model)
        flux2_initializer.Flux2VAE = partial(sized, **geometry)
        try:
            return original(model)
        finally:
            flux2_initializer.Flux2VAE = full_size

    _init_models._charlora_sized_vae = True
    Flux2Initializer._init_models = staticmethod(_init_models)


def register_model_folder(name: str, folder: Path):
    """Add (or replace) ``name`` in mflux's model registry with ``folder``'s geometry; return its ModelConfig."""
    from mflux.models.common.config.model_config import AVAILABLE_MODELS, ModelConfig
    from mflux.models.common.resolution.config_resolution import ConfigResolution

    folder = Path(folder)
    real = AVAILABLE_MODELS["flux2-klein-base-4b"]
    config = ModelConfig(
        priority=real.priority, aliases=[name], model_name=real.model_name, base_model=None, controlnet_model=None,
        custom_transformer_model=None, num_train_steps=real.num_train_steps,
        max_sequence_length=real.max_sequence_length, supports_guidance=real.supports_guidance,
        requires_sigma_shift=real.requires_sigma_shift, transformer_overrides=transformer_overrides(folder),
        text_encoder_overrides=text_encoder_overrides(folder))
    AVAILABLE_MODELS[name] = config
    _VAE_GEOMETRY[name] = vae_geometry(folder)
    _install_vae_hook()
    cached = getattr(ConfigResolution, "_resolve", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
    return config
