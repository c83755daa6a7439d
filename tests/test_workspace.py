"""The suite does not depend on the user's workspace: its params.yaml, data/raw and story can say anything."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace

import yaml

import tests.conftest as conftest
from charlora.fileio import sha256_file
from tests.conftest import FIXTURE_PARAMS, FIXTURE_STORY, ROOT, copy_files, copy_project, noise_image

WORKSPACE_READS = re.compile(r"""ROOT\s*/\s*["'](params\.yaml|data/raw|story)""")


def test_no_test_reads_the_workspace_params_or_pictures():
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "tests").rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if WORKSPACE_READS.search(line) and path.name != "test_workspace.py"]
    assert not offenders, f"tests read the user's params.yaml, data/raw or story: {offenders}"


def fake_workspace(target):
    """A copy of this project as a user may have it: `dvc exp run -S train.lora.rank=8` applied, own pictures."""
    copy_files(ROOT, target)
    raw = yaml.safe_load(FIXTURE_PARAMS.read_text())
    raw["train"]["lora"]["rank"] = 8
    raw["character"] = {"name": "hero", "trigger": "hrro"}
    (target / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.rmtree(target / "data/raw")
    noise_image(target / "data/raw/hero_01.png", (640, 640), seed=99)
    (target / "data/raw/hero_01.txt").write_text("my own hero\n")
    shutil.rmtree(target / "story", ignore_errors=True)
    noise_image(target / "story/references/my_scene.png", (320, 320), seed=98)
    (target / "story/shots.yaml").write_text("shots:\n  - id: my-shot\n    prompt: my own story\n")
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    return target


def test_fixtures_ignore_the_workspace_params_and_pictures(tmp_path, monkeypatch, project_params):
    workspace = fake_workspace(tmp_path / "workspace")
    monkeypatch.setattr(conftest, "ROOT", workspace)
    project = copy_project(tmp_path / "project")
    # The copy gets the tests' params and the sample character, not the workspace's.
    assert (project / "params.yaml").read_text() == FIXTURE_PARAMS.read_text()
    sample = {p.name: sha256_file(p) for p in conftest.sample_raw_dir().iterdir()}
    assert {p.name: sha256_file(p) for p in (project / "data/raw").iterdir()} == sample
    assert "hero_01.png" not in sample and "bramble_night.jpg" in sample
    # ... and the tests' story with the sample references, not the workspace's story.
    assert (project / "story/shots.yaml").read_text() == FIXTURE_STORY.read_text()
    assert sorted(p.name for p in (project / "story/references").iterdir()) == ["forest.png", "pose_waving.png"]
    # The session's params are the fixture's: rank 16 and bramble, whatever the workspace says.
    assert project_params.train.lora.rank == 16 and project_params.character.name == "bramble"
    assert replace(conftest.fixture_params(), base_model=project_params.base_model) == project_params
    assert project_params.base_model.name == conftest.TINY  # unit tests run on the random tiny model
