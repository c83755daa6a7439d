"""Pretrain the micro CLIP (transformers ``CLIPModel``) contrastively on world pictures and their captions.

It is what evaluate measures identity, prompt fit and leakage with when the base model is the micro
FLUX.2 Klein: it has seen the same world, so it can tell a round orange fox from a tall blue cat, a
teal scarf from a red bow, a beach from a forest. Same classes and files as
``openai/clip-vit-base-patch32``, loaded with ``CLIPModel.from_pretrained``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from charlora.models.micro.recipe import ClipRecipe
from charlora.models.micro.text import EXTRA_WORDS
from charlora.models.tokenizers import clip_tokenizer
from charlora.world import caption, iter_specs, lookalike, render, vocabulary

SIZES = ((128, 128), (128, 96), (96, 128), (128, 80), (80, 128))


def build_clip(recipe: ClipRecipe):
    """(model, processor): a seeded random tiny CLIP and its processor (whole picture resized, no crop)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer([" ".join(vocabulary()), EXTRA_WORDS], recipe.vocab_size)
    vision = {"hidden_size": recipe.hidden_size, "intermediate_size": 2 * recipe.hidden_size,
              "num_hidden_layers": recipe.layers, "num_attention_heads": recipe.heads, "image_size": recipe.image_size,
              "patch_size": recipe.patch_size}
    text = {**{k: v for k, v in vision.items() if k not in ("image_size", "patch_size")}, "vocab_size": len(tokenizer),
            "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(recipe.seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=recipe.projection_dim))
    # The whole picture, squeezed to a square: a creature at the left edge stays in view.
    images = CLIPImageProcessor(size={"height": recipe.image_size, "width": recipe.image_size}, do_center_crop=False)
    return model, CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def batches(seed: int, batch: int, lookalikes: int):
    """Endless (pictures, captions) batches of world pictures at mixed sizes, in groups of ``lookalikes``: a world
    picture and copies of it whose creature differs in one trait. Random pictures differ in colour and scene, which
    is all a contrastive CLIP needs to match them; the look-alikes make it see species, accessory, mark and body."""
    import random

    rng = random.Random(seed)
    specs = iter_specs(seed)
    while True:
        chosen = []
        while len(chosen) < batch:
            group = [next(specs)]
            while len(group) < lookalikes:
                other = replace(group[0], creature=lookalike(group[0].creature, rng))
                if other not in group:
                    group.append(other)
            chosen += group
        chosen = chosen[:batch]
        yield [render(spec, SIZES[rng.randrange(len(SIZES))]) for spec in chosen], [caption(spec) for spec in chosen]


def train_clip(model, processor, recipe: ClipRecipe, report: Callable[[str], None]) -> None:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / recipe.steps))))
    data = batches(recipe.seed, recipe.batch, recipe.lookalikes)
    model.train()
    started, losses = time.perf_counter(), []
    for step in range(1, recipe.steps + 1):
        pictures, texts = next(data)
        inputs = processor(text=texts, images=pictures, return_tensors="pt", padding=True)
        loss = model(**inputs, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == recipe.steps:
            rate = (time.perf_counter() - started) / step
            report(f"clip step {step}/{recipe.steps}: loss {np.mean(losses[-100:]):.4f}, {rate:.2f} s/step, "
                   f"ETA {rate * (recipe.steps - step) / 60:.0f} min")
    model.eval()
