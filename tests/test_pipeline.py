"""The DVC pipeline end to end in a fresh copy of the project, as a user runs it."""

from __future__ import annotations

import json
import sys

import pytest

from charlora.adapters import read_metadata
from tests.conftest import noise_image, run, update_params

DATA_STAGES = ("preprocess", "caption", "merge")


@pytest.fixture
def fast_project(project, tiny_florence2):
    """The shipped sample with a tiny local Florence-2 and small training settings."""
    update_params(project, {"caption.model": str(tiny_florence2), "caption.max_new_tokens": 12, "caption.num_beams": 1,
                            "caption.device": "cpu", "train.resolution": 32, "train.epochs": 1})
    # Without metadata.jsonl, the 9 sample images that have no .txt beside them need machine captions.
    (project / "data/raw/metadata.jsonl").unlink()
    return project


def caption_sources(project):
    return json.loads((project / "metrics/caption.json").read_text())["sources"]


def test_repro_status_param_change_new_image_and_experiments(fast_project):
    project = fast_project
    out = run(["dvc", "repro"], project).stdout
    for stage in (*DATA_STAGES, "base_model", "train", "extract"):
        assert f"Running stage '{stage}'" in out
    assert caption_sources(project) == {"florence2": 9, "user": 5}
    adapter = project / "models/lora/bramble.safetensors"
    assert read_metadata(adapter)["trigger_word"] == "brmbl"
    assert sorted(p.name for p in (project / "data/train/bramble").glob("preview_*.txt")) == ["preview_1.txt", "preview_2.txt"]

    assert "Data and pipelines are up to date." in run(["dvc", "status"], project).stdout
    again = run(["dvc", "repro"], project).stdout
    assert "Running stage" not in again

    # A train-only param change reruns train (and extract once train's output changed), no data stage.
    update_params(project, {"train.learning_rate": 2.0e-4})
    dry = run(["dvc", "repro", "--dry"], project).stdout
    assert [s for s in ("preprocess", "caption", "merge", "base_model", "train")
            if f"Running stage '{s}'" in dry] == ["train"]
    update_params(project, {"train.learning_rate": 1.0e-4})

    # One new raw image: the data stages rerun and only that image is captioned.
    noise_image(project / "data/raw/zz_new_pose.png", (640, 640), seed=7)
    out = run(["dvc", "repro", "merge"], project).stdout
    assert "Running stage 'caption'" in out
    assert caption_sources(project) == {"cache": 9, "florence2": 1, "user": 5}


def test_experiments_side_by_side(fast_project):
    project = fast_project
    (project / "data/raw/metadata.jsonl").write_text("")  # keep captions cheap: tiny model only
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], project)
    run(["dvc", "exp", "run", "-S", "train.lora.rank=8", "-n", "rank8"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    rows = {}
    for commit in shown:
        for exp in [commit, *(e for e in commit.get("experiments") or [])]:
            for revision in exp.get("revs", [exp]):
                data = revision.get("data") or {}
                if data.get("params"):
                    rank = data["params"]["params.yaml"]["data"]["train"]["lora"]["rank"]
                    rows[revision.get("name") or data.get("rev")] = (rank, data["metrics"]["metrics/train.json"]["data"]["steps"])
    assert rows.pop("rank8")[0] == 8
    rows.pop("workspace", None)  # the workspace holds the last experiment's results
    assert [rank for rank, _ in rows.values()] == [16]  # the baseline commit
    table = run(["dvc", "exp", "show", "--no-pager", "--md"], project).stdout
    assert "rank8" in table and "final_loss" in table
