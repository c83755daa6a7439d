"""The story file, sizes per base model, seeds, cache keys and the storyboard (unit tests, no model)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from PIL import Image

from charlora.errors import PipelineError
from charlora.models.registry import SampleDefaults, get_base_model
from charlora.shots.plan import Target, plan_jobs, reference_size, scaled_size
from charlora.shots.story import load_story
from charlora.shots.storyboard import storyboard
from tests.conftest import noise_image, sample_story_dir

TRIGGER = "brmbl"
TINY = get_base_model("flux2-klein-tiny").sampling
REAL = get_base_model("flux2-klein-base-4b").sampling
# A small pretrained model of 128 px at most, as the registry would describe it (64x112 shots).
MICRO_LIKE = replace(TINY, shot_size=(64, 112), max_side=128)


@pytest.fixture
def root(tmp_path) -> Path:
    """A project folder holding the tests' story and its references."""
    shutil.copytree(sample_story_dir(), tmp_path / "project" / "story")
    return tmp_path / "project"


def raw_story(root: Path) -> dict:
    return yaml.safe_load((root / "story/shots.yaml").read_text())


def write_story(root: Path, story: dict) -> None:
    (root / "story/shots.yaml").write_text(yaml.safe_dump(story, sort_keys=False))


def load(root: Path):
    return load_story(Path("story/shots.yaml"), TRIGGER, root)


def target(sampling: SampleDefaults = TINY, sha: str = "a" * 64) -> Target:
    return Target("local", "flux2-klein-tiny", sampling, {"file": "models/lora/x.safetensors", "sha256": sha}, sha, "mflux")


def keys(root: Path, **target_args) -> dict[str, str]:
    return {job.shot.id: job.key for job in plan_jobs(load(root), target(**target_args))}


def test_sample_story_trigger_word_overrides_and_defaults(root):
    story = load(root)
    shots = {shot.id: shot for shot in story.shots}
    assert [shot.id for shot in story.shots] == ["wake-up", "meadow-walk", "into-the-forest", "hello", "night-sky", "the-end"]
    assert story.size == (768, 1344) and story.steps is None and story.guidance is None and story.lora_scale == 0.8
    assert shots["wake-up"].prompt == "brmbl, waking up in a cosy room, stretching, soft morning light through the window"
    assert shots["night-sky"].prompt.startswith("brmbl sitting on a hill")  # {trigger} where the prompt says
    assert shots["the-end"].prompt.startswith("an empty beach") and shots["the-end"].size == (1344, 768)
    assert [ref.file for ref in shots["hello"].references] == ["story/references/forest.png",
                                                               "story/references/pose_waving.png"]
    assert shots["hello"].references[0].size == (288, 512) and len(shots["hello"].references[0].sha256) == 64
    jobs = {job.shot.id: job for job in plan_jobs(story, target())}
    assert jobs["night-sky"].seed == 42 and jobs["wake-up"].seed != jobs["meadow-walk"].seed
    assert (jobs["wake-up"].steps, jobs["wake-up"].guidance) == (TINY.steps, TINY.guidance)  # null: the model's
    assert [jobs[i].variant for i in ("wake-up", "into-the-forest", "hello")] == ["txt2img", "edit", "edit"]
    real = {job.shot.id: job for job in plan_jobs(story, target(REAL))}
    assert (real["wake-up"].steps, real["wake-up"].width, real["wake-up"].height) == (50, 768, 1344)


@pytest.mark.parametrize(("sampling", "size", "expected"), [
    (TINY, (768, 1344), (32, 64)), (TINY, (1344, 768), (64, 32)), (TINY, (1024, 1024), (48, 48)),
    (TINY, (128, 128), (16, 16)),
    (MICRO_LIKE, (768, 1344), (64, 112)), (MICRO_LIKE, (2048, 2048), (128, 128)), (MICRO_LIKE, (1024, 2048), (64, 128)),
    (REAL, (768, 1344), (768, 1344)), (REAL, (1344, 768), (1344, 768)), (REAL, (2048, 128), (2048, 128)),
])
def test_story_sizes_scale_per_base_model(sampling, size, expected):
    assert scaled_size(size, sampling) == expected
    assert all(side % 16 == 0 for side in expected)


def test_references_are_conditioned_at_the_models_scale():
    assert reference_size((288, 512), REAL) == (288, 512)  # under 1 MP: as they are
    assert reference_size((4000, 3000), REAL) == (1168, 880)  # about 1 MP, multiples of 16
    assert reference_size((288, 512), TINY) == (32, 64)
    assert reference_size((384, 384), MICRO_LIKE) == (80, 80)
    assert reference_size((3000, 100), TINY) == (480, 16)  # never under 16 px a side


def test_seeds_and_keys_do_not_depend_on_order_or_ids(root):
    before = {job.shot.prompt: (job.seed, job.key) for job in plan_jobs(load(root), target())}
    story = raw_story(root)
    story["shots"].reverse()
    story["shots"].insert(2, {"id": "new", "prompt": "a new shot in the middle"})
    write_story(root, story)
    after = {job.shot.prompt: (job.seed, job.key) for job in plan_jobs(load(root), target())}
    assert {prompt: after[prompt] for prompt in before} == before
    # Renaming a shot that sets its own seed renders nothing; one that does not gets its new id's noise.
    by_id = {shot["id"]: shot for shot in story["shots"]}
    by_id["night-sky"]["id"], by_id["wake-up"]["id"] = "stars", "good-morning"
    write_story(root, story)
    renamed = {job.shot.prompt: (job.seed, job.key) for job in plan_jobs(load(root), target())}
    assert [prompt for prompt in after if renamed[prompt] != after[prompt]] == [f"{TRIGGER}, {by_id['wake-up']['prompt']}"]


def test_editing_one_shot_changes_one_key_and_the_adapter_or_a_reference_changes_theirs(root):
    first = keys(root)
    story = raw_story(root)
    story["shots"][1]["prompt"] += ", at noon"
    write_story(root, story)
    edited = keys(root)
    assert [i for i in first if first[i] != edited[i]] == ["meadow-walk"]
    noise_image(root / "story/references/pose_waving.png", (384, 384), seed=5)  # the reference's pixels change
    assert [i for i in edited if keys(root)[i] != edited[i]] == ["hello"]
    assert all(keys(root, sha="b" * 64)[i] != k for i, k in keys(root).items())  # a new adapter: every shot
    assert keys(root)["wake-up"] != keys(root, sampling=MICRO_LIKE)["wake-up"]


BAD_STORIES = [  # (change to the sample story, fragments of the message)
    (lambda s: s["shots"][2].update(references=["story/references/missing.png"]),
     ["shot 'into-the-forest' (shots[2]), references[0]", "story/references/missing.png does not exist"]),
    (lambda s: s["shots"][2].update(references=["story/references/notes.png"]),
     ["shot 'into-the-forest' (shots[2]), references[0]", "not an image PIL can read"]),
    (lambda s: s["shots"][2].update(references=["story/references/cut.png"]),
     ["shot 'into-the-forest' (shots[2]), references[0]", "corrupt, truncated or unreadable"]),
    (lambda s: s["shots"][3].update(references=["story/references/forest.png"] * 5),
     ["shot 'hello' (shots[3]), references", "5 images; at most 4"]),
    (lambda s: s["shots"][5].update(size="1344x770"),
     ["shot 'the-end' (shots[5]), size", "the height 770 is not a multiple of 16", "nearest is 768"]),
    (lambda s: s.update(size="770x1344"), ["size: 770x1344: the width 770 is not a multiple of 16"]),
    (lambda s: s["shots"][4].update(id="wake-up"),
     ["shot 'wake-up' (shots[4]), id", "'wake-up' is also the id of shots[0]"]),
    (lambda s: s["shots"][1].update(promt="typo"), ["shot 'meadow-walk' (shots[1])", "unknown key 'promt'"]),
    (lambda s: s.update(steeps=4), ["steeps: unknown key"]),
    (lambda s: s["shots"][0].update(prompt="  "), ["shot 'wake-up' (shots[0]), prompt", "empty"]),
    (lambda s: s["shots"][0].pop("prompt"), ["shot 'wake-up' (shots[0]), prompt", "empty"]),
    (lambda s: s["shots"][0].update(id="Wake Up!"), ["shot 'Wake Up!' (shots[0]), id", "not a valid id"]),
    (lambda s: s["shots"][0].update(id="storyboard"), ["shot 'storyboard' (shots[0]), id", "reserved"]),
    (lambda s: s["shots"][4].update(trigger=False), ["shot 'night-sky' (shots[4]), prompt", "has {trigger}"]),
    (lambda s: s["shots"][2].update(references=["data/raw/bramble_meadow.jpg"]),
     ["references[0]", "is outside story/; copy it into story/references/"]),
    (lambda s: s["shots"][2].update(references=["story/references/link.png"]),
     ["references[0]", "leads outside the project folder"]),
    (lambda s: s["shots"][2].update(references=["../outside.png"]), ["references[0]", "leads outside the project folder"]),
    (lambda s: s.update(shots=[]), ["shots: missing or empty"]),
]


@pytest.mark.parametrize(("change", "fragments"), BAD_STORIES)
def test_bad_story_is_named_by_shot_and_field(root, change, fragments):
    (root / "story/references/notes.png").write_text("not a picture")
    full = (root / "story/references/pose_waving.png").read_bytes()
    (root / "story/references/cut.png").write_bytes(full[: len(full) // 2])
    noise_image(root.parent / "outside.png", (64, 64))
    os.symlink(root.parent / "outside.png", root / "story/references/link.png")
    (root / "data/raw").mkdir(parents=True)
    noise_image(root / "data/raw/bramble_meadow.jpg", (64, 64))
    story = raw_story(root)
    change(story)
    write_story(root, story)
    with pytest.raises(PipelineError) as raised:
        load(root)
    message = str(raised.value)
    assert "nothing was rendered" in message
    for fragment in fragments:
        assert fragment in message, message


def test_every_problem_is_reported_at_once(root):
    story = raw_story(root)
    story["shots"][0]["prompt"] = ""
    story["shots"][1]["size"] = "100x100"
    story["shots"][2]["references"] = ["story/references/missing.png"]
    story["lora_scale"] = "strong"
    write_story(root, story)
    with pytest.raises(PipelineError) as raised:
        load(root)
    message = str(raised.value)
    assert "has 4 problem(s)" in message
    for fragment in ("shot 'wake-up' (shots[0]), prompt", "shot 'meadow-walk' (shots[1]), size",
                     "shot 'into-the-forest' (shots[2]), references[0]", "lora_scale: 'strong' is not a number"):
        assert fragment in message, message


def test_a_story_that_is_not_yaml_or_is_missing_is_refused(root):
    (root / "story/shots.yaml").write_text("shots: [\n")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load(root)
    (root / "story/shots.yaml").unlink()
    with pytest.raises(PipelineError, match="not found"):
        load(root)


def test_storyboard_keeps_order_aspect_and_wraps_rows():
    shots = [(f"shot-{i}", "brmbl, a very long prompt " * 6, Image.new("RGB", size, (40 * i, 90, 160)), [])
             for i, size in enumerate([(32, 64), (64, 32), (48, 48), (32, 64), (32, 64), (32, 64), (32, 64), (32, 64)])]
    shots[0][3].append(Image.new("RGB", (30, 60), (255, 0, 0)))  # a reference: a thumbnail in the lower left corner
    sheet = storyboard(shots, "story/shots.yaml: 8 shot(s)")
    assert sheet.getpixel((14 + 4 + 10, 40 + 320 - 30)) == (255, 0, 0)
    assert sheet.width <= 1400 and sheet.height > 2 * 320  # two rows
    # The second shot (landscape) is twice as wide as tall at the row height, pasted at its own colour.
    first_row_y = 40 + 160
    xs = [x for x in range(sheet.width) if sheet.getpixel((x, first_row_y)) == (40, 90, 160)]
    assert len(xs) == 640


def test_the_adapter_is_keyed_by_its_weights_not_its_metadata(tmp_path, monkeypatch, project_params):
    """A retrain to the same weights writes a file that differs only in its creation time: no shot renders again."""
    import numpy as np
    from safetensors.numpy import save

    from charlora.fileio import write_json
    from charlora.lora.safetensors import with_metadata
    from charlora.shots.run import local_target

    monkeypatch.chdir(tmp_path)
    write_json(Path("models/training/config.json"), {"model": "flux2-klein-tiny", "model_path": "models/base/x"})
    best = Path("models/lora/bramble-best.safetensors")
    best.parent.mkdir(parents=True)
    identities = []
    for created, value in (("2026-01-01", 1.0), ("2026-02-02", 1.0), ("2026-02-02", 2.0)):
        data = save({"transformer.a.lora_A.weight": np.full((2, 4), value, np.float32)})
        best.write_bytes(with_metadata(data, {"created_at": created}))
        target = local_target(project_params)[0]
        identities.append((target.lora, target.adapter["sha256"]))
    assert identities[0][0] == identities[1][0] != identities[2][0]  # same weights, same key
    assert identities[0][1] != identities[1][1]  # the files themselves differ
