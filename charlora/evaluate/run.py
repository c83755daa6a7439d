"""evaluate: held-out validation loss per checkpoint, and the best checkpoint.

The held-out loss (:mod:`charlora.evaluate.heldout`) scores every checkpoint and the base model.
Images are then generated (:mod:`charlora.evaluate.sampling`) for the checkpoints with the lowest
held-out loss (a shortlist), measured with CLIP (:mod:`charlora.evaluate.clip_metrics`), and the
best checkpoint is the one with the highest score. One progress display: model loading is timed
apart from the per-image rate, and mflux's own bars and banners are silenced.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from charlora.data.prior import is_prior, without_trigger
from charlora.errors import PipelineError
from charlora.evaluate.base_samples import BaseSampleCache
from charlora.evaluate.clip_metrics import ClipScorer, diversity, identity, open_rgb, prompt_fit, score
from charlora.evaluate.heldout import ValidationLoss, heldout_pairs
from charlora.evaluate.prompts import load_prompts
from charlora.evaluate.sampling import generate
from charlora.evaluate.settings import resolve_sampling
from charlora.evaluate.sheets import contact_sheet
from charlora.models.loading import load_flux2
from charlora.models.registry import get_base_model
from charlora.params import Params
from charlora.progress import Progress


def shortlist(losses: dict[int, float], count: int | None) -> list[int]:
    """Steps of the ``count`` checkpoints with the lowest held-out loss (earlier step on a tie), and the first
    checkpoint, in step order. The first is always scored: the baseline a better checkpoint has to beat."""
    ranked = sorted(losses, key=lambda step: (losses[step], step))
    return sorted(set(ranked if count is None else ranked[:count]) | {min(losses)})


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


def trigger_binding(loss: dict[str, float], base: dict[str, float]) -> float:
    """How much more the trigger word lowers the held-out loss with the LoRA than without it.

    ``loss`` and ``base`` are held-out losses ``{"with": ..., "without": ...}`` (captions with and without the
    trigger word) with the LoRA and of the base model. Positive: the LoRA ties the character to the trigger
    word. Near 0: it draws the same with or without the word, and will show the character uninvited.
    """
    return (loss["without"] - loss["with"]) - (base["without"] - base["with"])


def run_evaluation(params: Params, training_config: dict, checkpoints: list[dict], heldout_dir: Path, train_dir: Path,
                   samples_dir: Path, best_file: Path, base_cache_dir: Path, base_model_identity: str) -> dict:
    """Score every checkpoint (held-out loss), then generate and score images for the shortlist.

    ``checkpoints`` are extract's entries (``step``, ``file``). Images and contact sheets go to
    ``samples_dir``, the best checkpoint's adapter is copied to ``best_file``; the returned dict is
    ``metrics/eval.json``. The base model's pictures are kept in ``base_cache_dir``
    (:class:`~charlora.evaluate.base_samples.BaseSampleCache`, by ``base_model_identity``).
    """
    evaluate = params.evaluate
    sampling = resolve_sampling(evaluate, get_base_model(training_config["model"]).sampling)
    steps, guidance, resolution = sampling.steps, sampling.guidance, sampling.resolution
    pairs = heldout_pairs(heldout_dir)

    # The same pictures without the trigger word in their captions: how much the trigger word tells the model.
    heldout_sets = {"with": pairs, "without": [(image, without_trigger(text, params.character.trigger))
                                               for image, text in pairs]}

    scorer = ValidationLoss(training_config, params.tiny_model, evaluate)
    held = Progress("evaluate", len(checkpoints), "held-out loss, checkpoint", "checkpoint")
    held.say(f"held-out loss on {len(pairs)} image(s) at timesteps {scorer.timesteps}, with and without the trigger word")
    with held.warmup(f"base model without LoRA (loading it, encoding {len(pairs)} held-out image(s))"):
        base = scorer.score_sets(heldout_sets, None)
    base_loss = base["with"]
    held.say(f"base model (no LoRA): {base_loss:.5f}")
    held.start()
    losses: dict[int, float] = {}
    bindings: dict[int, float] = {}
    for entry in checkpoints:
        step = entry["step"]
        loss = scorer.score_sets(heldout_sets, Path(entry["file"]))
        losses[step] = loss["with"]
        bindings[step] = trigger_binding(loss, base)
        held.advance(f"step {step}: {loss['with']:.5f} ({loss['with'] - base_loss:+.5f} vs base), "
                     f"trigger binding {bindings[step]:+.5f}")

    prompts = load_prompts(Path(sampling.prompts_file), params.character.trigger, sampling.max_prompts)
    controls = prompts[: evaluate.control_prompts]
    chosen = shortlist(losses, sampling.image_checkpoints)
    shortlisted = [e for e in checkpoints if e["step"] in chosen]
    # The base model gets the same prompts and seeds: what the LoRA adds is measured against it.
    base_jobs = {"base": [(p.id, p.text) for p in prompts], "base, no trigger": [(p.id, p.without_trigger) for p in controls]}
    model_path = training_config["model_path"]
    # Keyed by the model evaluate loads (the training config's) as well as the params' identity: a stage run
    # by hand after base_model changed, before train reran, never files one model's pictures under another's.
    base_cache = BaseSampleCache(base_cache_dir, f"{base_model_identity} as {training_config['model']} from {model_path}",
                                 steps, guidance, resolution)
    base_samples = {label: base_cache.load(jobs, evaluate.seed) for label, jobs in base_jobs.items()}
    to_draw = {label: jobs for label, jobs in base_jobs.items() if base_samples[label] is None}
    images = Progress("evaluate", sum(map(len, to_draw.values())) + len(shortlisted) * (len(prompts) + len(controls)),
                      "image")
    with images.warmup(f"loading CLIP {sampling.clip_model}"):
        clip = ClipScorer(sampling.clip_model)
        reference = clip.images([open_rgb(p) for p in sorted(train_dir.glob("*.png")) if not is_prior(p)])

    def generate_with(model, texts, label):
        return generate(model, texts, evaluate.seed, steps, guidance, resolution,
                        lambda prompt_id: images.advance(f"{label}, {prompt_id}"))

    from_cache = sum(len(jobs) for label, jobs in base_jobs.items() if label not in to_draw)
    if from_cache:  # also when only one of the two sets is there
        images.say(f"the base model's {from_cache} pictures: from the cache ({base_cache_dir})")
    if to_draw:
        with images.warmup("loading the base model"):
            base_model = load_flux2(training_config["model"], model_path, params.tiny_model)
        for label, jobs in to_draw.items():
            base_samples[label] = generate_with(base_model, jobs, label)
            base_cache.save(base_samples[label], evaluate.seed)
        del base_model
    base_with, base_without = base_samples["base"], base_samples["base, no trigger"]
    # Prompt fit reads each prompt without its trigger word: CLIP never learned the trigger (openai's CLIP
    # neither), so with it the text embedding moves by an arbitrary amount, and a picture that does show the
    # character scores lower than one that does not. What CLIP can read is the rest: the scene and the pose.
    prompt_texts = clip.texts([p.without_trigger for p in prompts])
    base_embeddings = clip.images([s.image for s in base_with])
    base_identity = identity(base_embeddings, reference)
    base_prompt_fit = prompt_fit(base_embeddings, prompt_texts)
    base_leak_identity = identity(clip.images([s.image for s in base_without]), reference)

    results = {}
    for entry in shortlisted:
        step = entry["step"]
        with images.warmup(f"loading the model with the LoRA of step {step}"):
            model = load_flux2(training_config["model"], model_path, params.tiny_model, lora_paths=[Path(entry["file"])],
                               lora_scales=[evaluate.lora_scale])
        with_trigger = generate_with(model, [(p.id, p.text) for p in prompts], f"step {step}")
        without = generate_with(model, [(p.id, p.without_trigger) for p in controls], f"step {step}, no trigger")
        del model
        embeddings = clip.images([s.image for s in with_trigger])
        step_identity = identity(embeddings, reference)
        metrics = {
            "identity": step_identity,
            "identity_gain": step_identity - base_identity,
            "prompt_fit": prompt_fit(embeddings, prompt_texts),
            "leakage": max(0.0, identity(clip.images([s.image for s in without]), reference) - base_leak_identity),
            "diversity": diversity(embeddings),
            # How far the LoRA moves the sampler's final latents from the base model's (same seed and prompt).
            "latent_shift": float(sum(abs(s.latents - b.latents).mean() for s, b in zip(with_trigger, base_with))
                                  / len(base_with)),
        }
        metrics["score"] = score(metrics, evaluate.score_weights)
        results[step] = {**metrics, "samples": with_trigger + without}
        step_dir = samples_dir / f"step{step:06d}"
        step_dir.mkdir(parents=True)
        for sample in with_trigger:
            sample.image.save(step_dir / f"{sample.prompt_id}.png")
        for sample in without:
            sample.image.save(step_dir / f"{sample.prompt_id}_no_trigger.png")
        contact_sheet([(f"step {step}", with_trigger), ("no trigger", without)]).save(
            samples_dir / f"contact_step{step:06d}.png")
        images.say(f"step {step}: identity {metrics['identity']:.4f} ({metrics['identity_gain']:+.4f} vs the base "
                   f"model), prompt fit {metrics['prompt_fit']:.4f} (base {base_prompt_fit:.4f}), leakage "
                   f"{metrics['leakage']:.4f}, diversity {metrics['diversity']:.4f}, score {metrics['score']:.4f}")

    table = [{"step": e["step"], "val_loss": round(losses[e["step"]], 6), "trigger_binding": round(bindings[e["step"]], 6),
              **{k: round(v, 6) for k, v in results.get(e["step"], {}).items() if k != "samples"}} for e in checkpoints]
    best_step = pick_best(table)
    best = results[best_step]
    contact_sheet([("base model", base_with), (f"LoRA step {best_step}", best["samples"][: len(prompts)])]).save(
        samples_dir / "comparison.png")
    shutil.copyfile(next(e["file"] for e in checkpoints if e["step"] == best_step), best_file)
    return {
        "best_step": best_step,
        "best_file": str(best_file),
        "best_score": round(best["score"], 6),
        **{k: round(best[k], 6) for k in ("identity", "identity_gain", "prompt_fit", "leakage", "diversity",
                                          "latent_shift")},
        "base_identity": round(base_identity, 6),
        "base_prompt_fit": round(base_prompt_fit, 6),
        "best_val_loss": round(losses[best_step], 6),
        "trigger_binding": round(bindings[best_step], 6),
        "base_val_loss": round(base_loss, 6),
        "final_val_loss": round(losses[checkpoints[-1]["step"]], 6),
        "selection": "held-out loss shortlists evaluate.image_checkpoints checkpoints (and the first); the highest score wins",
        "sampling": {"steps": steps, "guidance": guidance, "resolution": resolution, "lora_scale": evaluate.lora_scale},
        "heldout_images": len(pairs),
        "timesteps": scorer.timesteps,
        "checkpoints": table,
    }
