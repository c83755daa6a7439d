"""The micro model's tokenizer and Qwen3 text encoder, and caption embeddings exactly as mflux makes them.

The text encoder keeps its seeded random weights (the transformer learns to read it): a 28-layer
narrow Qwen3, because FLUX.2's prompt encoder stacks hidden states 9, 18 and 27. Embeddings for
pretraining come from the transformers twin of mflux's ``Qwen3TextEncoder`` with mflux's own
tokenization (chat template, padding to 512); a test checks both give the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charlora.models.micro.recipe import TextRecipe
from charlora.models.tokenizers import qwen_tokenizer
from charlora.world import vocabulary

MAX_SEQUENCE_LENGTH = 512  # mflux pads every FLUX.2 prompt to 512 tokens
HIDDEN_STATE_LAYERS = (9, 18, 27)
NEGATIVE_PROMPT = " "  # what mflux encodes as the unconditional prompt for classifier-free guidance

# Words beyond the world's own, so that story and evaluation prompts tokenize into whole words too.
EXTRA_WORDS = """brmbl and the of to is at by from near walking running looking waving smiling happy sad
surprised calm sleeping reading eating flying floating morning evening day light dark bright big little
tree house road hill sea sky cloud sun moon star rain snow city room beach forest meadow desert water
close-up portrait full body view front side back wide shot scene story friend friends together alone"""


def build_tokenizer(recipe: TextRecipe):
    return qwen_tokenizer([" ".join(vocabulary()), EXTRA_WORDS], recipe.vocab_size)


def build_text_encoder(recipe: TextRecipe, vocab_size: int):
    """A seeded random ``Qwen3ForCausalLM`` (tied embeddings: the saved keys are mflux's ``model.*``) whose token
    embeddings are large next to what its random layers add (``recipe.embedding_std``)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(recipe.seed)
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=recipe.hidden_size, num_hidden_layers=recipe.num_hidden_layers,
                         num_attention_heads=recipe.num_attention_heads, num_key_value_heads=1, head_dim=recipe.head_dim,
                         intermediate_size=recipe.intermediate_size, max_position_embeddings=1024,
                         tie_word_embeddings=True)
    model = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, recipe.embedding_std)
    return model


def chat_inputs(tokenizer, prompts: list[str]):
    """Token ids and mask as mflux's ``LanguageTokenizer`` makes them for FLUX.2 Klein."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True,
                                           enable_thinking=False) for p in prompts]
    return tokenizer(texts, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True, return_tensors="pt")


def embed_prompts(tokenizer, text_encoder, prompts: list[str], batch: int = 32) -> np.ndarray:
    """FLUX.2 prompt embeddings (N, 512, 3 x hidden) in float16, as mflux's Flux2PromptEncoder computes them."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch):
            inputs = chat_inputs(tokenizer, prompts[start : start + batch])
            hidden = text_encoder.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                                        output_hidden_states=True).hidden_states
            rows.append(torch.cat([hidden[i] for i in HIDDEN_STATE_LAYERS], dim=-1).to(torch.float16).numpy())
    return np.concatenate(rows)


def save(tokenizer, text_encoder, model_dir: Path) -> None:
    text_encoder.save_pretrained(model_dir / "text_encoder")
    tokenizer.save_pretrained(model_dir / "tokenizer")
