"""publish: the dry-run plan in `dvc repro`, and `make publish` against local stand-ins of the Hugging Face
Hub and Runware, driven through the real huggingface_hub and runware client libraries."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from secrets import token_hex

import pytest
import yaml

from tests.conftest import ROOT, clone_project, run, tool_env, update_params
from tests.standins import HubStandIn, RunwareStandIn
from tests.standins.hub import Fault
from tests.standins.runware import RunwareFault

pytestmark = pytest.mark.slow

# Fake credentials made fresh for each run, so they are in no file unless the code under test puts them there.
HF_TOKEN = f"hf_fake_{token_hex(12)}"
RUNWARE_KEY = f"rw_fake_{token_hex(12)}"
REPO = "standin-user/bramble-lora"
AIR_V1 = "runware:standin-user-bramble-lora@1"


@pytest.fixture
def project(tmp_path, pipeline_run):
    """A copy of the evaluated sample project, with quick network settings for the stand-ins."""
    project = clone_project(pipeline_run[0], tmp_path / "project")
    update_params(project, {"publish.retries": 3, "publish.backoff_s": 0.05, "publish.runware.timeout_s": 3})
    return project


@pytest.fixture
def services():
    with HubStandIn(HF_TOKEN) as hub, RunwareStandIn(RUNWARE_KEY) as runware:
        yield hub, runware


def publish_env(services, **overrides) -> dict[str, str]:
    hub, runware = services
    env = tool_env()
    env.pop("HF_HUB_OFFLINE", None), env.pop("TRANSFORMERS_OFFLINE", None)
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", RUNWARE_URL=runware.url,
               HF_TOKEN=HF_TOKEN, HF_REPO_ID=REPO, RUNWARE_API_KEY=RUNWARE_KEY)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def push(project, env, command=None) -> subprocess.CompletedProcess:
    command = command or [sys.executable, "stages/publish.py", "--push"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def make_publish(project, env) -> subprocess.CompletedProcess:
    return push(project, env, ["make", "publish", f"VENV={ROOT / '.venv'}"])


def manifest(project) -> dict:
    return json.loads((project / "metrics/publish.json").read_text())


def best_adapter(project) -> bytes:
    return (project / "models/lora/bramble-best.safetensors").read_bytes()


def export_file(project, fmt) -> bytes:
    return (project / f"models/export/bramble-best.{fmt}.safetensors").read_bytes()


def test_dvc_repro_writes_a_dry_run_plan_and_opens_no_connection(project, services):
    hub, runware = services
    plan = json.loads((project / "metrics/publish_plan.json").read_text())
    sha = hashlib.sha256(best_adapter(project)).hexdigest()
    assert plan["dry_run"] is True
    files = {f["path_in_repo"]: f for f in plan["hf"]["files"]}
    assert files["bramble.safetensors"]["sha256"] == sha and files["bramble.safetensors"]["size"] == len(best_adapter(project))
    assert any(path.startswith("samples/") for path in files) and "README.md" in files
    register = plan["runware"]["register"]
    assert {"bramble.diffusers.safetensors", "bramble.comfyui.safetensors", "bramble.kohya.safetensors"} <= set(files)
    # Runware gets the ComfyUI/BFL export (publish.runware.lora_format), identified by that file's sha256.
    comfyui_sha = hashlib.sha256(export_file(project, "comfyui")).hexdigest()
    assert register["downloadURL"].endswith("/bramble.comfyui.safetensors")
    assert register["uniqueIdentifier"] == comfyui_sha and register["category"] == "lora" and register["private"] is True
    assert register["positiveTriggerWords"] == "brmbl" and "apiKey" not in json.dumps(plan)
    assert plan["runware"]["test_inference"]["model"] == "runware:400@5"

    # The stage itself, with credentials and endpoints set, under an audit hook that forbids any socket.
    guard = ("import runpy, sys\n"
             "def hook(event, args):\n"
             "    if event in ('socket.connect', 'socket.getaddrinfo'): raise RuntimeError(f'network used: {event}')\n"
             "sys.addaudithook(hook)\n"
             "sys.argv = ['stages/publish.py']\n"
             "sys.path.insert(0, 'stages')  # as python does for a script: its folder first\n"
             "runpy.run_path('stages/publish.py', run_name='__main__')\n")
    (project / "metrics/publish_plan.json").unlink()
    result = push(project, publish_env(services), [sys.executable, "-c", guard])
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout and (project / "metrics/publish_plan.json").exists()
    assert hub.requests == [] and runware.tasks == []


def test_missing_credentials_are_named_and_nothing_is_sent(project, services):
    hub, runware = services
    result = push(project, publish_env(services, HF_TOKEN=None, HF_REPO_ID=None, RUNWARE_API_KEY=None))
    assert result.returncode == 1
    for name in ("HF_TOKEN", "HF_REPO_ID", "RUNWARE_API_KEY"):
        assert name in result.stderr
    assert "huggingface.co/settings/tokens" in result.stderr and "Traceback" not in result.stderr
    only_runware = push(project, publish_env(services, RUNWARE_API_KEY=None))
    assert only_runware.returncode == 1 and "RUNWARE_API_KEY" in only_runware.stderr and "HF_TOKEN" not in only_runware.stderr
    assert hub.requests == [] and runware.tasks == []


def test_make_publish_round_trip_then_rerun_sends_nothing_new(project, services):
    hub, runware = services
    first = make_publish(project, publish_env(services))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    repo = hub.repos[REPO]
    adapter = best_adapter(project)
    sha = hashlib.sha256(adapter).hexdigest()
    assert repo.files["bramble.safetensors"] == adapter and len(repo.commits) == 2  # the repo's first commit + ours
    card = repo.files["README.md"].decode()
    header = yaml.safe_load(card.split("---")[1])
    assert header["base_model"] == "black-forest-labs/FLUX.2-klein-base-4B" and header["instance_prompt"] == "brmbl"
    assert header["license"] == "apache-2.0" and "lora" in header["tags"]
    assert header["widget"] and all(w["output"]["url"] in repo.files and w["text"].startswith("brmbl") for w in header["widget"])
    assert "mflux-generate-flux2" in card and "| identity |" in card and "| trigger_binding |" in card and sha in card
    for fmt in ("diffusers", "comfyui", "kohya"):
        assert repo.files[f"bramble.{fmt}.safetensors"] == export_file(project, fmt)
    assert 'weight_name="bramble.diffusers.safetensors"' in card and "LoraLoaderModelOnly" in card and AIR_V1 in card
    assert json.loads(repo.files["versions.json"]) == [{"version": 1, "sha256": sha, "file": "bramble.safetensors"}]

    lora = runware.models[AIR_V1]
    assert lora.unique_identifier == hashlib.sha256(export_file(project, "comfyui")).hexdigest() and lora.architecture == runware.models["runware:400@5"].architecture
    assert lora.private is True and lora.positive_trigger_words == "brmbl" and lora.category == "lora"
    inferences = runware.tasks_of("imageInference")
    assert len(inferences) == 3
    for task in inferences:
        assert task["model"] == "runware:400@5" and task["lora"] == [{"model": AIR_V1, "weight": 0.8}]
        assert task["positivePrompt"].startswith("brmbl")

    record = manifest(project)
    commit = repo.commits[-1]
    assert record["hf"]["status"] == "uploaded" and record["hf"]["commit"] == commit
    assert record["hf"]["download_url"] == f"{hub.url}/{REPO}/resolve/{commit}/bramble.safetensors"
    assert record["runware"]["status"] == "registered" and record["runware"]["air"] == AIR_V1
    assert record["hf"]["downloads"]["comfyui"] == f"{hub.url}/{REPO}/resolve/{commit}/bramble.comfyui.safetensors"
    assert record["runware"]["payload"]["downloadURL"] == record["hf"]["downloads"]["comfyui"]
    assert record["inference"]["status"] == "done" and record["error"] is None
    images = [project / image["image"] for image in record["inference"]["images"]]
    assert len(images) == 3 and all(path.read_bytes().startswith(b"\x89PNG") for path in images)
    assert set(record["timings_s"]) == {"hf", "runware_register", "runware_inference"}

    uploads, inference_count = len(runware.tasks_of("modelUpload")), len(inferences)
    again = make_publish(project, publish_env(services))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing uploaded" in again.stdout and "already registered" in again.stdout
    assert len(repo.commits) == 2 and len(runware.tasks_of("modelUpload")) == uploads
    assert len(runware.tasks_of("imageInference")) == inference_count
    assert manifest(project)["hf"]["status"] == "already published"


def test_a_new_adapter_publishes_as_the_next_version_and_old_urls_stay_pinned(project, services):
    hub, runware = services
    env = publish_env(services)
    assert push(project, env).returncode == 0
    first = manifest(project)
    # A retrained LoRA: another checkpoint's adapter becomes the best one (whichever step evaluate picked).
    best = best_adapter(project)
    other = next(data for data in (path.read_bytes() for path in sorted(
        (project / "models/lora/checkpoints").glob("*.safetensors"))) if data != best)
    (project / "models/lora/bramble-best.safetensors").write_bytes(other)
    stale = push(project, env)
    assert stale.returncode == 1 and "dvc repro export" in stale.stderr  # exports of the old adapter are refused
    run([sys.executable, "stages/export.py"], project)
    result = push(project, env)
    assert result.returncode == 0, result.stderr[-3000:]
    second = manifest(project)
    assert second["hf"]["version"] == 2 and second["runware"]["air"] == "runware:standin-user-bramble-lora@2"
    assert "runware:standin-user-bramble-lora@2" in runware.models and AIR_V1 in runware.models
    versions = json.loads(hub.repos[REPO].files["versions.json"])
    assert [v["version"] for v in versions] == [1, 2]
    commit_v1, commit_v2 = first["hf"]["commit"], second["hf"]["commit"]
    assert hub.repos[REPO].history[commit_v1]["bramble.safetensors"] != other
    assert hub.repos[REPO].history[commit_v2]["bramble.safetensors"] == other


def test_a_version_published_without_exports_gets_them_added_not_a_new_version(project, services):
    hub, _ = services
    update_params(project, {"publish.runware.enabled": False})
    env = publish_env(services)
    assert push(project, env).returncode == 0
    repo = hub.repos[REPO]
    exports = [f"bramble.{fmt}.safetensors" for fmt in ("diffusers", "comfyui", "kohya")]
    for name in exports:  # as a version published by this pipeline before it had the export stage
        del repo.history[repo.commits[-1]][name]
    result = push(project, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lacks bramble.diffusers.safetensors, bramble.comfyui.safetensors, bramble.kohya.safetensors; adding" in result.stdout
    record = manifest(project)
    commit = repo.commits[-1]
    assert len(repo.commits) == 3 and record["hf"]["version"] == 1 and record["hf"]["commit"] == commit
    assert [v["version"] for v in json.loads(repo.files["versions.json"])] == [1]
    assert all(repo.history[commit][name] == export_file(project, name.split(".")[1]) for name in exports)
    assert record["hf"]["downloads"]["comfyui"] == f"{hub.url}/{REPO}/resolve/{commit}/bramble.comfyui.safetensors"
    again = push(project, env)
    assert "nothing uploaded" in again.stdout and len(repo.commits) == 3


def test_network_faults_are_retried_with_backoff(project, services):
    hub, runware = services
    hub.inject(Fault("POST", r"/commit/", status=503))
    hub.inject(Fault("POST", r"/info/lfs/objects/batch", status=500))
    hub.inject(Fault("POST", r"/api/repos/create", status=502))
    runware.inject(RunwareFault("modelUpload", drop=True))  # the websocket goes away mid-upload
    runware.inject(RunwareFault("imageInference", error=True))
    result = push(project, publish_env(services))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "try 2 of 3" in result.stdout
    assert sum(1 for method, path in hub.requests if method == "POST" and "/commit/" in path) == 2
    assert len(hub.repos[REPO].commits) == 2  # one commit despite the retry
    assert len(runware.tasks_of("modelUpload")) == 2 and AIR_V1 in runware.models
    assert manifest(project)["inference"]["status"] == "done"


def test_a_failure_is_recorded_and_a_rerun_finishes_the_job(project, services):
    hub, runware = services
    env = publish_env(services)
    runware.inject(RunwareFault("modelUpload", count=10, error=True))
    failed = push(project, env)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "Runware registration" in failed.stderr and "make publish" in failed.stderr
    record = manifest(project)
    assert record["hf"]["status"] == "uploaded" and record["runware"]["status"] == "failed"
    assert record["inference"]["status"] == "not started" and "Runware" in record["error"]
    assert len(runware.tasks_of("modelUpload")) == 3  # publish.retries, then it stops

    runware.faults.clear()
    done = push(project, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing uploaded" in done.stdout and len(hub.repos[REPO].commits) == 2
    assert manifest(project)["runware"]["status"] == "registered" and manifest(project)["inference"]["status"] == "done"


@pytest.mark.parametrize(("updates", "message"), [
    ({"publish.runware.architecture": "flux1d"}, "publish.runware.architecture 'flux1d' is a FLUX.1"),
    ({"publish.runware.architecture": "flux2klein9b"}, "publish.runware.architecture is 'flux2klein9b', but Runware reports"),
    ({"publish.hf.private": True}, "publish.hf.private is true"),
])
def test_bad_publish_params_are_refused_before_registering(project, services, updates, message):
    hub, runware = services
    update_params(project, updates)
    result = push(project, publish_env(services))
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert runware.tasks_of("modelUpload") == []


def test_secrets_from_dotenv_never_reach_any_output(project, services):
    """Fake tokens in .env: after the pipeline, publish (with a failure and a rerun) they appear nowhere."""
    hub, runware = services
    (project / ".env").write_text(f"HF_TOKEN={HF_TOKEN}\nRUNWARE_API_KEY={RUNWARE_KEY}\nHF_REPO_ID={REPO}\n")
    env = publish_env(services, HF_TOKEN=None, RUNWARE_API_KEY=None, HF_REPO_ID=None)
    assert run(["git", "check-ignore", ".env"], project).returncode == 0
    outputs = [run(["dvc", "repro", "-f", "publish"], project)]
    runware.inject(RunwareFault("imageInference", count=10, error=True))
    outputs.append(push(project, env))
    assert outputs[-1].returncode == 1
    runware.faults.clear()
    outputs.append(make_publish(project, env))
    assert outputs[-1].returncode == 0, outputs[-1].stderr[-3000:]
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "after publish"], project)
    history = run(["git", "log", "-p", "--all", "--binary"], project).stdout

    secrets = (HF_TOKEN, RUNWARE_KEY)
    texts = {"git history": history, **{f"output of {' '.join(o.args)}": o.stdout + o.stderr for o in outputs}}
    for secret in secrets:
        for where, text in texts.items():
            at = text.find(secret)
            assert at < 0, f"{secret} in {where}: ...{text[max(0, at - 300):at + 100]}"
        for path in project.rglob("*"):
            if path.is_file() and path.name != ".env" and ".git" not in path.parts:
                assert secret.encode() not in path.read_bytes(), path
        # Sent only where it belongs: not in any uploaded file or Runware task payload.
        assert all(secret.encode() not in data for data in hub.lfs.values())
        assert all(secret.encode() not in data for repo in hub.repos.values() for data in repo.files.values())
        assert all(secret not in json.dumps(task) for task in runware.tasks)
