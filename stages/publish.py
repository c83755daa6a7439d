"""publish: `dvc repro` writes the dry-run plan (metrics/publish_plan.json); `--push` (make publish) publishes.

The dvc stage never reads credentials or opens a connection, so experiments never publish by
accident; `make publish` runs the same plan for real against the Hugging Face Hub and Runware and
writes metrics/publish.json.
"""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
import argparse

from charlora import layout
from charlora.cli import log, reporter, run_stage
from charlora.fileio import write_json
from charlora.params import load_params
from charlora.publish.credentials import load_credentials
from charlora.publish.plan import build_plan
from charlora.publish.run import publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--push", action="store_true", help="publish for real (needs HF_TOKEN, HF_REPO_ID, RUNWARE_API_KEY)")
    args = parser.parse_args()
    params = load_params()
    if not args.push:
        plan = build_plan(params)
        write_json(layout.PUBLISH_PLAN_FILE, plan)
        log("publish", f"dry run: plan for {len(plan['hf']['files'])} files to {plan['hf']['repo_id']} in "
                       f"{layout.PUBLISH_PLAN_FILE}; nothing was sent. Run `make publish` to publish.")
        return
    manifest = publish(params, load_credentials(), reporter("publish"))
    air = manifest["runware"].get("air")
    log("publish", f"done: {manifest['hf']['repo_id']} version {manifest['hf']['version']} ({manifest['hf']['status']}), "
                   f"Runware {air + ' ' if air else ''}({manifest['runware']['status']}), "
                   f"test images: {manifest['inference']['status']}. Manifest: {layout.PUBLISH_MANIFEST_FILE}")


if __name__ == "__main__":
    run_stage("publish", main)
