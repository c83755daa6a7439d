"""evaluate: held-out validation loss per checkpoint, and the best checkpoint.

The validation loss is mflux's training objective (flow matching: ``mean((clean + predicted -
noise)^2)``) on the held-out images from merge, at fixed timesteps and fixed noise, with each
checkpoint's LoRA and without any LoRA. Everything is seeded, so two runs give the same numbers.
Images are then generated for the checkpoints with the lowest held-out loss (a shortlist), and the
best checkpoint is the one with the highest score over CLIP image metrics (see :func:`score`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlora.errors import PipelineError
from charlora.images import IMAGE_SUFFIXES
from charlora.params import EvaluateParams, TinyModelParams


@dataclass
class HeldoutItem:
    name: str
    clean_latents: Any
    cond: Any
    width: int
    height: int


def spread_timesteps(low: int, high: int, count: int) -> list[int]:
    """``count`` timestep indices spread evenly over ``[low, high)`` (fewer if the range is smaller)."""
    span = high - low
    if span <= count:
        return list(range(low, high))
    return sorted({low + (2 * i + 1) * span // (2 * count) for i in range(count)})


def heldout_pairs(heldout_dir: Path) -> list[tuple[Path, str]]:
    pairs = []
    for image in sorted(p for p in heldout_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        pairs.append((image, image.with_suffix(".txt").read_text(encoding="utf-8").strip()))
    if not pairs:
        raise PipelineError(f"no held-out images in {heldout_dir}. Set merge.heldout_fraction above 0 and run dvc repro.")
    return pairs


class ValidationLoss:
    """Loads the base model through mflux's FLUX.2 training adapter and scores adapters on held-out data."""

    def __init__(self, training_config: dict, tiny: TinyModelParams | None, params: EvaluateParams):
        self.training_config = training_config
        self.tiny = tiny
        self.params = params
        loop = training_config["training_loop"]
        self.timesteps = spread_timesteps(int(loop["timestep_low"]), int(loop["timestep_high"]), params.num_timesteps)
        self.items: list[HeldoutItem] | None = None

    def _adapter(self, lora: Path | None):
        from mflux.models.common.config.model_config import ModelConfig
        from mflux.models.flux2.training_adapter.flux2_training_adapter import Flux2TrainingAdapter

        from charlora.base_models import TINY

        if self.training_config["model"] == TINY:
            from charlora.tiny_model import register_tiny_model

            model_config = register_tiny_model(self.tiny)
        else:
            model_config = ModelConfig.from_name(self.training_config["model"])
        adapter = Flux2TrainingAdapter(model_config=model_config, quantize=self.training_config["quantize"],
                                       model_path=self.training_config["model_path"])
        if lora is not None:
            adapter.load_lora_adapter(path=lora)
        return adapter, model_config

    def _encode(self, adapter, pairs: list[tuple[Path, str]]) -> list[HeldoutItem]:
        from mflux.models.common.training.utils import TrainingUtil
        from PIL import Image

        items = []
        for index, (image, prompt) in enumerate(pairs):
            with Image.open(image) as opened:
                width, height = TrainingUtil.resolve_dimensions(
                    width=opened.width, height=opened.height, max_resolution=self.training_config["max_resolution"])
            clean, cond = adapter.encode_data(data_id=index, image_path=image, prompt=prompt, width=width, height=height)
            items.append(HeldoutItem(image.stem, clean, cond, width, height))
        return items

    def score(self, pairs: list[tuple[Path, str]], lora: Path | None) -> float:
        """Mean held-out loss with ``lora`` (None: the base model alone)."""
        import mlx.core as mx
        from mflux.models.common.config.config import Config
        from mflux.models.common.latent_creator.latent_creator import LatentCreator

        adapter, model_config = self._adapter(lora)
        if self.items is None:
            # The LoRA only touches the transformer: latents and prompt embeddings are encoded once.
            self.items = self._encode(adapter, pairs)
        losses = []
        for i, item in enumerate(self.items):
            config = Config(model_config=model_config, num_inference_steps=int(self.training_config["steps"]),
                            width=item.width, height=item.height, guidance=float(self.training_config["guidance"]),
                            scheduler="flow_match_euler_discrete")
            sigmas = config.scheduler.sigmas
            for j, t in enumerate(self.timesteps):
                noise = mx.random.normal(shape=item.clean_latents.shape, dtype=config.precision,
                                         key=mx.random.key(self.params.noise_seed + 1000 * i + j))
                latents_t = LatentCreator.add_noise_by_interpolation(clean=item.clean_latents, noise=noise, sigma=sigmas[t])
                predicted = adapter.predict_noise(t=t, latents_t=latents_t, sigmas=sigmas, cond=item.cond, config=config)
                losses.append(float((item.clean_latents + predicted - noise).astype(mx.float32).square().mean()))
        return sum(losses) / len(losses)


# --- Images: generation with each checkpoint's LoRA, CLIP metrics, contact sheets -------------------


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    text: str  # with the trigger word
    without_trigger: str


def load_prompts(path: Path, trigger: str, max_prompts: int | None) -> list[EvalPrompt]:
    """Prompts from ``validation/test_prompts.json``; each must contain ``{trigger}``."""
    import json

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path} is not a prompts file ({error}); it needs {{\"prompts\": [{{\"id\", \"prompt\"}}]}}.")
    prompts = []
    for row in rows[:max_prompts]:
        if "{trigger}" not in row["prompt"]:
            raise PipelineError(f"{path}: prompt '{row['id']}' has no {{trigger}}; every evaluation prompt names the character.")
        without = row["prompt"].replace("{trigger},", "").replace("{trigger}", "").strip(" ,")
        prompts.append(EvalPrompt(row["id"], row["prompt"].replace("{trigger}", trigger), without))
    return prompts


class LatentRecorder:
    """mflux after-loop callback: keeps the final latents of the last generation (float32)."""

    def __init__(self):
        self.latents = None

    def call_after_loop(self, seed, prompt, latents, config) -> None:  # noqa: ARG002 (mflux's callback signature)
        import mlx.core as mx
        import numpy as np

        self.latents = np.array(latents.astype(mx.float32))


@dataclass
class Sample:
    prompt_id: str
    prompt: str
    image: Any  # PIL image
    latents: Any  # numpy float32 final latents


def generate(model, prompts: list[tuple[str, str]], seed: int, steps: int, guidance: float, resolution: int,
             progress=None) -> list[Sample]:
    """One image per (id, prompt), seed ``seed + index``: the same noise for the same prompt index in every run."""
    recorder = LatentRecorder()
    model.callbacks.register(recorder)
    samples = []
    for index, (prompt_id, prompt) in enumerate(prompts):
        image = model.generate_image(seed=seed + index, prompt=prompt, num_inference_steps=steps, width=resolution,
                                     height=resolution, guidance=guidance)
        samples.append(Sample(prompt_id, prompt, image.image, recorder.latents))
        if progress:
            progress(prompt_id)
    return samples


class ClipScorer:
    """Image and text embeddings from a CLIP model through transformers (L2-normalised numpy arrays)."""

    def __init__(self, model_id: str):
        from transformers import CLIPModel, CLIPProcessor

        try:
            self.model = CLIPModel.from_pretrained(model_id).eval()
            self.processor = CLIPProcessor.from_pretrained(model_id)
        except OSError as error:
            raise PipelineError(f"could not load the CLIP model '{model_id}' for evaluate ({error}). Check "
                                "evaluate.clip_model (a Hugging Face id or a local folder).") from error

    @staticmethod
    def _normalised(output) -> Any:
        features = getattr(output, "pooler_output", output)
        features = features / features.norm(dim=-1, keepdim=True)
        return features.numpy()

    def images(self, images: list) -> Any:
        import torch

        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        with torch.inference_mode():
            return self._normalised(self.model.get_image_features(pixel_values=inputs["pixel_values"]))

    def texts(self, texts: list[str]) -> Any:
        import torch

        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            return self._normalised(self.model.get_text_features(input_ids=inputs["input_ids"],
                                                                 attention_mask=inputs["attention_mask"]))


def identity(image_embeddings, reference_embeddings) -> float:
    """Mean cosine similarity of generated images to the training images."""
    return float((image_embeddings @ reference_embeddings.T).mean())


def prompt_fit(image_embeddings, text_embeddings) -> float:
    """Mean cosine similarity of each image to its own prompt."""
    return float((image_embeddings * text_embeddings).sum(axis=1).mean())


def diversity(image_embeddings) -> float:
    """1 - mean pairwise cosine similarity between the images (0 for fewer than 2): low means collapse."""
    count = len(image_embeddings)
    if count < 2:
        return 0.0
    similarity = image_embeddings @ image_embeddings.T
    return float(1.0 - (similarity.sum() - count) / (count * (count - 1)))


def score(metrics: dict[str, float], weights) -> float:
    """The number the best checkpoint is picked by (higher is better)."""
    return (weights.identity * metrics["identity"] + weights.prompt_fit * metrics["prompt_fit"]
            - weights.leakage * metrics["leakage"] + weights.diversity * metrics["diversity"])


def shortlist(losses: dict[int, float], count: int | None) -> list[int]:
    """Steps of the ``count`` checkpoints with the lowest held-out loss (earlier step on a tie), in step order."""
    ranked = sorted(losses, key=lambda step: (losses[step], step))
    return sorted(ranked[:count])


def pick_best(rows: list[dict]) -> int:
    """The best checkpoint's step from rows with "step", "val_loss" and (if it got images) "score".

    Highest score wins (lower held-out loss, then the earlier step, on a tie); with no scores at
    all, the lowest held-out loss.
    """
    if not rows:
        raise PipelineError("no checkpoints to evaluate. Run training first: dvc repro train extract.")
    scored = [row for row in rows if "score" in row]
    if scored:
        return max(scored, key=lambda row: (row["score"], -row["val_loss"], -row["step"]))["step"]
    return min(rows, key=lambda row: (row["val_loss"], row["step"]))["step"]


def contact_sheet(rows: list[tuple[str, list[Sample]]], cell: int = 160) -> Any:
    """A grid: one row per (label, samples), each image with a short prompt label under it."""
    from PIL import Image, ImageDraw

    columns = max(len(samples) for _, samples in rows)
    label_width, text_height = 110, 28
    sheet = Image.new("RGB", (label_width + columns * cell, len(rows) * (cell + text_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, (label, samples) in enumerate(rows):
        top = row * (cell + text_height)
        draw.text((6, top + cell // 2), label[:16], fill=(0, 0, 0))
        for column, sample in enumerate(samples):
            left = label_width + column * cell
            sheet.paste(sample.image.convert("RGB").resize((cell, cell)), (left, top))
            draw.text((left + 4, top + cell + 4), sample.prompt[:26], fill=(40, 40, 40))
    return sheet


def run_evaluation(params, training_config: dict, checkpoints: list[dict], heldout_dir: Path, train_dir: Path,
                   samples_dir: Path, log) -> dict:
    """Score every checkpoint (held-out loss), then generate and score images for the shortlist.

    ``checkpoints`` are extract's entries (``step``, ``file``). Images and contact sheets go to
    ``samples_dir``; the returned dict is ``metrics/eval.json``.
    """
    import time

    from charlora.base_models import get_base_model
    from charlora.generation import load_flux2

    evaluate = params.evaluate
    spec = get_base_model(training_config["model"])
    sampling = spec.sampling
    steps, guidance = evaluate.steps or sampling.steps, evaluate.guidance or sampling.guidance
    resolution = evaluate.resolution or sampling.resolution
    pairs = heldout_pairs(heldout_dir)

    scorer = ValidationLoss(training_config, params.tiny_model, evaluate)
    log(f"held-out loss on {len(pairs)} image(s) at timesteps {scorer.timesteps}")
    base_loss = scorer.score(pairs, None)
    log(f"base model (no LoRA): {base_loss:.5f}")
    losses: dict[int, float] = {}
    for index, entry in enumerate(checkpoints, 1):
        losses[entry["step"]] = scorer.score(pairs, Path(entry["file"]))
        log(f"[{index}/{len(checkpoints)}] step {entry['step']}: {losses[entry['step']]:.5f} "
            f"({losses[entry['step']] - base_loss:+.5f} vs base)")

    prompts = load_prompts(Path(evaluate.prompts_file), params.character.trigger,
                           evaluate.max_prompts or sampling.max_prompts)
    controls = prompts[: evaluate.control_prompts]
    shortlisted = [e for e in checkpoints
                   if e["step"] in shortlist(losses, evaluate.image_checkpoints or sampling.image_checkpoints)]
    total = 2 * len(controls) + len(shortlisted) * (len(prompts) + len(controls))
    done, started = 0, time.perf_counter()

    def progress(prompt_id: str) -> None:
        nonlocal done
        done += 1
        per_image = (time.perf_counter() - started) / done
        log(f"image {done} of {total} ({prompt_id}), {per_image:.1f} s/image")

    clip = ClipScorer(evaluate.clip_model or sampling.clip_model)
    reference = clip.images([_open(p) for p in sorted(train_dir.glob("*.png"))])
    model_path = training_config["model_path"]

    base_model = load_flux2(training_config["model"], model_path, params.tiny_model)
    base_with = generate(base_model, [(p.id, p.text) for p in controls], evaluate.seed, steps, guidance, resolution, progress)
    base_without = generate(base_model, [(p.id, p.without_trigger) for p in controls], evaluate.seed, steps, guidance,
                            resolution, progress)
    del base_model
    base_leak_identity = identity(clip.images([s.image for s in base_without]), reference)

    rows, results = [], {}
    for entry in shortlisted:
        model = load_flux2(training_config["model"], model_path, params.tiny_model, lora_paths=[Path(entry["file"])],
                           lora_scales=[evaluate.lora_scale])
        with_trigger = generate(model, [(p.id, p.text) for p in prompts], evaluate.seed, steps, guidance, resolution, progress)
        without = generate(model, [(p.id, p.without_trigger) for p in controls], evaluate.seed, steps, guidance,
                           resolution, progress)
        del model
        embeddings = clip.images([s.image for s in with_trigger])
        metrics = {
            "identity": identity(embeddings, reference),
            "prompt_fit": prompt_fit(embeddings, clip.texts([p.text for p in prompts])),
            "leakage": max(0.0, identity(clip.images([s.image for s in without]), reference) - base_leak_identity),
            "diversity": diversity(embeddings),
            # How far the LoRA moves the sampler's final latents from the base model's (same seed and prompt).
            "latent_shift": float(sum(abs(s.latents - b.latents).mean() for s, b in zip(with_trigger, base_with))
                                  / len(base_with)),
        }
        metrics["score"] = score(metrics, evaluate.score_weights)
        results[entry["step"]] = {**metrics, "samples": with_trigger + without}
        step_dir = samples_dir / f"step{entry['step']:06d}"
        step_dir.mkdir(parents=True)
        for sample in with_trigger:
            sample.image.save(step_dir / f"{sample.prompt_id}.png")
        for sample in without:
            sample.image.save(step_dir / f"{sample.prompt_id}_no_trigger.png")
        contact_sheet([(f"step {entry['step']}", with_trigger), ("no trigger", without)]).save(
            samples_dir / f"contact_step{entry['step']:06d}.png")
        log(f"step {entry['step']}: identity {metrics['identity']:.4f}, prompt fit {metrics['prompt_fit']:.4f}, "
            f"leakage {metrics['leakage']:.4f}, diversity {metrics['diversity']:.4f}, score {metrics['score']:.4f}")

    table = [{"step": e["step"], "val_loss": round(losses[e["step"]], 6),
              **{k: round(v, 6) for k, v in results.get(e["step"], {}).items() if k != "samples"}} for e in checkpoints]
    best_step = pick_best(table)
    best = results[best_step]
    contact_sheet([("base", base_with), (f"LoRA step {best_step}", best["samples"][: len(controls)])]).save(
        samples_dir / "comparison.png")
    return {
        "best_step": best_step,
        "best_file": next(e["file"] for e in checkpoints if e["step"] == best_step),
        "best_score": round(best["score"], 6),
        **{k: round(best[k], 6) for k in ("identity", "prompt_fit", "leakage", "diversity", "latent_shift")},
        "best_val_loss": round(losses[best_step], 6),
        "base_val_loss": round(base_loss, 6),
        "final_val_loss": round(losses[checkpoints[-1]["step"]], 6),
        "selection": "held-out loss shortlists evaluate.image_checkpoints checkpoints; the highest score wins",
        "sampling": {"steps": steps, "guidance": guidance, "resolution": resolution, "lora_scale": evaluate.lora_scale},
        "heldout_images": len(pairs),
        "timesteps": scorer.timesteps,
        "checkpoints": table,
    }


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
