"""A base model's sizes from mflux's registry and the model folder, without loading a weight.

mflux builds a FLUX.2 Klein model from its ``AVAILABLE_MODELS`` entry: ``Flux2Transformer`` with
``transformer_overrides`` over its defaults, ``Qwen3TextEncoder`` with ``text_encoder_overrides``,
and the VAE (FLUX.2's full size, or a model folder's own channels from its ``vae/config.json`` when
:mod:`charlora.models.folder` registered it). So any registered model, the real 4B and 9B, the tiny
and micro models, describes itself the same way here: :func:`model_sizes` builds the three modules
lazily (mlx allocates nothing until an array is evaluated, and nothing here is) and counts their
parameters, split into what mflux's quantization would pack (the ``Linear`` and ``Embedding`` weights)
and what stays at full precision. The tiny model's entry must be registered first
(:func:`charlora.models.tiny.register_tiny_model`).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUANTIZE_GROUP = 64  # mflux quantizes in groups of 64 along a weight's input dimension
# FLUX.2's VAE as mflux builds it by default (Flux2VAE()): the encoder's channels per resolution level.
FULL_VAE_CHANNELS = (128, 256, 512, 512)


def _defaults(cls: type) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.default is not inspect.Parameter.empty}


def transformer_geometry(mflux_name: str) -> dict[str, Any]:
    """Constructor arguments of the transformer mflux builds for ``mflux_name`` (its defaults plus the overrides).

    mflux's ``Flux2Transformer`` has the same constructor arguments as diffusers'
    ``Flux2Transformer2DModel``, so this also describes the diffusers twin of the model.
    """
    from mflux.models.common.config.model_config import AVAILABLE_MODELS
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer

    geometry = {**_defaults(Flux2Transformer), **AVAILABLE_MODELS[mflux_name].transformer_overrides}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in geometry.items()}


def text_encoder_geometry(mflux_name: str) -> dict[str, Any]:
    """Constructor arguments of the Qwen3 text encoder mflux builds for ``mflux_name``."""
    from mflux.models.common.config.model_config import AVAILABLE_MODELS
    from mflux.models.flux2.model.flux2_text_encoder.qwen3_text_encoder import Qwen3TextEncoder

    return {**_defaults(Qwen3TextEncoder), **AVAILABLE_MODELS[mflux_name].text_encoder_overrides}


def layer_shape(path: str, geometry: dict[str, Any]) -> tuple[int, int]:
    """(out, in) features of the transformer block layer ``path`` (``transformer_blocks.0.attn.to_q``) in ``geometry``."""
    hidden = geometry["num_attention_heads"] * geometry["attention_head_dim"]
    mlp = int(hidden * geometry["mlp_ratio"])
    name = path.split(".", 2)[2]
    if path.startswith("single_transformer_blocks."):
        return {"attn.to_qkv_mlp_proj": (3 * hidden + 2 * mlp, hidden), "attn.to_out": (hidden, hidden + mlp)}[name]
    return {"ff.linear_in": (2 * mlp, hidden), "ff.linear_out": (hidden, mlp), "ff_context.linear_in": (2 * mlp, hidden),
            "ff_context.linear_out": (hidden, mlp)}.get(name, (hidden, hidden))


def vae_layout(model_path: str | Path | None) -> dict[str, Any]:
    """The VAE's encoder/decoder sizes: a model folder's ``vae/config.json`` when it has one, else FLUX.2's full size."""
    if model_path and (Path(model_path) / "vae" / "config.json").is_file():
        from charlora.models.folder import vae_geometry

        return vae_geometry(Path(model_path))
    return {"block_out_channels": FULL_VAE_CHANNELS, "decoder_block_out_channels": FULL_VAE_CHANNELS,
            "layers_per_block": 2, "norm_num_groups": 32}


DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}
DOWNLOAD_BYTES = 2  # the FLUX.2 Klein repositories ship their weights in bfloat16


def stored_bytes(model_path: str | Path | None, component: str) -> int:
    """Bytes per parameter of ``component``'s weights as stored (mflux keeps them in that dtype).

    A local folder's safetensors headers say it (the dtype holding most bytes); a model mflux
    downloads is the repository's bfloat16.
    """
    folder = Path(model_path) / component if model_path else None
    files = sorted(folder.glob("*.safetensors")) if folder is not None and folder.is_dir() else []
    if not files:
        return DOWNLOAD_BYTES
    from charlora.lora.safetensors import read_file_header

    held: dict[str, int] = {}
    for path in files:
        for key, info in read_file_header(path).items():
            if key != "__metadata__" and info["dtype"] in DTYPE_BYTES:
                start, end = info["data_offsets"]
                held[info["dtype"]] = held.get(info["dtype"], 0) + end - start
    return DTYPE_BYTES[max(held, key=held.get)] if held else DOWNLOAD_BYTES


@dataclass(frozen=True)
class ComponentSize:
    """Parameter counts of one component: what mflux's quantization packs and what it leaves alone."""

    quantizable: int          # elements of Linear/Embedding weights (packed when train.quantize is set)
    other: int                # every other parameter (norms, biases, convolutions): always full precision
    quantizable_rows: int     # the output rows of those weights (each row of in/64 groups gets a scale and a bias)
    quantize_blocker: str | None = None  # a layer whose input size is no multiple of 64: mflux cannot quantize it

    @property
    def total(self) -> int:
        """All parameters."""
        return self.quantizable + self.other


def count_parameters(module: Any) -> ComponentSize:
    """Count ``module``'s parameters (shapes only: nothing is evaluated)."""
    from mlx.utils import tree_flatten

    total = sum(value.size for _, value in tree_flatten(module.parameters()))
    quantizable = rows = 0
    blocker = None
    for path, child in module.named_modules():
        weight = getattr(child, "weight", None)
        if hasattr(child, "to_quantized") and weight is not None and weight.ndim == 2:
            quantizable += weight.size
            rows += weight.shape[0]
            if blocker is None and weight.shape[-1] % QUANTIZE_GROUP:
                blocker = f"{path} (input size {weight.shape[-1]})"
    return ComponentSize(quantizable, total - quantizable, rows, blocker)


@dataclass(frozen=True)
class ModelSizes:
    """What the memory estimate needs to know about a base model."""

    name: str
    transformer: ComponentSize
    text_encoder: ComponentSize
    vae: ComponentSize
    vae_encoder: ComponentSize        # the part of the VAE that encodes the training images (encoder, quant_conv, bn)
    geometry: dict[str, Any]          # the transformer's constructor arguments (heads, head dim, blocks, ...)
    text_hidden_size: int
    text_layers: int
    vae_channels: tuple[int, ...]
    prompt_tokens: int                # FLUX.2 pads every prompt to this many tokens
    stored_bytes: dict[str, int]      # bytes per weight as the files hold them, per component

    @property
    def hidden(self) -> int:
        """The transformer's hidden size (heads x head dim)."""
        return self.geometry["num_attention_heads"] * self.geometry["attention_head_dim"]

    @property
    def blocks(self) -> int:
        """Double- plus single-stream blocks."""
        return self.geometry["num_layers"] + self.geometry["num_single_layers"]


PROMPT_TOKENS = 512  # mflux's FLUX.2 prompt encoder: max_sequence_length=512, padded


def model_sizes(name: str, mflux_name: str, model_path: str | Path | None) -> ModelSizes:
    """The sizes of base model ``name`` (registered with mflux as ``mflux_name``; ``model_path``: its folder, if local)."""
    from mflux.models.flux2.model.flux2_text_encoder.qwen3_text_encoder import Qwen3TextEncoder
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer
    from mflux.models.flux2.model.flux2_vae.decoder.decoder import Flux2Decoder
    from mflux.models.flux2.model.flux2_vae.encoder.encoder import Flux2Encoder

    geometry = transformer_geometry(mflux_name)
    text = text_encoder_geometry(mflux_name)
    layout = vae_layout(model_path)
    channels = layout["block_out_channels"]
    common = {"layers_per_block": layout["layers_per_block"], "norm_num_groups": layout["norm_num_groups"]}
    transformer = Flux2Transformer(**{k: tuple(v) if isinstance(v, list) else v for k, v in geometry.items()})
    encoder = count_parameters(Flux2Encoder(block_out_channels=channels, **common))
    decoder = count_parameters(Flux2Decoder(block_out_channels=layout["decoder_block_out_channels"], **common))
    latent = 32  # quant_conv (64 -> 64, 1x1), post_quant_conv (32 -> 32), bn stats (128 x 2): tiny, counted as "other"
    extra = (2 * latent) ** 2 + 2 * latent + latent ** 2 + latent + 4 * latent * 2
    vae = ComponentSize(encoder.quantizable + decoder.quantizable, encoder.other + decoder.other + extra,
                        encoder.quantizable_rows + decoder.quantizable_rows, encoder.quantize_blocker or decoder.quantize_blocker)
    return ModelSizes(
        name=name, transformer=count_parameters(transformer), text_encoder=count_parameters(Qwen3TextEncoder(**text)),
        vae=vae, vae_encoder=ComponentSize(encoder.quantizable, encoder.other + extra, encoder.quantizable_rows,
                                           encoder.quantize_blocker),
        geometry=geometry, text_hidden_size=text["hidden_size"], text_layers=text["num_hidden_layers"],
        vae_channels=channels, prompt_tokens=PROMPT_TOKENS,
        stored_bytes={part: stored_bytes(model_path, part) for part in ("transformer", "text_encoder", "vae")})
