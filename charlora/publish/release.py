"""What publish ships, resolved from params and the pipeline's outputs, and the names it ships under.

The best adapter from evaluate, its verified exports (checked against models/export/report.json),
the best checkpoint's sample images, the facts for the model card, and the Runware registration
built from them. Nothing here talks to a service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlora import layout
from charlora.errors import PipelineError
from charlora.evaluate.prompts import load_prompts
from charlora.evaluate.settings import prompts_file
from charlora.fileio import read_json, sha256_file
from charlora.lora.safetensors import read_metadata
from charlora.models.registry import get_base_model
from charlora.params import Params
from charlora.publish.hub import UploadFile
from charlora.publish.runware import LoraRegistration


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


def upload_file(source: Path, path_in_repo: str) -> UploadFile:
    """``source`` with its size and sha256, to go to ``path_in_repo``."""
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
        exports[fmt] = upload_file(source, f"{params.character.name}.{fmt}.safetensors")
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
    prompts = {p.id: p.text for p in load_prompts(prompts_file(params), trigger, None)}
    samples, sample_prompts = [], {}
    for image in sorted(step_dir.glob("*.png")):
        if "_no_" in image.stem:  # the trigger-off controls are for evaluation, not for the card
            continue
        path_in_repo = f"samples/{image.name}"
        samples.append(upload_file(image, path_in_repo))
        sample_prompts[path_in_repo] = prompts.get(image.stem, trigger)
    contact = layout.SAMPLES_DIR / f"contact_step{evaluation['best_step']:06d}.png"
    if contact.is_file():
        samples.append(upload_file(contact, "samples/contact_sheet.png"))
    inference_prompts = []
    for index, prompt in enumerate(params.publish.runware.prompts):
        if "{trigger}" not in prompt:
            raise PipelineError(f"publish.runware.prompts[{index}] has no {{trigger}}; the test inference must use the "
                                f"trigger word. Add {{trigger}} to: {prompt!r}")
        inference_prompts.append(prompt.replace("{trigger}", trigger))
    spec = get_base_model(params.base_model.name)
    runware_base = spec.runware_air if params.publish.runware.base_model is None else params.publish.runware.base_model
    return Release(name, trigger, upload_file(best, f"{name}.safetensors"), collect_exports(params, best), samples,
                   sample_prompts, spec.hf_repo, runware_base, read_metadata(best), evaluation, inference_prompts)


def air_for(params: Params, repo_id: str, version: int | str) -> str:
    """The LoRA's AIR on Runware: ``<air_source>:<model_id>@<version>`` (model_id null: the repo as user-name)."""
    runware = params.publish.runware
    model_id = repo_id.replace("/", "-") if runware.model_id is None else runware.model_id
    return f"{runware.air_source}:{model_id}@{version}"


def runware_file(params: Params, release: Release) -> UploadFile:
    """The file Runware downloads: the export in ``publish.runware.lora_format`` (mflux: the adapter itself)."""
    fmt = params.publish.runware.lora_format
    return release.adapter if fmt == "mflux" else release.exports[fmt]


def registration(params: Params, release: Release, repo_id: str, version: int | str, download_url: str,
                 architecture: str, hero_image_url: str | None) -> LoraRegistration:
    """What Runware's modelUpload gets for this release."""
    runware = params.publish.runware
    return LoraRegistration(
        air=air_for(params, repo_id, version), architecture=architecture, name=release.character, version=str(version),
        download_url=download_url, unique_identifier=runware_file(params, release).sha256, trigger=release.trigger,
        weight=runware.lora_weight, private=runware.private, tags=list(params.publish.hf.tags),
        description=f"Character LoRA '{release.character}' for FLUX.2 [klein] Base, trained with mflux",
        hero_image_url=hero_image_url)
