"""publish: `make publish` performs the release against the Hugging Face Hub and Runware.

Every step is recorded in ``metrics/publish.json`` as it happens (:mod:`charlora.publish.manifest`),
so a failure says exactly what did and did not happen and a rerun finishes the job. ``dvc repro``
only writes the dry-run plan (:mod:`charlora.publish.plan`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charlora import layout
from charlora.errors import PipelineError
from charlora.params import Params, RunwareParams
from charlora.publish.card import model_card
from charlora.publish.credentials import Credentials, needed, require
from charlora.publish.hub import HubPublisher, HubRelease, explain_hub_error, open_hub
from charlora.publish.manifest import Manifest
from charlora.publish.release import Release, air_for, collect_release, registration, runware_file
from charlora.publish.retry import RetryPolicy, describe
from charlora.publish.runware import RunwareClient

Report = Callable[[str], None]


def publish(params: Params, credentials: Credentials, report: Report) -> dict[str, Any]:
    """Publish for real; returns the manifest (also written to ``metrics/publish.json``)."""
    runware_on = params.publish.runware.enabled
    require(credentials, needed(params.publish))
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
    repo_id = credentials.get("HF_REPO_ID") if params.publish.hf.repo_id is None else params.publish.hf.repo_id
    retry = RetryPolicy(params.publish.retries, params.publish.backoff_s)
    manifest = Manifest(layout.PUBLISH_MANIFEST_FILE, release)
    redact = credentials.redact
    try:
        started = time.perf_counter()
        api = open_hub(credentials.get("HF_ENDPOINT"), credentials.get("HF_TOKEN"))
        hub = HubPublisher(api, repo_id, retry, report, redact)
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
        manifest.time("hf", time.perf_counter() - started)
        report(f"hub: version {hub_release.version} at {hub_release.download_url}")
        if runware_on:
            _publish_runware(params, credentials, release, hub_release, api.endpoint, retry, manifest, report)
        else:
            manifest.update("runware", status="disabled (publish.runware.enabled: false)")
            manifest.update("inference", status="disabled")
    except PipelineError as error:
        manifest.finish(error=redact(str(error)))
        raise PipelineError(f"{redact(str(error))}\nWhat happened so far is in {layout.PUBLISH_MANIFEST_FILE}.") from None
    manifest.finish()
    return manifest.data


def _publish_runware(params: Params, credentials: Credentials, release: Release, hub_release: HubRelease,
                     endpoint: str, retry: RetryPolicy, manifest: Manifest, report: Report) -> None:
    settings = params.publish.runware
    client = RunwareClient(credentials.get("RUNWARE_API_KEY"), credentials.get("RUNWARE_URL"), settings.timeout_s,
                           retry, report, credentials.redact)
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
            report(f"runware: {air} is already registered; nothing registered")
            manifest.update("runware", status="already registered", architecture=architecture, payload=lora.payload())
        else:
            report(f"runware: registering {air} (architecture {architecture}); waiting until it is ready")
            statuses = client.register(lora)
            manifest.update("runware", status="registered", architecture=architecture, statuses=statuses,
                            payload=lora.payload())
        manifest.time("runware_register", time.perf_counter() - started)
    except PipelineError:
        manifest.update("runware", status="failed")
        raise
    except Exception as error:
        manifest.update("runware", status="failed")
        raise PipelineError(f"Runware registration of {air} failed: {credentials.redact(describe(error))}. "
                            "Run `make publish` again to finish; the Hugging Face part is done and will be skipped.") from None
    _test_inference(settings, release, air, client, manifest, report)


def _test_inference(settings: RunwareParams, release: Release, air: str, client: RunwareClient, manifest: Manifest,
                    report: Report) -> None:
    previous = manifest.previous_inference
    if (previous.get("status") == "done" and previous.get("air") == air
            and all(Path(image["image"]).is_file() for image in previous.get("images", []))):
        report(f"runware: test images for {air} already downloaded; no new inference")
        manifest.update("inference", **{**previous, "status": "done", "reused": True})
        return
    started = time.perf_counter()
    out_dir = layout.PUBLISHED_DIR / air.replace(":", "_").replace("@", "_v")
    images = []
    manifest.update("inference", status="in progress", air=air, model=release.runware_base, images=images)
    try:
        for index, prompt in enumerate(release.inference_prompts):
            t0 = time.perf_counter()
            images.append(client.generate(release.runware_base, air, settings.lora_weight, prompt, width=settings.width,
                                          height=settings.height, steps=settings.steps, guidance=settings.guidance,
                                          seed=settings.seed + index, out=out_dir / f"test_{index + 1:02d}.png"))
            report(f"runware: image {index + 1} of {len(release.inference_prompts)} -> {images[-1]['image']} "
                   f"({time.perf_counter() - t0:.1f} s)")
            manifest.save()
    except Exception as error:
        manifest.update("inference", status="failed")
        raise PipelineError(f"Runware test inference with {air} failed after {len(images)} image(s): {describe(error)}. "
                            "Run `make publish` again; registration is done and will be skipped.") from None
    manifest.update("inference", status="done")
    manifest.time("runware_inference", time.perf_counter() - started)
