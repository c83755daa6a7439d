"""Publishing from a notebook: the dry-run plan `dvc repro` wrote, a guarded `make publish`, and what a push did
(the manifest, the Hub URL, the Runware AIR and the test images).

Credentials come only from the environment or ``.env`` (:mod:`charlora.publish.credentials`); only their
names are ever printed.
"""

from __future__ import annotations

from pathlib import Path

from charlora import layout
from charlora.notebook.commands import make, project_root
from charlora.notebook.views import missing, open_picture, picture, read, sheet, table
from charlora.params import load_params
from charlora.publish.credentials import WHERE_TO_GET, load_credentials, missing_names, needed


def show_publish_plan(root: Path | None = None) -> None:
    """The dry run: the files for the Hub (path in the repo, source, size, sha256), the Runware registration and
    its test inference. Nothing has been sent."""
    root = root or project_root()
    if missing(root, "publish", str(layout.PUBLISH_PLAN_FILE)):
        return
    plan = read(root, str(layout.PUBLISH_PLAN_FILE))
    print(f"publish plan for {plan['character']}: {plan['note']}")
    hub = plan["hf"]
    table([{"path in repo": f["path_in_repo"], "source": f["source"], "size (KB)": round(f["size"] / 1024, 1) if "size" in f
            else "", "sha256": f.get("sha256", "")[:16]} for f in hub["files"]], index="path in repo",
          title=f"Hugging Face Hub: {hub['repo_id']} ({'private' if hub['private'] else 'public'}), version: {hub['version']}")
    if plan.get("runware"):
        table(plan["runware"]["register"], index="Runware modelUpload", title="Runware registration:")
        table(plan["runware"]["test_inference"], index="Runware test inference",
              title="Runware test inference (one image per prompt):")
    else:
        print("Runware: off (publish.runware.enabled: false)")


def push(publish: bool, root: Path | None = None) -> None:
    """Run `make publish` when ``publish`` is True and every credential it needs is set (environment or ``.env``);
    otherwise say that publishing was skipped and why."""
    root = root or project_root()
    names = needed(load_params(root / "params.yaml").publish)
    absent = missing_names(load_credentials(root / ".env"), names)
    lacking = "".join(f"\n  {name}: {WHERE_TO_GET[name]}" for name in absent)
    if not publish:
        print("publishing skipped: PUBLISH is False. Set PUBLISH = True in this cell to run `make publish`"
              + (f"; it also needs {', '.join(absent)} in the environment or .env (see .env.example):{lacking}"
                 if absent else f" ({', '.join(names)} are set)."))
        return
    if absent:
        print(f"publishing skipped: {', '.join(absent)} missing. Set them in the environment or in .env "
              f"(see .env.example), then run this cell again:{lacking}")
        return
    print(f"publishing: make publish ({', '.join(names)} set)")
    make("publish", root)


def show_published(root: Path | None = None) -> None:
    """After a push: the manifest (statuses, timings), the Hub URL, the Runware AIR and the test images."""
    root = root or project_root()
    if not (root / layout.PUBLISH_MANIFEST_FILE).is_file():
        print(f"publish: nothing published yet ({layout.PUBLISH_MANIFEST_FILE} missing); the push cell above publishes.")
        return
    manifest = read(root, str(layout.PUBLISH_MANIFEST_FILE))
    hub, runware, inference = manifest["hf"], manifest["runware"], manifest["inference"]
    if manifest.get("error"):
        print(f"the last push stopped: {manifest['error']}")
    print(f"Hugging Face Hub: {hub.get('url', hub['status'])}")
    print(f"Runware AIR: {runware.get('air', runware['status'])}")
    table({"adapter": manifest["adapter"]["file"], "adapter sha256": manifest["adapter"]["sha256"][:16],
           **{f"hf {key}": value for key, value in hub.items() if key not in ("downloads", "files")},
           **{f"runware {key}": value for key, value in runware.items() if key not in ("payload", "statuses")},
           "test images": inference["status"], **{f"seconds: {key}": value for key, value in manifest["timings_s"].items()},
           "started": manifest.get("started_at"), "finished": manifest.get("finished_at")},
          index=str(layout.PUBLISH_MANIFEST_FILE), title="what the last push did:")
    if hub.get("downloads"):
        table(hub["downloads"], index="format", title="download URLs (pinned to the commit):")
    images = [image for image in inference.get("images", []) if (root / image["image"]).is_file()]
    if images:
        picture(sheet([([open_picture(root / image["image"], 256)], [image["prompt"], f"seed {image['seed']}"])
                       for image in images], columns=3, cell=256),
                f"Runware's test images with {inference.get('air')} ({layout.PUBLISHED_DIR}):")
