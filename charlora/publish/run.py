"""publish: what gets shipped (plan), the model card, and the real publish with its manifest.

``dvc repro`` runs :func:`build_plan` only (a dry run: no credentials, no network); ``make publish``
runs :func:`publish`, which performs the same plan against the Hub and Runware and records every
step in ``metrics/publish.json`` as it happens, so a failure says exactly what did and did not
happen and a rerun finishes the job.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlora import layout
from charlora.adapters import read_metadata
from charlora.base_models import BASE_MODELS
from charlora.cli import log
from charlora.credentials import Credentials, require
from charlora.errors import PipelineError
from charlora.evaluation import load_prompts
from charlora.fileio import read_json, sha256_file, utc_now, write_json
from charlora.flux2_layers import USED_BY
from charlora.hub import HubPublisher, HubRelease, UploadFile, explain_hub_error, open_hub
from charlora.params import Params, RunwareParams
from charlora.retry import RetryPolicy, describe
from charlora.runware_publish import LoraRegistration, RunwareClient

PLAN_FILE = layout.METRICS_DIR / "publish_plan.json"
MANIFEST_FILE = layout.METRICS_DIR / "publish.json"
PUBLISHED_DIR = Path("models/published")


def _report(message: str) -> None:
    log("publish", message)


@dataclass(frozen=True)
class Release:
    """Everything publish sends, resolved from params and the pipeline's outputs."""

    character: str
    trigger: str
    adapter: UploadFile
    exports: dict[str, UploadFile]  # format -> the verified export of the adapter (models/export)
    samples: list[UploadFile]
    sample_prompts: dict[str, str]  # path in repo -> prompt
    base_model_repo: str
    runware_base: str
    metadata: dict[str, str]
    evaluation: dict[str, Any]
    inference_prompts: list[str] = field(default_factory=list)


def _upload_file(source: Path, path_in_repo: str) -> UploadFile:
    return UploadFile(source, path_in_repo, source.stat().st_size, sha256_file(source))


def collect_exports(params: Params, best: Path) -> dict[str, UploadFile]:
    """The verified exports of ``best`` by format, checked against the export report (the files as verified)."""
    report_file = layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME
    if not report_file.is_file():
        raise PipelineError(f"{report_file} is missing. Run the export stage first: dvc repro export.")
    verified = read_json(report_file).get("best", {})
    best_sha256 = sha256_file(best)
    exports = {}
    for fmt, entry in verified.items():
        if entry.get("source_sha256") != best_sha256:
            raise PipelineError(f"the exports in {report_file} were made from another {best} than the one there now. "
                                "Run `dvc repro export` (or `make publish`, which runs it) and publish again.")
        source = Path(entry["file"])
        if not entry.get("verified") or not source.is_file() or sha256_file(source) != entry["sha256"]:
            raise PipelineError(f"{source} is missing, changed since it was verified, or failed verification "
                                f"({report_file}). Run `dvc repro export` again.")
        exports[fmt] = _upload_file(source, f"{params.character.name}.{fmt}.safetensors")
    wanted = params.publish.runware.lora_format
    if params.publish.runware.enabled and wanted != "mflux" and wanted not in exports:
        raise PipelineError(f"publish.runware.lora_format is {wanted}, but export.formats does not write it "
                            f"({', '.join(exports) or 'nothing'}). Add {wanted} to export.formats, or pick one of those.")
    return exports


def collect_release(params: Params) -> Release:
    """The best adapter from evaluate, its sample images and the facts for the card."""
    name, trigger = params.character.name, params.character.trigger
    best = layout.LORA_DIR / f"{name}-best.safetensors"
    eval_file = layout.METRICS_DIR / "eval.json"
    if not best.is_file() or not eval_file.is_file():
        raise PipelineError(f"{best} or {eval_file} is missing. Run the pipeline first: dvc repro evaluate.")
    evaluation = read_json(eval_file)
    step_dir = layout.SAMPLES_DIR / f"step{evaluation['best_step']:06d}"
    prompts = {p.id: p.text for p in load_prompts(Path(params.evaluate.prompts_file), trigger, None)}
    samples, sample_prompts = [], {}
    for image in sorted(step_dir.glob("*.png")):
        if "_no_" in image.stem:  # the trigger-off controls are for evaluation, not for the card
            continue
        path_in_repo = f"samples/{image.name}"
        samples.append(_upload_file(image, path_in_repo))
        sample_prompts[path_in_repo] = prompts.get(image.stem, trigger)
    contact = layout.SAMPLES_DIR / f"contact_step{evaluation['best_step']:06d}.png"
    if contact.is_file():
        samples.append(_upload_file(contact, "samples/contact_sheet.png"))
    inference_prompts = []
    for index, prompt in enumerate(params.publish.runware.prompts):
        if "{trigger}" not in prompt:
            raise PipelineError(f"publish.runware.prompts[{index}] has no {{trigger}}; the test inference must use the "
                                f"trigger word. Add {{trigger}} to: {prompt!r}")
        inference_prompts.append(prompt.replace("{trigger}", trigger))
    spec = BASE_MODELS[params.base_model.name]
    return Release(name, trigger, _upload_file(best, f"{name}.safetensors"), collect_exports(params, best), samples,
                   sample_prompts, spec.hf_repo,
                   params.publish.runware.base_model or spec.runware_air, read_metadata(best), evaluation,
                   inference_prompts)


def air_for(params: Params, repo_id: str, version: int | str) -> str:
    model_id = params.publish.runware.model_id or repo_id.replace("/", "-")
    return f"{params.publish.runware.air_source}:{model_id}@{version}"


def runware_file(params: Params, release: Release) -> UploadFile:
    """The file Runware downloads: the export in ``publish.runware.lora_format`` (mflux: the adapter itself)."""
    fmt = params.publish.runware.lora_format
    return release.adapter if fmt == "mflux" else release.exports[fmt]


def registration(params: Params, release: Release, repo_id: str, version: int | str, download_url: str,
                 architecture: str, hero_image_url: str | None) -> LoraRegistration:
    runware = params.publish.runware
    return LoraRegistration(
        air=air_for(params, repo_id, version), architecture=architecture, name=release.character, version=str(version),
        download_url=download_url, unique_identifier=runware_file(params, release).sha256, trigger=release.trigger,
        weight=runware.lora_weight, private=runware.private, tags=list(params.publish.hf.tags),
        description=f"Character LoRA '{release.character}' for FLUX.2 [klein] Base, trained with mflux",
        hero_image_url=hero_image_url)


def build_plan(params: Params) -> dict[str, Any]:
    """The dry run: what `make publish` would send, computed offline from local files."""
    release = collect_release(params)
    repo_id = params.publish.hf.repo_id or "$HF_REPO_ID"
    files = [release.adapter, *release.exports.values(), *release.samples]
    runware = params.publish.runware
    plan = {
        "dry_run": True,
        "note": "Nothing was sent. `make publish` publishes this (needs HF_TOKEN, HF_REPO_ID"
                + (", RUNWARE_API_KEY" if runware.enabled else "") + ").",
        "character": release.character,
        "hf": {"repo_id": repo_id, "private": params.publish.hf.private,
               "files": [{"path_in_repo": f.path_in_repo, "source": str(f.source), "size": f.size, "sha256": f.sha256}
                         for f in files] + [{"path_in_repo": "README.md", "source": "model card"},
                                            {"path_in_repo": "versions.json", "source": "version list"}],
               "version": "next free version in the repo's versions.json (or none if this sha256 is already there)"},
        "runware": None,
    }
    if runware.enabled:
        payload = registration(params, release, repo_id, "<version>", f"<endpoint>/{repo_id}/resolve/<commit>/"
                               f"{runware_file(params, release).path_in_repo}", runware.architecture, None).payload()
        payload["architecture"] = (f"looked up from {release.runware_base} with modelSearch" if runware.architecture == "auto"
                                   else f"{runware.architecture} (checked against {release.runware_base})")
        plan["runware"] = {"register": payload, "test_inference": {
            "model": release.runware_base, "lora_weight": runware.lora_weight, "prompts": release.inference_prompts,
            "width": runware.width, "height": runware.height, "steps": runware.steps, "guidance": runware.guidance}}
    return plan


class Manifest:
    """``metrics/publish.json``, rewritten after every step so it always says what has happened."""

    def __init__(self, path: Path, release: Release) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "dry_run": False, "character": release.character, "started_at": utc_now(),
            "adapter": {"file": str(release.adapter.source), "sha256": release.adapter.sha256, "size": release.adapter.size},
            "hf": {"status": "not started"}, "runware": {"status": "not started"},
            "inference": {"status": "not started"}, "timings_s": {}, "error": None,
        }
        previous = read_json(path) if path.is_file() else {}
        # A rerun for the same adapter keeps the images it already has (not paid for twice).
        if previous.get("adapter", {}).get("sha256") == release.adapter.sha256:
            self.previous_inference = previous.get("inference", {})
        else:
            self.previous_inference = {}
        self.save()

    def update(self, section: str, **values: Any) -> None:
        self.data[section].update(values)
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def publish(params: Params, credentials: Credentials) -> dict[str, Any]:
    """Publish for real; returns the manifest (also written to ``metrics/publish.json``)."""
    runware_on = params.publish.runware.enabled
    needed = ["HF_TOKEN"] + ([] if params.publish.hf.repo_id else ["HF_REPO_ID"]) + (["RUNWARE_API_KEY"] if runware_on else [])
    require(credentials, needed)
    offline = [name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
               if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")]
    if offline:  # huggingface_hub refuses every request then
        raise PipelineError(f"{' and '.join(offline)} set, and publishing needs the network; nothing was sent. "
                            f"Unset {'it' if len(offline) == 1 else 'them'} for `make publish` "
                            f"(env -u {' -u '.join(offline)} make publish).")
    if runware_on and params.publish.hf.private:
        raise PipelineError("publish.hf.private is true, but Runware downloads the adapter from the Hub URL without a "
                            "token; nothing was sent. Set publish.hf.private: false, or publish.runware.enabled: false.")
    release = collect_release(params)
    repo_id = params.publish.hf.repo_id or credentials.get("HF_REPO_ID")
    retry = RetryPolicy(params.publish.retries, params.publish.backoff_s)
    manifest = Manifest(MANIFEST_FILE, release)
    redact = credentials.redact
    try:
        started = time.perf_counter()
        api = open_hub(credentials.get("HF_ENDPOINT"), credentials.get("HF_TOKEN"))
        hub = HubPublisher(api, repo_id, retry, _report, redact)
        manifest.update("hf", status="in progress", repo_id=repo_id, private=params.publish.hf.private)
        try:
            hub_release = hub.release(release.adapter, [*release.exports.values(), *release.samples],
                                      lambda version: model_card(params, release, repo_id, version),
                                      params.publish.hf.private)
        except PipelineError:
            raise
        except Exception as error:
            raise PipelineError(redact(explain_hub_error(error, repo_id))) from None
        manifest.update("hf", status="uploaded" if hub_release.uploaded else "already published", version=hub_release.version,
                        commit=hub_release.commit, url=f"{api.endpoint}/{repo_id}/tree/{hub_release.commit}",
                        download_url=hub_release.download_url,
                        downloads={fmt: hub_release.file_url(api.endpoint, f.path_in_repo) for fmt, f in
                                   (("mflux", release.adapter), *release.exports.items())},
                        files=[f.path_in_repo for f in (release.adapter, *release.exports.values(), *release.samples)]
                        + ["README.md", "versions.json"])
        manifest.data["timings_s"]["hf"] = round(time.perf_counter() - started, 2)
        _report(f"hub: version {hub_release.version} at {hub_release.download_url}")
        if runware_on:
            _publish_runware(params, credentials, release, hub_release, api.endpoint, retry, manifest)
        else:
            manifest.update("runware", status="disabled (publish.runware.enabled: false)")
            manifest.update("inference", status="disabled")
    except PipelineError as error:
        manifest.data["error"] = redact(str(error))
        manifest.save()
        raise PipelineError(f"{redact(str(error))}\nWhat happened so far is in {MANIFEST_FILE}.") from None
    manifest.data["finished_at"] = utc_now()
    manifest.save()
    return manifest.data


def _publish_runware(params: Params, credentials: Credentials, release: Release, hub_release: HubRelease,
                     endpoint: str, retry: RetryPolicy, manifest: Manifest) -> None:
    settings = params.publish.runware
    client = RunwareClient(credentials.get("RUNWARE_API_KEY"), credentials.get("RUNWARE_URL"), settings.timeout_s,
                           retry, _report, credentials.redact)
    started = time.perf_counter()
    air = air_for(params, hub_release.repo_id, hub_release.version)
    manifest.update("runware", status="in progress", air=air)
    try:
        architecture = client.resolve_architecture(release.runware_base, settings.architecture)
        hero = release.samples[0].path_in_repo if release.samples else None
        download_url = hub_release.file_url(endpoint, runware_file(params, release).path_in_repo)
        lora = registration(params, release, hub_release.repo_id, hub_release.version, download_url,
                            architecture, hub_release.file_url(endpoint, hero) if hero else None)
        if client.find_model(air) is not None:
            _report(f"runware: {air} is already registered; nothing registered")
            manifest.update("runware", status="already registered", architecture=architecture, payload=lora.payload())
        else:
            _report(f"runware: registering {air} (architecture {architecture}); waiting until it is ready")
            statuses = client.register(lora)
            manifest.update("runware", status="registered", architecture=architecture, statuses=statuses,
                            payload=lora.payload())
        manifest.data["timings_s"]["runware_register"] = round(time.perf_counter() - started, 2)
    except PipelineError:
        manifest.update("runware", status="failed")
        raise
    except Exception as error:
        manifest.update("runware", status="failed")
        raise PipelineError(f"Runware registration of {air} failed: {credentials.redact(describe(error))}. "
                            "Run `make publish` again to finish; the Hugging Face part is done and will be skipped.") from None
    _test_inference(settings, release, air, client, manifest)


def _test_inference(settings: RunwareParams, release: Release, air: str, client: RunwareClient, manifest: Manifest) -> None:
    previous = manifest.previous_inference
    if (previous.get("status") == "done" and previous.get("air") == air
            and all(Path(image["image"]).is_file() for image in previous.get("images", []))):
        _report(f"runware: test images for {air} already downloaded; no new inference")
        manifest.update("inference", **{**previous, "status": "done", "reused": True})
        return
    started = time.perf_counter()
    out_dir = PUBLISHED_DIR / air.replace(":", "_").replace("@", "_v")
    images = []
    manifest.update("inference", status="in progress", air=air, model=release.runware_base, images=images)
    try:
        for index, prompt in enumerate(release.inference_prompts):
            t0 = time.perf_counter()
            images.append(client.generate(release.runware_base, air, settings.lora_weight, prompt, width=settings.width,
                                          height=settings.height, steps=settings.steps, guidance=settings.guidance,
                                          seed=settings.seed + index, out=out_dir / f"test_{index + 1:02d}.png"))
            _report(f"runware: image {index + 1} of {len(release.inference_prompts)} -> {images[-1]['image']} "
                    f"({time.perf_counter() - t0:.1f} s)")
            manifest.save()
    except Exception as error:
        manifest.update("inference", status="failed")
        raise PipelineError(f"Runware test inference with {air} failed after {len(images)} image(s): {describe(error)}. "
                            "Run `make publish` again; registration is done and will be skipped.") from None
    manifest.update("inference", status="done")
    manifest.data["timings_s"]["runware_inference"] = round(time.perf_counter() - started, 2)


def model_card(params: Params, release: Release, repo_id: str, version: int) -> str:
    """README.md for the Hub: LoRA metadata in the YAML header, usage, training params and metrics."""
    from huggingface_hub import ModelCardData

    widget = [{"text": prompt, "output": {"url": path}} for path, prompt in release.sample_prompts.items()]
    data = ModelCardData(license=params.publish.hf.license, base_model=release.base_model_repo,
                         tags=list(params.publish.hf.tags), instance_prompt=release.trigger, widget=widget,
                         pipeline_tag="text-to-image", library_name="mflux")
    meta = release.metadata
    evaluation = release.evaluation
    metrics = "\n".join(f"| {key} | {evaluation[key]} |" for key in
                        ("best_step", "best_score", "identity", "prompt_fit", "leakage", "diversity", "best_val_loss",
                         "base_val_loss") if key in evaluation)
    file_name = release.adapter.path_in_repo
    files = "\n".join([f"- `{file_name}`: mflux keys (sha256 `{release.adapter.sha256}`)"] + [
        f"- `{f.path_in_repo}`: {USED_BY[fmt]} (sha256 `{f.sha256}`)" for fmt, f in release.exports.items()])
    # The tiny embedded model stands in for Klein 4B Base (its LoRA only makes sense for trying the flow).
    mflux_model = params.base_model.name if params.base_model.name.startswith("flux2-klein-base") else "flux2-klein-base-4b"
    targets = ", ".join(t["module_path"] for t in json.loads(meta.get("lora_targets", "[]")))
    return f"""---
{data.to_yaml()}
---

# {release.character}: a FLUX.2 [klein] character LoRA (version {version})

A character LoRA for [{release.base_model_repo}](https://huggingface.co/{release.base_model_repo}), trained with
[mflux](https://github.com/filipstrand/mflux) by the story-shorts-character-lora pipeline.

**Trigger word:** `{release.trigger}` (put it first in the prompt). Recommended LoRA scale: {params.publish.runware.lora_weight}.

## Usage

### mflux (Apple Silicon, or mlx on Linux)

```bash
mflux-generate-flux2 --model {mflux_model} \\
  --lora-paths {file_name} --lora-scales {params.publish.runware.lora_weight} \\
  --steps 50 --guidance 4.0 --seed 42 \\
  --prompt "{release.trigger}, standing on a hill at sunrise"
```

{_format_usage(params, release, repo_id, version)}

## Training

| param | value |
| --- | --- |
| base model | {meta.get("base_model", release.base_model_repo)} (`{meta.get("base_model_name", "")}`) |
| steps | {meta.get("steps", "")} |
| LoRA rank | {meta.get("lora_rank", "")} |
| LoRA targets | {targets} |
| learning rate | {meta.get("learning_rate", "")} |
| resolution | {meta.get("resolution", "")} |
| seed | {meta.get("seed", "")} |
| training data sha256 | `{meta.get("training_data_sha256", "")}` |
| mflux / mlx | {meta.get("mflux_version", "")} / {meta.get("mlx_version", "")} |

## Evaluation

Measured by the pipeline's evaluate stage on `validation/test_prompts.json` (CLIP identity and prompt fit,
trigger-off leakage, diversity, held-out denoising loss; the best checkpoint was picked by score).

| metric | value |
| --- | --- |
{metrics}

Sample images (in `samples/`) were generated with mflux at the evaluation settings.

## Files

{files}
- `samples/`: images from the evaluation, with the prompts in the widget above
- `versions.json`: every version published here, by sha256

Every file except the mflux original was converted by the pipeline's export stage and checked before upload:
each layer's weight delta (scale x B x A) equals the original's, and diffusers' own FLUX.2 LoRA loader applied
every layer of the diffusers, ComfyUI and kohya files.
"""


def _format_usage(params: Params, release: Release, repo_id: str, version: int) -> str:
    """Model card usage sections for the exported formats (mflux is shown above them)."""
    name, weight, trigger = release.character, params.publish.runware.lora_weight, release.trigger
    sections = []
    if "diffusers" in release.exports:
        sections.append(f"""### diffusers

```python
import torch
from diffusers import Flux2KleinPipeline

pipe = Flux2KleinPipeline.from_pretrained("{release.base_model_repo}", torch_dtype=torch.bfloat16).to("cuda")
pipe.load_lora_weights("{repo_id}", weight_name="{release.exports['diffusers'].path_in_repo}", adapter_name="{name}")
pipe.set_adapters(["{name}"], adapter_weights=[{weight}])
image = pipe("{trigger}, standing on a hill at sunrise", num_inference_steps=50, guidance_scale=4.0).images[0]
```""")
    if "comfyui" in release.exports:
        sections.append(f"""### ComfyUI (and other tools that read BFL keys)

Put `{release.exports['comfyui'].path_in_repo}` in `ComfyUI/models/loras/` and add a **LoraLoaderModelOnly** node
after the FLUX.2 [klein] Base model loader, strength {weight}. Start the prompt with `{trigger}`.""")
    if "kohya" in release.exports:
        sections.append(f"""### kohya-style tools

`{release.exports['kohya'].path_in_repo}` uses `lora_unet_*` keys with `lora_down`/`lora_up` and `alpha`, for tools
that expect kohya sd-scripts files.""")
    if params.publish.runware.enabled:
        sections.append(f"""### Runware

Registered from `{runware_file(params, release).path_in_repo}` as `{air_for(params, repo_id, version)}`
(private to its owner's organisation unless made public there). Use it in an `imageInference` task on
`{release.runware_base}` with `"lora": [{{"model": "{air_for(params, repo_id, version)}", "weight": {weight}}}]`.""")
    return "\n\n".join(sections)
