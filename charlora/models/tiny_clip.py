"""A tiny random-initialised CLIP (transformers ``CLIPModel`` + ``CLIPProcessor``) for offline evaluation.

Same classes and files as ``openai/clip-vit-base-patch32``, only tiny, written to a folder that
``evaluate.clip_model`` can name. Its embeddings are random projections: the identity and prompt-fit
numbers it gives run every code path but measure nothing.
"""

from __future__ import annotations

from pathlib import Path

from charlora.models.tiny import CORPUS_WORDS
from charlora.models.tokenizers import clip_tokenizer
from charlora.progress import silenced


def build_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny CLIP (model and processor) to ``out_dir``, deterministically for ``seed``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer(CORPUS_WORDS.split("\n"), 512)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    with silenced():  # transformers' "Writing model shards" bar
        model.save_pretrained(out_dir)
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir
