"""caption: one caption per image, trigger word first.

A user caption (``<image>.txt`` or ``metadata.jsonl`` beside the raw image) wins. Other images
are captioned with Florence-2 through transformers. Machine captions are cached per image by the
sha256 of the image and of the captioner params, so adding one image captions only that image.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from charlora.errors import PipelineError
from charlora.fileio import read_json, sha256_file, sha256_json, write_json
from charlora.params import CaptionParams
from charlora.progress import Progress, silenced

# Openers that describe the picture rather than its content; they waste tokens in training captions.
_BOILERPLATE = re.compile(
    r"^(?:(?:the|this|in the|in this)\s+(?:image|picture|photo(?:graph)?|illustration|drawing|artwork)\s*"
    r"(?:shows|depicts|features|is|contains|displays|presents|of)?\s*[,:]?\s*"
    r"|(?:an?\s+)?(?:image|picture|photo(?:graph)?)\s+of\s+)",
    re.IGNORECASE,
)


def normalize_caption(text: str, trigger: str, max_chars: int) -> str:
    """Clean a caption and put the trigger word first: ``"<trigger>, <caption>"``.

    Removes boilerplate openers ("The image shows ..."), Florence-2 task tokens and repeated
    whitespace, cuts at a sentence or word boundary within ``max_chars``, and drops a trigger
    word the caption already starts with so it is never doubled.
    """
    text = re.sub(r"</?s>|<pad>|<[A-Z_]+>", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if text.lower().startswith(trigger.lower()):
        text = text[len(trigger):].lstrip(" ,:;-")
    while True:
        stripped = _BOILERPLATE.sub("", text, count=1).strip()
        if stripped == text:
            break
        text = stripped
    if len(text) > max_chars:
        cut = text[:max_chars]
        sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        text = cut[: sentence_end + 1] if sentence_end >= max_chars // 2 else cut.rsplit(" ", 1)[0]
    text = text.strip(" ,;")
    first_word = text.split(" ", 1)[0]
    # "A fox" -> "a fox" after the trigger, but acronyms ("BBC") keep their case.
    if first_word[:1].isupper() and not (len(first_word) > 1 and first_word.isupper()):
        text = text[0].lower() + text[1:]
    return f"{trigger}, {text}" if text else trigger


class Captioner(Protocol):
    """Anything that turns an image file into a raw caption."""

    def caption(self, image_path: Path) -> str: ...


def resolve_device(device: str) -> str:
    """``auto`` picks cuda, then mps, then cpu."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Florence2Captioner:
    """Florence-2 through transformers' built-in support (no ``trust_remote_code``).

    ``params.model`` is a Hugging Face model id or a local folder with the model and processor.
    """

    def __init__(self, params: CaptionParams):
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.params = params
        self.device = resolve_device(params.device)
        dtype = torch.float16 if self.device in ("cuda", "mps") else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(params.model)
            self.model = Florence2ForConditionalGeneration.from_pretrained(params.model, dtype=dtype)
        except OSError as error:
            raise PipelineError(
                f"could not load the captioner model '{params.model}' ({error}). Check caption.model "
                "(a Hugging Face id such as florence-community/Florence-2-base, or a local folder); "
                "without network access, write captions as <image>.txt beside the raw images instead."
            ) from error
        self.model.to(self.device).eval()
        self.dtype = dtype

    def caption(self, image_path: Path) -> str:
        import torch
        from PIL import Image

        with Image.open(image_path) as image:
            inputs = self.processor(text=self.params.task, images=image.convert("RGB"), return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in inputs.items()}
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs, max_new_tokens=self.params.max_new_tokens, num_beams=self.params.num_beams, do_sample=False
            )
        text = self.processor.batch_decode(generated, skip_special_tokens=False)[0]
        parsed = self.processor.post_process_generation(text, task=self.params.task, image_size=(1, 1))
        return str(parsed.get(self.params.task, text))


@dataclass(frozen=True)
class CaptionRecord:
    """One written caption and where it came from."""

    name: str
    source: str  # "user", "cache" or the captioner name
    caption: str


def cache_key(image_path: Path, params: CaptionParams) -> str:
    """Key of a machine caption: the image bytes and every param that changes the raw caption."""
    settings = {k: v for k, v in asdict(params).items() if k not in ("max_chars", "device")}
    return sha256_json({"image": sha256_file(image_path), "captioner": settings})


def caption_images(processed_dir: Path, out_dir: Path, cache_dir: Path, params: CaptionParams, trigger: str,
                   captioner_factory: Callable[[CaptionParams], Captioner] | None = None) -> list[CaptionRecord]:
    """Write ``<name>.txt`` for every image in ``processed_dir``'s manifest into ``out_dir``.

    ``captioner_factory(params)`` is called at most once, and only when an image needs a machine
    caption that is not in ``cache_dir``; loading the model is reported apart from the per-image rate.
    """
    manifest = read_json(processed_dir / "manifest.json")
    factory = captioner_factory or Florence2Captioner
    captioner: Captioner | None = None
    records: list[CaptionRecord] = []
    cache_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress("caption", len(manifest), "image")
    for entry in manifest:
        name = entry["name"]
        image_path = processed_dir / f"{name}.png"
        if entry.get("user_caption"):
            raw, source = entry["user_caption"], "user"
        else:
            key = cache_key(image_path, params)
            cached = cache_dir / f"{key}.json"
            if cached.exists():
                raw, source = read_json(cached)["caption"], "cache"
            else:
                if params.captioner == "none":
                    raise PipelineError(
                        f"{entry['source']} has no caption and caption.captioner is 'none'. Write "
                        f"data/raw/{Path(entry['source']).stem}.txt or set caption.captioner: florence2."
                    )
                if captioner is None:
                    with progress.warmup(f"loading the captioner {params.model}"), silenced():
                        captioner = factory(params)
                with silenced():  # transformers' own bars and notices
                    raw, source = captioner.caption(image_path), params.captioner
                write_json(cached, {"caption": raw, "image": entry["source"], "model": params.model})
        caption = normalize_caption(raw, trigger, params.max_chars)
        (out_dir / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
        records.append(CaptionRecord(name, source, caption))
        progress.advance(f"{name} ({source})")
    return records
