"""The recipe of the micro FLUX.2 Klein model: every size, seed and training length of its build.

``make micro-model`` builds the model from :data:`RECIPE` (tools/build_micro_model.py); the
shipped manifest records the recipe it was built from, so the weights can be traced and rebuilt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MICRO = "flux2-klein-micro"
MICRO_CLIP = "clip-micro"


@dataclass(frozen=True)
class VaeRecipe:
    block_out_channels: tuple[int, ...] = (16, 32, 64, 64)  # the encoder (and the latent space)
    decoder_block_out_channels: tuple[int, ...] = (32, 64, 64, 64)  # a wider decoder: sharper edges at full size
    layers_per_block: int = 1
    norm_num_groups: int = 4
    crop: int = 64  # trained on random crops (the VAE is fully convolutional); evaluated on whole pictures
    batch: int = 16
    steps: int = 3000  # encoder and decoder together; the latent space is then fixed
    decoder_steps: int = 0  # the decoder alone, for the frozen encoder (0 in the shipped build: CPU time went to the transformer)
    learning_rate: float = 2e-3
    latent_l2: float = 1e-3  # keeps the latent scale bounded (bn stats normalise it for the transformer)
    latent_noise: float = 0.02  # small noise on latents in the joint phase: a smoother latent space to diffuse in
    stats_images: int = 512  # world pictures the latent statistics (bn mean, variance) are measured on
    stats_seed: int = 101
    seed: int = 1


@dataclass(frozen=True)
class TextRecipe:
    hidden_size: int = 32
    num_hidden_layers: int = 28  # FLUX.2's prompt encoder stacks hidden states 9, 18 and 27
    num_attention_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 64
    vocab_size: int = 640
    # Token embeddings drawn with this standard deviation (transformers' default is 0.02). Random layers then only
    # perturb them: each word stays recognisable in the hidden states FLUX.2 reads. With 0.02, 28 random layers
    # washed the words out and the transformer learned to ignore the prompt.
    embedding_std: float = 1.0
    seed: int = 2


@dataclass(frozen=True)
class TransformerRecipe:
    """The transformer's size (mflux's FLUX.2 Klein classes with micro overrides) and its random start."""

    num_layers: int = 2  # double-stream blocks (Klein 4B: 5)
    num_single_layers: int = 2  # single-stream blocks (Klein 4B: 20)
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    seed: int = 3


@dataclass(frozen=True)
class PretrainingRecipe:
    """One pretraining phase of the transformer: its world pictures, its schedule and its loss."""

    world_seed: int = 100  # the pictures; held-out figures use Recipe.heldout_seed, never seen in training
    images: int = 18000  # world pictures encoded once for pretraining
    renders_per_caption: int = 3  # each caption drawn 3 times (sizes, scene details): 6000 captions to embed
    batch: int = 16
    steps: int = 7800  # in all (0: the phase is skipped)
    # The learning rate warms up and decays (cosine) again from each of these steps (a warm restart): after 3500
    # steps the model drew the prompt's scene but no creature; after 6500, blobs where large creatures stand.
    # The loss was still falling each time.
    restart_at: tuple[int, ...] = (3500, 6500)
    learning_rate: float = 5e-4
    warmup_steps: int = 200
    # Noise levels as mflux's FLUX.2 sampler visits them at micro sizes: its schedule is shifted by exp(mu) = 6.6
    # (64 tokens, 12 steps), 8 of 12 steps above 0.8, where the picture's layout and the prompt decide. A
    # quarter of the batch stays uniform over all levels, for the details.
    sigma_shift: float = 6.6
    uniform_share: float = 0.25
    caption_dropout: float = 0.1  # trained unconditional too, for classifier-free guidance
    ema_decay: float = 0.999
    # Extra loss weight on the image tokens the creature covers (0: every token alike; see FOCUS)
    creature_loss_weight: float = 0.0
    seed: int = 3  # the data order and the noise


# The focus phase: a second, shorter pretraining that weighs the creature's tokens more. After the first
# pretraining the model drew the prompt's scene well but the creature's colour and species hardly at all
# (CLIP's colour accuracy 0.29, chance 0.10): the creature covers a small part of each picture, so the loss
# barely asked for it, and a model that does not read the creature's words cannot tie a new character to a
# trigger word either. It continues from the first phase's weights as shipped (float16), on other world
# pictures, with the creature's tokens weighted 1 + creature_loss_weight. 3,000 steps in one cosine: after
# 1,500 the default run's LoRA gained +0.095 identity with leakage 0.066; after 3,000, +0.19 with 0.015.
FOCUS = PretrainingRecipe(world_seed=555, images=6000, steps=3000, restart_at=(), learning_rate=2e-4,
                          warmup_steps=100, ema_decay=0.998, creature_loss_weight=4.0, seed=5)


@dataclass(frozen=True)
class ClipRecipe:
    hidden_size: int = 64
    layers: int = 3
    heads: int = 4
    image_size: int = 96  # a fox's ears, a scarf's colour: 64 px kept little but the body colour
    patch_size: int = 8
    projection_dim: int = 64
    vocab_size: int = 512
    batch: int = 96
    lookalikes: int = 4  # pictures per group in a batch: a world picture and copies with one creature trait changed
    steps: int = 3000
    learning_rate: float = 1e-3
    seed: int = 4


@dataclass(frozen=True)
class Recipe:
    vae: VaeRecipe = field(default_factory=VaeRecipe)
    text: TextRecipe = field(default_factory=TextRecipe)
    transformer: TransformerRecipe = field(default_factory=TransformerRecipe)
    pretraining: PretrainingRecipe = field(default_factory=PretrainingRecipe)
    focus: PretrainingRecipe = FOCUS
    clip: ClipRecipe = field(default_factory=ClipRecipe)
    heldout_seed: int = 9000  # the figures' world pictures, never seen in training
    heldout_images: int = 96
    threads: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


RECIPE = Recipe()
