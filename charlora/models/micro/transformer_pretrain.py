"""Pretrain the micro FLUX.2 transformer on the cartoon world (torch, diffusers' Flux2Transformer2DModel).

The objective is mflux's own (rectified flow): with clean latents ``x0`` (VAE mean, 2x2-patchified,
normalised with the VAE's ``bn`` statistics, packed into tokens) and Gaussian noise ``e``,
``x_s = (1 - s) x0 + s e`` and the transformer predicts ``e - x0``; mflux's LoRA training and its
sampler use exactly this. The noise levels ``s`` follow mflux's sampler, which at these sizes spends
most of its steps near pure noise (see ``PretrainingRecipe.sigma_shift``): trained mostly at middle
levels, the model denoised well but ignored the prompt and drew noise soup from pure noise. Prompts
are encoded with mflux's tokenisation and padded to 512 tokens (the transformer sees all 512 at
inference, so it trains on all 512). One caption in ten is the unconditional prompt " ", so
classifier-free guidance works. An exponential moving average of the weights is what ships.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from charlora.models.micro.recipe import PretrainingRecipe, TransformerRecipe
from charlora.models.micro.text import MAX_SEQUENCE_LENGTH, NEGATIVE_PROMPT, embed_prompts
from charlora.models.micro.vae_pretrain import patchify
from charlora.models.micro.world_data import creature_share, to_tensor, world_drawings
from charlora.world import render


@dataclass
class WorldLatents:
    """Encoded pretraining data: per picture size, packed latents and the row of each caption's embedding."""

    latents: dict[tuple[int, int], np.ndarray]  # (width, height) -> (n, tokens, 128) float16
    caption_rows: dict[tuple[int, int], np.ndarray]  # (width, height) -> (n,) rows of `embeddings`
    embeddings: np.ndarray  # (captions + 1, 512, joint_dim) float16; the last row is the unconditional prompt
    captions: list[str]
    # (width, height) -> (n, tokens) float16: the creature's share of each image token (the focus phase's weights)
    creature_shares: dict[tuple[int, int], np.ndarray] | None = None


def pack(vae, pictures) -> np.ndarray:
    """Pictures (B, 3, H, W) in [-1, 1] -> normalised packed latents (B, H/16 * W/16, 128), as mflux prepares them."""
    import torch

    with torch.inference_mode():
        latents = patchify(vae.encode(pictures).latent_dist.mode())
        mean = vae.bn.running_mean.reshape(1, -1, 1, 1)
        std = torch.sqrt(vae.bn.running_var.reshape(1, -1, 1, 1) + vae.bn.eps)
        latents = (latents - mean) / std
        return latents.flatten(2).transpose(1, 2).to(torch.float16).numpy()


def encode_world(vae, tokenizer, text_encoder, count: int, renders: int, seed: int,
                 report: Callable[[str], None], creature_shares: bool = False) -> WorldLatents:
    """``count`` world pictures (``renders`` per caption) as latents, and their captions' embeddings.

    With ``creature_shares``, also each image token's share of creature (:func:`creature_share`).
    """
    import torch

    by_size: dict[tuple[int, int], list] = {}
    captions: list[str] = []
    drawings = world_drawings(seed, renders)
    for _ in range(count):
        spec, text, size = next(drawings)
        if not captions or captions[-1] != text:
            captions.append(text)
        by_size.setdefault(size, []).append((spec, len(captions) - 1))
    latents, rows, shares = {}, {}, {}
    for size, entries in sorted(by_size.items()):
        chunks = [pack(vae, torch.from_numpy(np.stack([to_tensor(render(spec, size)) for spec, _ in entries[i : i + 64]])))
                  for i in range(0, len(entries), 64)]
        latents[size] = np.concatenate(chunks)
        rows[size] = np.array([index for _, index in entries])
        if creature_shares:
            shares[size] = np.stack([creature_share(spec, size) for spec, _ in entries]).astype(np.float16)
        report(f"encoded {len(entries)} world pictures of {size[0]}x{size[1]}")
    started = time.perf_counter()
    embeddings = embed_prompts(tokenizer, text_encoder, captions + [NEGATIVE_PROMPT])
    report(f"embedded {len(captions)} captions in {time.perf_counter() - started:.0f} s")
    return WorldLatents(latents, rows, embeddings, captions, shares if creature_shares else None)


def build_transformer(recipe: TransformerRecipe, joint_attention_dim: int):
    import torch
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(recipe.seed)
    axis = recipe.attention_head_dim // 4
    return Flux2Transformer2DModel(num_layers=recipe.num_layers, num_single_layers=recipe.num_single_layers,
                                   attention_head_dim=recipe.attention_head_dim,
                                   num_attention_heads=recipe.num_attention_heads,
                                   joint_attention_dim=joint_attention_dim, axes_dims_rope=(axis,) * 4,
                                   guidance_embeds=False)


def position_ids(width: int, height: int):
    """Image and text position ids as mflux makes them: (0, row, column, 0) per latent token, (0, 0, 0, i) per text token."""
    import torch

    rows, columns = height // 16, width // 16
    image = torch.zeros(rows * columns, 4, dtype=torch.int64)
    image[:, 1] = torch.arange(rows).repeat_interleave(columns)
    image[:, 2] = torch.arange(columns).repeat(rows)
    text = torch.zeros(MAX_SEQUENCE_LENGTH, 4, dtype=torch.int64)
    text[:, 3] = torch.arange(MAX_SEQUENCE_LENGTH)
    return image, text


def sample_sigmas(rng: np.random.Generator, count: int, shift: float, uniform_share: float) -> np.ndarray:
    """Noise levels: ``uniform_share`` uniform, the rest uniform shifted by ``shift`` towards 1 as mflux's schedule is."""
    uniform = rng.uniform(0.0, 1.0, count)
    position = rng.uniform(1e-6, 1.0, count)
    shifted = shift / (shift + 1.0 / position - 1.0)
    return np.where(rng.uniform(size=count) < uniform_share, uniform, shifted).clip(1e-3, 1.0).astype(np.float32)


class Pretraining:
    """The training state (model, EMA, optimizer, data order) and its step."""

    def __init__(self, model, data: WorldLatents, recipe: PretrainingRecipe):
        import torch

        self.model, self.data, self.recipe = model, data, recipe
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.01)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._learning_rate_factor)
        self.rng = np.random.default_rng(recipe.seed)
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.step = 0
        sizes = sorted(data.latents)
        self.sizes = sizes
        counts = np.array([len(data.latents[s]) for s in sizes], dtype=np.float64)
        self.size_weights = counts / counts.sum()
        self.ids = {size: position_ids(*size) for size in sizes}

    def _learning_rate_factor(self, step: int) -> float:
        """Warm-up then cosine decay to 5 %, within the cycle that ``step`` is in (cycles start at 0 and restart_at)."""
        starts = [0, *(s for s in self.recipe.restart_at if 0 < s < self.recipe.steps)]
        start = max(s for s in starts if s <= step)
        end = min([s for s in starts if s > step] + [self.recipe.steps])
        warmup, step, total = self.recipe.warmup_steps, step - start, end - start
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "rng": self.rng.bit_generator.state,
                "generator": self.generator.get_state(), "step": self.step}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.step = state["step"]
        # The learning rate comes from the recipe, not the checkpoint: a build that resumes with a longer schedule
        # (more steps, a restart) continues exactly as an uninterrupted one would.
        self.schedule.base_lrs = [self.recipe.learning_rate] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.learning_rate * self._learning_rate_factor(self.schedule.last_epoch)

    def train_step(self) -> float:
        import torch

        recipe, data = self.recipe, self.data
        size = self.sizes[self.rng.choice(len(self.sizes), p=self.size_weights)]
        picks = self.rng.integers(0, len(data.latents[size]), recipe.batch)
        clean = torch.from_numpy(data.latents[size][picks].astype(np.float32))
        rows = data.caption_rows[size][picks]
        rows = np.where(self.rng.uniform(size=recipe.batch) < recipe.caption_dropout, len(data.embeddings) - 1, rows)
        text = torch.from_numpy(data.embeddings[rows].astype(np.float32))
        sigma = torch.from_numpy(sample_sigmas(self.rng, recipe.batch, recipe.sigma_shift, recipe.uniform_share))
        noise = torch.randn(clean.shape, generator=self.generator)
        noisy = (1 - sigma[:, None, None]) * clean + sigma[:, None, None] * noise
        image_ids, text_ids = self.ids[size]
        predicted = self.model(hidden_states=noisy, encoder_hidden_states=text, timestep=sigma, img_ids=image_ids,
                               txt_ids=text_ids, return_dict=False)[0]
        error = (predicted - (noise - clean)).pow(2)
        if recipe.creature_loss_weight:
            # Tokens the creature covers count (1 + weight) times: its words (colour, species) must be read.
            weights = 1 + recipe.creature_loss_weight * torch.from_numpy(
                data.creature_shares[size][picks].astype(np.float32))
            loss = (error.mean(dim=2) * weights).sum() / weights.sum()
        else:
            loss = error.mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        with torch.no_grad():
            decay = min(recipe.ema_decay, (1 + self.step) / (10 + self.step))
            for average, current in zip(self.ema.parameters(), self.model.parameters()):
                average.lerp_(current, 1 - decay)
        self.step += 1
        return loss.item()

    def run(self, report: Callable[[str], None], checkpoint: Callable[[dict], None] | None = None) -> None:
        started, first, losses = time.perf_counter(), self.step, []
        while self.step < self.recipe.steps:
            losses.append(self.train_step())
            if self.step % 100 == 0 or self.step == self.recipe.steps:
                rate = (time.perf_counter() - started) / (self.step - first)
                report(f"transformer step {self.step}/{self.recipe.steps}: loss {np.mean(losses[-100:]):.4f}, "
                       f"{rate:.2f} s/step, ETA {rate * (self.recipe.steps - self.step) / 60:.0f} min")
            if checkpoint and (self.step % 250 == 0 or self.step == self.recipe.steps):
                checkpoint(self.state())
