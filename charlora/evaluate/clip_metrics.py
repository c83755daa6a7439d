"""CLIP image metrics through transformers: cosine similarities of L2-normalised embeddings.

identity (to the training images), prompt fit (to its own prompt), diversity (between images),
and the score that picks the best checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charlora.errors import PipelineError
from charlora.progress import silenced


class ClipScorer:
    """Image and text embeddings from a CLIP model through transformers (L2-normalised numpy arrays)."""

    def __init__(self, model_id: str) -> None:
        from transformers import CLIPModel, CLIPProcessor

        try:
            with silenced():  # transformers' "Loading weights" bar
                self.model = CLIPModel.from_pretrained(model_id).eval()
                self.processor = CLIPProcessor.from_pretrained(model_id)
        except OSError as error:
            raise PipelineError(f"could not load the CLIP model '{model_id}' for evaluate ({error}). Check "
                                "evaluate.clip_model (a Hugging Face id or a local folder).") from error

    @staticmethod
    def _normalised(output: Any) -> Any:
        features = getattr(output, "pooler_output", output)
        features = features / features.norm(dim=-1, keepdim=True)
        return features.numpy()

    def images(self, images: list) -> Any:
        """Embeddings of PIL images, one row each."""
        import torch

        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        with torch.inference_mode():
            return self._normalised(self.model.get_image_features(pixel_values=inputs["pixel_values"]))

    def texts(self, texts: list[str]) -> Any:
        """Embeddings of texts, one row each."""
        import torch

        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            return self._normalised(self.model.get_text_features(input_ids=inputs["input_ids"],
                                                                 attention_mask=inputs["attention_mask"]))


def open_rgb(path: Path) -> Any:
    """A picture file as an RGB PIL image (the file is closed)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def identity(image_embeddings: Any, reference_embeddings: Any) -> float:
    """Mean cosine similarity of generated images to the training images."""
    return float((image_embeddings @ reference_embeddings.T).mean())


def prompt_fit(image_embeddings: Any, text_embeddings: Any) -> float:
    """Mean cosine similarity of each image to its own prompt."""
    return float((image_embeddings * text_embeddings).sum(axis=1).mean())


def diversity(image_embeddings: Any) -> float:
    """1 - mean pairwise cosine similarity between the images (0 for fewer than 2): low means collapse."""
    count = len(image_embeddings)
    if count < 2:
        return 0.0
    similarity = image_embeddings @ image_embeddings.T
    return float(1.0 - (similarity.sum() - count) / (count * (count - 1)))


def score(metrics: dict[str, float], weights: Any) -> float:
    """The number the best checkpoint is picked by (higher is better)."""
    return (weights.identity * metrics["identity"] + weights.prompt_fit * metrics["prompt_fit"]
            - weights.leakage * metrics["leakage"] + weights.diversity * metrics["diversity"])
