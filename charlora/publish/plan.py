"""The dry run ``dvc repro`` writes (metrics/publish_plan.json): what `make publish` would send.

Computed offline from local files: no credentials are read and no connection is opened.
"""

from __future__ import annotations

from typing import Any

from charlora.params import Params
from charlora.publish.release import collect_release, registration, runware_file


def build_plan(params: Params) -> dict[str, Any]:
    """The dry run: files, sizes, sha256, target repo and the Runware registration (without secrets)."""
    release = collect_release(params)
    repo_id = "$HF_REPO_ID" if params.publish.hf.repo_id is None else params.publish.hf.repo_id
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
