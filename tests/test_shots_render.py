"""Shots end to end on the tiny model: mflux's edit variant for shots with references, the shots stage in
`dvc repro` (only new or changed shots render, bad stories are refused whole), `make shots REMOTE=runware`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from secrets import token_hex

import pytest
import yaml
from PIL import Image

from charlora.lora.extract import adapter_from_checkpoint
from charlora.train.checkpoints import RUN_SUBDIR, good_checkpoints
from tests.conftest import ROOT, clone_project, noise_image, run, tool_env, update_params
from tests.standins import HubStandIn, RunwareStandIn

pytestmark = pytest.mark.slow

IDS = ["wake-up", "meadow-walk", "into-the-forest", "hello", "night-sky", "the-end"]


def test_shots_with_references_go_through_mflux_edit_variant(trained, tiny_flux2, tmp_path, monkeypatch):
    """Same prompt and seed: text to image without references, Flux2KleinEdit with them; each reference moves the
    sampler's final latents (compared in float: a random tiny model barely moves 8-bit pixels)."""
    import numpy as np
    from mflux.models.flux2.variants.edit.flux2_klein_edit import Flux2KleinEdit

    from charlora.models.registry import get_base_model
    from charlora.progress import Progress
    from charlora.shots.plan import Target, plan_jobs
    from charlora.shots.references import PreparedReferences
    from charlora.shots.render import LocalRenderer
    from charlora.shots.story import load_story

    params, root, _ = trained
    adapter = tmp_path / "best.safetensors"
    adapter.write_bytes(adapter_from_checkpoint(good_checkpoints(root / "training" / RUN_SUBDIR)[-1]))
    project = tmp_path / "project"
    noise_image(project / "story/references/a.png", (96, 160), seed=1)
    noise_image(project / "story/references/b.png", (96, 160), seed=2)
    shots = [("plain", []), ("ref-a", ["a"]), ("ref-b", ["b"]), ("ref-ab", ["a", "b"])]
    (project / "story/shots.yaml").write_text("size: 384x672\nshots:\n" + "".join(
        f"  - {{id: {shot_id}, prompt: 'waving in a meadow', seed: 7, "
        f"references: [{', '.join(f'story/references/{name}.png' for name in refs)}]}}\n" for shot_id, refs in shots))
    sampling = get_base_model("flux2-klein-tiny").sampling
    jobs = plan_jobs(load_story(Path("story/shots.yaml"), "brmbl", project),
                     Target("local", "flux2-klein-tiny", sampling, {"sha256": "test"}, "test", "test"))
    edit_calls: list[list[str]] = []
    original = Flux2KleinEdit.generate_image

    def spy(self, *args, **kwargs):
        edit_calls.append(kwargs.get("image_paths"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Flux2KleinEdit, "generate_image", spy)
    renderer = LocalRenderer("flux2-klein-tiny", str(tiny_flux2), params.tiny_model, adapter, 1.0,
                             Progress("shots", len(jobs) + 1, "shot"))
    prepared = PreparedReferences(tmp_path / "prepared")
    latents, classes, files = {}, {}, {}
    for job in jobs:
        files[job.shot.id] = [prepared.path(ref, size) for ref, size in zip(job.references, job.reference_sizes)]
        rendered = renderer.render(job, files[job.shot.id])
        latents[job.shot.id], classes[job.shot.id] = rendered.latents, type(renderer.model).__name__
        assert rendered.image.size == (16, 32)  # 384x672 at the tiny model's scale
    assert classes == {"plain": "Flux2Klein", "ref-a": "Flux2KleinEdit", "ref-b": "Flux2KleinEdit", "ref-ab": "Flux2KleinEdit"}
    assert edit_calls == [[str(p) for p in files[i]] for i in ("ref-a", "ref-b", "ref-ab")]
    assert Image.open(files["ref-a"][0]).size == (32, 48)  # the reference as conditioned: the model's scale
    for one, other in (("ref-a", "plain"), ("ref-b", "ref-a"), ("ref-ab", "ref-a")):
        assert np.abs(latents[one] - latents[other]).max() > 1e-6, (one, other)
    job = next(job for job in jobs if job.shot.id == "ref-a")
    assert np.array_equal(renderer.render(job, files["ref-a"]).latents, latents["ref-a"])  # repeatable


@pytest.fixture
def project(tmp_path, pipeline_run):
    """A copy of the session's `dvc repro` run (which rendered the tests' story)."""
    return clone_project(pipeline_run[0], tmp_path / "project")


def manifest(project: Path, name: str = "shots.json") -> dict:
    return json.loads((project / "metrics" / name).read_text())


def images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def edit_story(project: Path, change) -> None:
    """Apply ``change`` to the parsed story and write it back."""
    path = project / "story/shots.yaml"
    story = yaml.safe_load(path.read_text())
    change(story, {shot["id"]: shot for shot in story["shots"]})
    path.write_text(yaml.safe_dump(story, sort_keys=False))


def test_dvc_repro_renders_the_story_and_only_changed_shots_rerender(project, pipeline_run):
    out = pipeline_run[1]
    assert "Running stage 'shots'" in out and "shots: shot 1/6" in out and "s/shot" in out
    assert "6 shot(s) in the story: 0 from the cache, 6 to render" in out
    first = manifest(project)
    assert [shot["id"] for shot in first["shots"]] == IDS and first["rendered"] == 6 and first["from_cache"] == 0
    assert first["base_model"] == "flux2-klein-tiny" and first["seconds_per_image"] > 0
    shots = {shot["id"]: shot for shot in first["shots"]}
    for shot_id in IDS:
        with Image.open(project / shots[shot_id]["file"]) as image:
            assert image.size == ((64, 32) if shot_id == "the-end" else (32, 64))
        expected = "Flux2KleinEdit" if shot_id in ("into-the-forest", "hello") else "Flux2Klein)"
        assert expected in shots[shot_id]["rendered_on"] and "this machine: mflux" in shots[shot_id]["rendered_on"]
    assert [ref["conditioned_at"] for ref in shots["hello"]["references"]] == ["32x64", "48x48"]
    assert (project / "models/shots/storyboard.png").is_file()
    assert len(list((project / "data/cache/shots").glob("*.png"))) == 6
    before = images(project / "models/shots")

    # One shot edited: the shots stage reruns alone and renders that shot; the others are the same files.
    edit_story(project, lambda story, shot: shot["wake-up"].update(prompt=shot["wake-up"]["prompt"] + ", yawning"))
    dry = run(["dvc", "repro", "--dry"], project).stdout
    assert [line for line in dry.splitlines() if line.startswith("Running stage")] == ["Running stage 'shots':"]
    result = run(["dvc", "repro"], project).stdout
    assert "6 shot(s) in the story: 5 from the cache, 1 to render" in result and "shot 1/1  wake-up" in result
    edited = manifest(project)
    assert [s["id"] for s in edited["shots"] if not s["from_cache"]] == ["wake-up"] and edited["rendered"] == 1
    after = images(project / "models/shots")
    assert {name for name in before if before[name] != after[name]} <= {"wake-up.png", "storyboard.png"}
    assert edited["shots"][0]["cache_key"] != first["shots"][0]["cache_key"]

    # One shot added, one removed: one image renders; the removed shot's image goes.
    edit_story(project, lambda story, shot: story["shots"].insert(4, {"id": "picnic", "prompt": "having a picnic"}))
    edit_story(project, lambda story, shot: story["shots"].remove(shot["meadow-walk"]))
    result = run(["dvc", "repro"], project).stdout
    assert "6 shot(s) in the story: 5 from the cache, 1 to render" in result
    final = manifest(project)
    assert [s["id"] for s in final["shots"]] == ["wake-up", "into-the-forest", "hello", "picnic", "night-sky", "the-end"]
    assert not (project / "models/shots/meadow-walk.png").exists() and (project / "models/shots/picnic.png").exists()
    assert "Data and pipelines are up to date." in run(["dvc", "status"], project).stdout

    # A story with mistakes renders nothing, says every problem, and leaves outputs and cache as they were.
    kept, cache = images(project / "models/shots"), sorted((project / "data/cache/shots").iterdir())
    edit_story(project, lambda story, shot: shot["into-the-forest"].update(references=["story/references/nowhere.png"]))
    edit_story(project, lambda story, shot: shot["the-end"].update(size="1344x760"))
    failed = run([sys.executable, "stages/shots.py"], project, check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "has 2 problem(s)" in failed.stderr
    assert "shot 'into-the-forest' (shots[1]), references[0]: story/references/nowhere.png does not exist" in failed.stderr
    assert "shot 'the-end' (shots[5]), size: 1344x760: the height 760 is not a multiple of 16" in failed.stderr
    assert images(project / "models/shots") == kept and sorted((project / "data/cache/shots").iterdir()) == cache
    assert manifest(project) == final


def test_make_shots_remote_runware_uses_what_make_publish_registered(project):
    hf_token, key = f"hf_fake_{token_hex(12)}", f"rw_fake_{token_hex(12)}"
    update_params(project, {"publish.retries": 3, "publish.backoff_s": 0.05, "publish.runware.timeout_s": 3})
    with HubStandIn(hf_token) as hub, RunwareStandIn(key) as runware:
        env = tool_env()
        env.pop("HF_HUB_OFFLINE", None), env.pop("TRANSFORMERS_OFFLINE", None)
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", RUNWARE_URL=runware.url, HF_TOKEN=hf_token,
                   HF_REPO_ID="standin-user/bramble-lora", RUNWARE_API_KEY=key)

        def make(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["make", *args, f"VENV={ROOT / '.venv'}"], cwd=project, env=env, capture_output=True,
                                  text=True, timeout=600)

        refused = make("shots", "REMOTE=runware")
        assert refused.returncode != 0 and "nothing has been published yet" in refused.stderr
        assert runware.tasks == []
        assert make("shots", "REMOTE=elsewhere").returncode != 0
        published = subprocess.run([sys.executable, "stages/publish.py", "--push"], cwd=project, env=env,
                                   capture_output=True, text=True, timeout=600)
        assert published.returncode == 0, published.stderr[-3000:]
        air = manifest(project, "publish.json")["runware"]["air"]
        rendered = make("shots", "REMOTE=runware")
        assert rendered.returncode == 0, rendered.stdout[-3000:] + rendered.stderr[-3000:]
        # publish's own test images are 1024x1024; the story's shots 768x1344 (and one 1344x768).
        shots = [t for t in runware.tasks_of("imageInference") if (t["width"], t["height"]) != (1024, 1024)]
    assert len(shots) == 6 and all(t["lora"] == [{"model": air, "weight": 0.8}] for t in shots)
    assert sorted(images(project / "models/shots/runware")) == sorted([f"{i}.png" for i in IDS] + ["storyboard.png"])
    remote = manifest(project, "shots_runware.json")
    assert remote["rendered"] == 6 and remote["adapter"]["air"] == air
    # Runware's images sit inside the shots stage's folder, but not in its output: dvc sees nothing changed
    # (publish's params were changed above, for the stand-ins: the shots stage does not read them).
    assert "Data and pipelines are up to date." in run(["dvc", "status", "shots"], project).stdout
    for path in (project / "metrics/shots_runware.json", project / "models/shots/runware/storyboard.png"):
        assert key.encode() not in path.read_bytes()
    assert key not in rendered.stdout + rendered.stderr
