"""The embedded default base model: a tiny, random-initialised FLUX.2 Klein.

It has the Hugging Face folder layout of ``black-forest-labs/FLUX.2-klein-base-4B``
(``transformer/``, ``text_encoder/``, ``vae/``, ``tokenizer/``) and goes through mflux's normal
FLUX.2 Klein base code path, only smaller: a transformer of a few narrow blocks, a 28-layer
narrow Qwen3 text encoder (the FLUX.2 prompt encoder reads hidden layers 9, 18 and 27) and a
byte-level BPE tokenizer trained offline. mflux's FLUX.2 VAE has fixed channels, so it keeps its
full size (written in bfloat16). Weights are random: it trains and generates through every real
code path in seconds on a CPU, but its images mean nothing.

mflux takes model geometry from its ``AVAILABLE_MODELS`` registry, not from the model folder, so
:func:`register_tiny_model` adds an entry (same ``model_name`` family, so mflux picks the FLUX.2
base training adapter) in every process that loads the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from charlora.models.registry import TINY
from charlora.params import TinyModelParams
from charlora.models.tokenizers import qwen_tokenizer
from charlora.progress import silenced

TEXT_ENCODER_LAYERS = 28  # the prompt encoder stacks hidden states 9, 18 and 27
TEXT_HEAD_DIM = 16

# Words the tokenizer learns merges from: enough English for captions and prompts to tokenize sensibly.
CORPUS_WORDS = """
a an the of and with in on at under beside next to between from by for its his her their is are
round orange fox creature character teal scarf white star mark forehead cream belly tail ears eyes
standing sitting walking running jumping waving looking smiling happy calm surprised sad angry sleepy
portrait close-up full body side view back view front view three quarter profile looking at the camera
meadow field grass sky blue clouds night stars moon sunset sunrise beach sea ocean sand snow winter
forest trees room cosy wallpaper street city buildings rain umbrella desk lamp wooden table kitchen
castle mountain river lake garden flowers bridge train station library cafe market park playground
watercolor painting pencil sketch pixel art anime style cinematic lighting soft light dramatic studio
photo illustration cartoon 3d render storybook comic flat colors warm cold bright dark detailed simple
background plain small large tiny big corner left right top bottom center lower upper holding book
cup ball kite balloon hat backpack reading eating drinking dancing flying floating swimming climbing
"""


def text_encoder_overrides(params: TinyModelParams) -> dict:
    """mflux Qwen3 text encoder arguments for the tiny geometry."""
    return {
        "vocab_size": params.vocab_size,
        "hidden_size": params.text_hidden_size,
        "num_hidden_layers": TEXT_ENCODER_LAYERS,
        "num_attention_heads": params.text_hidden_size // TEXT_HEAD_DIM,
        "num_key_value_heads": 1,
        "head_dim": TEXT_HEAD_DIM,
        "intermediate_size": params.text_hidden_size * 2,
        "max_position_embeddings": 1024,
    }


def transformer_overrides(params: TinyModelParams) -> dict:
    """mflux FLUX.2 transformer arguments for the tiny geometry."""
    axis = params.attention_head_dim // 4
    return {
        "num_layers": params.num_layers,
        "num_single_layers": params.num_single_layers,
        "num_attention_heads": params.num_attention_heads,
        "attention_head_dim": params.attention_head_dim,
        "joint_attention_dim": 3 * params.text_hidden_size,
        "axes_dims_rope": (axis, axis, axis, axis),
    }


def register_tiny_model(params: TinyModelParams) -> Any:
    """Add (or replace) the tiny model's entry in mflux's model registry; return its ModelConfig."""
    from mflux.models.common.config.model_config import AVAILABLE_MODELS, ModelConfig
    from mflux.models.common.resolution.config_resolution import ConfigResolution

    real = AVAILABLE_MODELS["flux2-klein-base-4b"]
    config = ModelConfig(
        priority=real.priority,
        aliases=[TINY],
        model_name=real.model_name,  # the FLUX.2 Klein base family: same training adapter and code path
        base_model=None,
        controlnet_model=None,
        custom_transformer_model=None,
        num_train_steps=real.num_train_steps,
        max_sequence_length=real.max_sequence_length,
        supports_guidance=real.supports_guidance,
        requires_sigma_shift=real.requires_sigma_shift,
        transformer_overrides=transformer_overrides(params),
        text_encoder_overrides=text_encoder_overrides(params),
    )
    AVAILABLE_MODELS[TINY] = config
    # Resolution results are memoised; forget them so the new entry is seen.
    for cached in (getattr(ConfigResolution, "_resolve", None),):
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    return config


def build_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE trained offline on :data:`CORPUS_WORDS`, wrapped as Qwen2TokenizerFast."""
    return qwen_tokenizer(CORPUS_WORDS.split("\n"), vocab_size)


def build_tiny_model(params: TinyModelParams, out_dir: Path) -> dict:
    """Write the tiny model to ``out_dir`` (deterministic for a given ``params.seed``); return its description."""
    import mlx.core as mx
    from mflux.models.common.weights.saving.model_saver import ModelSaver
    from mflux.models.flux2.model.flux2_text_encoder.qwen3_text_encoder import Qwen3TextEncoder
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer
    from mflux.models.flux2.model.flux2_vae.vae import Flux2VAE
    from mflux.models.flux2.weights.flux2_weight_definition import Flux2KleinWeightDefinition

    config = register_tiny_model(params)
    mx.random.seed(params.seed)
    model = SimpleNamespace(
        vae=Flux2VAE(),
        transformer=Flux2Transformer(**config.transformer_overrides),
        text_encoder=Qwen3TextEncoder(**config.text_encoder_overrides),
        tokenizers={"qwen3": SimpleNamespace(tokenizer=build_tokenizer(params.vocab_size))},
    )
    with silenced():  # mflux's "Saving components" bars
        ModelSaver.save_model(model, bits=None, base_path=str(out_dir), weight_definition=Flux2KleinWeightDefinition,
                              dtypes={"vae": mx.bfloat16, "transformer": mx.float32, "text_encoder": mx.float32})
    description = {
        "name": TINY,
        "layout_of": config.model_name,
        "seed": params.seed,
        "transformer": {k: list(v) if isinstance(v, tuple) else v for k, v in config.transformer_overrides.items()},
        "text_encoder": config.text_encoder_overrides,
        "note": "random weights: trains and generates through mflux's real FLUX.2 Klein code path; images are meaningless",
    }
    (out_dir / "tiny_model.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description
