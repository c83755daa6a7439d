"""`make shots REMOTE=runware` logic against the local Runware stand-in, through the real runware SDK: the published
LoRA's AIR and weight, the references (uploaded once, sent by UUID), the sizes; the cache; refusals; faults."""

from __future__ import annotations

import base64
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path
from secrets import token_hex

import pytest
from PIL import Image

from charlora.errors import PipelineError
from charlora.fileio import write_json
from charlora.publish.credentials import Credentials
from charlora.shots.remote import run_remote
from tests.conftest import fixture_params, sample_story_dir
from tests.standins import RunwareStandIn
from tests.standins.runware import Model, RunwareFault

KEY = f"rw_fake_{token_hex(12)}"
AIR = "runware:standin-user-bramble-lora@1"
SIZES = {"wake-up": (768, 1344), "meadow-walk": (768, 1344), "into-the-forest": (768, 1344), "hello": (768, 1344),
         "night-sky": (768, 1344), "the-end": (1344, 768)}


@pytest.fixture
def runware():
    with RunwareStandIn(KEY) as standin:
        standin.models[AIR] = Model(AIR, "bramble", "1", "lora", "flux2klein4b", True)
        yield standin


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the tests' story and what `make publish` recorded; the current folder."""
    root = tmp_path / "project"
    shutil.copytree(sample_story_dir(), root / "story")
    write_json(root / "metrics/publish.json", {
        "adapter": {"file": "models/lora/bramble-best.safetensors", "sha256": "c" * 64},
        "runware": {"status": "registered", "air": AIR}, "inference": {"status": "done", "model": "runware:400@5"}})
    monkeypatch.chdir(root)
    return root


def params():
    loaded = fixture_params()
    publish = replace(loaded.publish, retries=3, backoff_s=0.05, runware=replace(loaded.publish.runware, timeout_s=2))
    return replace(loaded, publish=publish)


def credentials(runware, **extra) -> Credentials:
    return Credentials({"RUNWARE_API_KEY": KEY, "RUNWARE_URL": runware.url, **extra})


def render(runware, lines=None):
    return run_remote(params(), credentials(runware), (lines if lines is not None else []).append)


def decoded(data_uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


def test_the_story_renders_on_runware_with_the_published_lora_and_references(project, runware):
    manifest = render(runware)
    uploads = runware.tasks_of("imageUpload")
    assert len(uploads) == 2  # forest.png and pose_waving.png, once each although forest is used twice
    uploaded = {image_uuid: Image.open(io.BytesIO(data)).size for image_uuid, data in runware.uploads.items()}
    forest = next(u for u, size in uploaded.items() if size == (288, 512))
    pose = next(u for u, size in uploaded.items() if size == (384, 384))
    assert all(decoded(task["image"]).format == "PNG" for task in uploads)

    inferences = {task["positivePrompt"]: task for task in runware.tasks_of("imageInference")}
    assert len(inferences) == 6
    by_id = {shot["id"]: inferences[shot["prompt"]] for shot in manifest["shots"]}
    for shot_id, task in by_id.items():
        assert task["model"] == "runware:400@5" and task["lora"] == [{"model": AIR, "weight": 0.8}]
        assert (task["width"], task["height"]) == SIZES[shot_id]  # the story's sizes, as written: the real model
        assert task["steps"] == 50 and task["CFGScale"] == 4.0  # null steps and guidance: Klein Base's
    assert by_id["into-the-forest"]["inputs"] == {"referenceImages": [forest]}
    assert by_id["hello"]["inputs"] == {"referenceImages": [forest, pose]}
    assert "inputs" not in by_id["wake-up"] and by_id["night-sky"]["seed"] == 42
    assert by_id["wake-up"]["positivePrompt"].startswith("brmbl, ") and not by_id["the-end"]["positivePrompt"].startswith("brmbl")

    out = project / "models/shots/runware"
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{i}.png" for i in SIZES] + ["storyboard.png"])
    written = json.loads((project / "metrics/shots_runware.json").read_text())
    assert written == manifest and manifest["where"] == "runware" and manifest["rendered"] == 6
    assert manifest["adapter"]["air"] == AIR
    hello = next(shot for shot in manifest["shots"] if shot["id"] == "hello")
    assert AIR in hello["rendered_on"] and "2 reference(s) by imageUpload UUID" in hello["rendered_on"]
    assert [ref["file"] for ref in hello["references"]] == ["story/references/forest.png", "story/references/pose_waving.png"]
    assert not (project / "models/shots/storyboard.png").exists()  # this machine's shots are elsewhere
    assert KEY not in json.dumps(manifest)

    # Again: everything from the cache, no connection at all. Then one edited shot: one image.
    seen = len(runware.tasks)
    assert render(runware)["rendered"] == 0 and len(runware.tasks) == seen
    story = (project / "story/shots.yaml").read_text().replace("stretching,", "yawning,")
    (project / "story/shots.yaml").write_text(story)
    again = render(runware)
    assert again["rendered"] == 1 and len(runware.tasks_of("imageInference")) == 7
    assert [s["id"] for s in again["shots"] if not s["from_cache"]] == ["wake-up"]


def test_nothing_published_is_refused_before_anything_is_sent(project, runware):
    (project / "metrics/publish.json").unlink()
    with pytest.raises(PipelineError, match=r"nothing has been published yet .* `make publish`"):
        render(runware)
    write_json(project / "metrics/publish.json", {"runware": {"status": "failed", "air": AIR}})
    with pytest.raises(PipelineError, match="nothing is registered on Runware yet: .* 'failed'"):
        render(runware)
    write_json(project / "metrics/publish.json", {"runware": {"status": "disabled (publish.runware.enabled: false)"}})
    with pytest.raises(PipelineError, match="nothing is registered on Runware yet"):
        render(runware)
    assert runware.tasks == [] and not (project / "models/shots/runware").exists()


def test_a_missing_api_key_is_named(project, runware):
    with pytest.raises(PipelineError, match="RUNWARE_API_KEY"):
        run_remote(params(), Credentials({"RUNWARE_URL": runware.url}), print)
    assert runware.tasks == []


def test_faults_are_retried_and_a_failure_keeps_what_was_rendered(project, runware, capsys):
    runware.inject(RunwareFault("imageInference", drop=True))  # a dropped websocket: retried
    runware.inject(RunwareFault("imageUpload", error=True))  # a server error: retried
    assert render(runware)["rendered"] == 6
    shown = capsys.readouterr().out
    assert "image for 'brmbl, waking up" in shown and "upload " in shown and shown.count("try 2 of 3") == 2

    story = (project / "story/shots.yaml").read_text()
    (project / "story/shots.yaml").write_text(story.replace("stretching,", "yawning,").replace("full of flowers", "of daisies"))
    before = {p.name: p.read_bytes() for p in (project / "models/shots/runware").iterdir()}
    runware.inject(RunwareFault("imageInference", count=3, error=True))  # every try of the first edited shot
    with pytest.raises(PipelineError) as raised:
        render(runware)
    message = str(raised.value)
    assert "Runware could not render shot 'wake-up'" in message and "`make shots REMOTE=runware` again" in message
    assert KEY not in message
    assert {p.name: p.read_bytes() for p in (project / "models/shots/runware").iterdir()} == before  # outputs kept
    done = render(runware)
    assert done["rendered"] == 2 and done["from_cache"] == 4
