"""Pretrain the micro FLUX.2 VAE on the cartoon world (torch, diffusers' AutoencoderKLFlux2).

mflux's ``Flux2Encoder``/``Flux2Decoder`` are the mlx twins of diffusers' AutoencoderKLFlux2, and
mflux loads its ``vae/`` folder (diffusers keys) the way it loads the real model's. Training runs in
torch because mlx's CPU convolutions are about 50x slower here. After training, the latent
normalisation statistics (``bn``: mean and variance of 2x2-patchified latents) are measured on
world pictures: mflux normalises every latent with them before the transformer sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from charlora.models.micro.recipe import VaeRecipe
from charlora.models.micro.world_data import psnr, random_crops, world_items


def build_vae(recipe: VaeRecipe):
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(recipe.seed)
    return AutoencoderKLFlux2(block_out_channels=recipe.block_out_channels,
                              decoder_block_out_channels=recipe.decoder_block_out_channels,
                              layers_per_block=recipe.layers_per_block, norm_num_groups=recipe.norm_num_groups,
                              latent_channels=32)


def train_vae(vae, recipe: VaeRecipe, report: Callable[[str], None], decoder_only: bool = False,
              resume: dict | None = None, checkpoint: Callable[[dict], None] | None = None) -> None:
    """Train on random crops of world pictures: the whole VAE, or (``decoder_only``) the decoder for a frozen encoder.

    The decoder-only phase sharpens reconstructions without moving the latent space, so the transformer
    can train on the frozen encoder's latents at the same time. ``resume``/``checkpoint``: the state
    dict of :func:`_state` (model, optimizer, schedule, noise generator, step).
    """
    import torch

    name, steps = ("decoder", recipe.decoder_steps) if decoder_only else ("vae", recipe.steps)
    if steps == 0:
        return
    trained = [p for n, p in vae.named_parameters() if not decoder_only or n.startswith(("decoder.", "post_quant_conv."))]
    for parameter in vae.parameters():
        parameter.requires_grad_(any(parameter is p for p in trained))
    optimizer = torch.optim.AdamW(trained, lr=recipe.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps)))
    generator = torch.Generator().manual_seed(recipe.seed + int(decoder_only))
    start = 0
    if resume:
        vae.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        generator.set_state(resume["generator"])
        start = resume["step"]
        report(f"{name}: resuming at step {start}")
    batches = random_crops(recipe.seed + int(decoder_only), recipe.crop, recipe.batch)
    for _ in range(start):  # the same data order after a resume
        next(batches)
    vae.train()
    started, losses = time.perf_counter(), []
    for step in range(start + 1, steps + 1):
        pictures = torch.from_numpy(next(batches))
        with torch.set_grad_enabled(not decoder_only):
            mean = vae.encode(pictures).latent_dist.mode()
        # Noise only while the latent space forms; the decoder alone learns the exact latents it will be given.
        latents = mean if decoder_only else mean + recipe.latent_noise * torch.randn(mean.shape, generator=generator)
        error = vae.decode(latents).sample - pictures
        loss = error.abs().mean() + error.pow(2).mean()
        if not decoder_only:
            loss = loss + recipe.latent_l2 * mean.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            rate = (time.perf_counter() - started) / (step - start)
            report(f"{name} step {step}/{steps}: loss {np.mean(losses[-100:]):.4f}, {rate:.2f} s/step, "
                   f"ETA {rate * (steps - step) / 60:.0f} min")
        if checkpoint and (step % 250 == 0 or step == steps):
            checkpoint({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "generator": generator.get_state(), "step": step})
    vae.eval()


def patchify(latents):
    """(B, 32, H, W) -> (B, 128, H/2, W/2): mflux's Flux2LatentCreator.patchify_latents in torch."""
    batch, channels, height, width = latents.shape
    latents = latents.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return latents.reshape(batch, channels * 4, height // 2, width // 2)


def measure_latent_stats(vae, seed: int, count: int) -> None:
    """Set ``vae.bn`` running mean/var from ``count`` world pictures' patchified latents."""
    import torch

    total, square, pixels = torch.zeros(128, dtype=torch.float64), torch.zeros(128, dtype=torch.float64), 0
    items = world_items(seed)
    with torch.inference_mode():
        for _ in range(count):
            picture, _, _ = next(items)
            packed = patchify(vae.encode(torch.from_numpy(picture[None])).latent_dist.mode()).double()
            total += packed.sum(dim=(0, 2, 3))
            square += packed.pow(2).sum(dim=(0, 2, 3))
            pixels += packed.shape[2] * packed.shape[3]
        mean = total / pixels
        vae.bn.running_mean.copy_(mean.float())
        vae.bn.running_var.copy_((square / pixels - mean.pow(2)).float())


def heldout_psnr(decode_roundtrip: Callable[[np.ndarray], np.ndarray], seed: int, count: int) -> float:
    """Mean PSNR (dB) of world pictures never seen in training, through ``decode_roundtrip`` (encode + decode)."""
    items = world_items(seed)
    return float(np.mean([psnr(picture, decode_roundtrip(picture)) for picture, _, _ in (next(items) for _ in range(count))]))


def torch_roundtrip(vae) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def roundtrip(picture: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            latents = vae.encode(torch.from_numpy(picture[None])).latent_dist.mode()
            return vae.decode(latents).sample[0].numpy()

    return roundtrip
