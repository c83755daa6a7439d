"""Shared fixtures: tiny models built once per session, temporary project copies, image writers.

The suite never depends on the user's workspace: tests get their params from
``tests/fixtures/params.yaml`` (a copy of the shipped defaults), their pictures from the sample
character drawn by ``tools/make_sample_character.py`` and their story from
``tests/fixtures/story/shots.yaml`` with references drawn by ``tools/make_sample_story.py``. A
project copy holds neither the workspace's ``params.yaml``, its ``data/raw`` nor its ``story/``, and
model folders a test points params at are placed inside the copy (nothing outside a project is read
through a path in its params).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import yaml
from _pytest.nodeid import NodeId
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TINY = "flux2-klein-tiny"  # the random model built in seconds: tests of code paths, not of learning
FIXTURE_PARAMS = Path(__file__).resolve().parent / "fixtures" / "params.yaml"
FIXTURE_STORY = Path(__file__).resolve().parent / "fixtures" / "story" / "shots.yaml"
# Workspace files and folders a project copy never takes from ROOT: the tests bring their own.
NOT_COPIED = ("params.yaml", "dvc.lock")
NOT_COPIED_FOLDERS = ("data/raw/", "story/")


def fixture_params():
    """The tests' params (tests/fixtures/params.yaml), whatever the workspace's params.yaml says."""
    from charlora.params import load_params

    return load_params(FIXTURE_PARAMS)


@functools.cache
def sample_raw_dir(full: bool = False) -> Path:
    """The shipped sample character, drawn once per process by tools/make_sample_character.py: all 40 shots
    (``full``, the default run's), or the 14 that vary file format and size, which is what tests of code paths
    on the tiny model need (each picture costs the tiny model's full-size VAE seconds to encode)."""
    tool = _load_tool("make_sample_character")
    out = Path(tempfile.mkdtemp(prefix="charlora-sample-")) / "raw"
    tool.write_sample(out, None if full else tool.FORMAT_SHOTS)
    return out


def _load_tool(name: str) -> Any:
    """A script of tools/ as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@functools.cache
def sample_story_dir() -> Path:
    """The tests' story folder: the fixture story and the references drawn by tools/make_sample_story.py."""
    out = Path(tempfile.mkdtemp(prefix="charlora-story-")) / "story"
    _load_tool("make_sample_story").write_references(out / "references")
    shutil.copyfile(FIXTURE_STORY, out / "shots.yaml")
    return out


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: this venv's python and dvc first on PATH, offline."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with :func:`tool_env` (plus ``env``); raise with its output if it fails and ``check``."""
    result = subprocess.run(cmd, cwd=cwd, env={**tool_env(), **(env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def update_params(project: Path, updates: dict[str, Any]) -> None:
    """Set dotted keys in a project's params.yaml (e.g. {"train.epochs": 1})."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in updates.items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def noise_image(path: Path, size: tuple[int, int], seed: int = 0, mode: str = "RGB", **save: Any) -> Path:
    """A random-texture image (distinct hashes for distinct seeds), saved by suffix."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


@pytest.fixture(scope="session")
def tiny_florence2(tmp_path_factory) -> Path:
    from tests.tiny_florence2 import build_tiny_florence2

    return build_tiny_florence2(tmp_path_factory.mktemp("florence2"))


@pytest.fixture(scope="session")
def project_params():
    """The tests' params on the random tiny model: unit tests of code paths (the default is the micro model)."""
    params = fixture_params()
    return replace(params, base_model=replace(params.base_model, name=TINY))


@pytest.fixture(scope="session")
def tiny_flux2(tmp_path_factory, project_params) -> Path:
    from charlora.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("flux2") / "flux2-klein-tiny"
    build_tiny_model(project_params.tiny_model, out)
    return out


def copy_files(root: Path, target: Path, untracked: bool = False, skip=lambda name: False) -> None:
    """Copy the files git tracks in ``root`` (and the untracked ones it does not ignore) to ``target``."""
    listed = ["git", "ls-files", "-z"] + (["-co", "--exclude-standard"] if untracked else [])
    for name in filter(None, subprocess.run(listed, cwd=root, capture_output=True, check=True).stdout.decode().split("\0")):
        if (root / name).is_file() and not skip(name):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, target / name)


def copy_project(target: Path, full_sample: bool = False) -> Path:
    """A fresh copy of this project's code (tracked and new files), as its own git repo (like a clone).

    Its params.yaml is the tests' (tests/fixtures/params.yaml), its data/raw the sample character (all of it
    with ``full_sample``, else its 14 format shots: :func:`sample_raw_dir`) and its story the tests'
    (tests/fixtures/story), whatever the workspace holds; it has no dvc.lock, so every stage runs from scratch.
    """
    copy_files(ROOT, target, untracked=True, skip=lambda name: name in NOT_COPIED or name.startswith(NOT_COPIED_FOLDERS))
    shutil.copyfile(FIXTURE_PARAMS, target / "params.yaml")
    shutil.copytree(sample_raw_dir(full_sample), target / "data/raw")
    shutil.copytree(sample_story_dir(), target / "story")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, check=True, capture_output=True)
    return target


def params_with(params, train=None, lora=None, base_model=None):
    new_train = replace(params.train, **(train or {}))
    if lora:
        new_train = replace(new_train, lora=replace(params.train.lora, **lora))
    return replace(params, train=new_train, base_model=replace(params.base_model, **(base_model or {})))


def make_train_dir(folder: Path, count: int = 3, size=(64, 48)) -> Path:
    for index in range(count):
        noise_image(folder / f"char_{index + 1:03d}.png", size, seed=index)
        (folder / f"char_{index + 1:03d}.txt").write_text(f"brmbl, test picture {index}\n")
    (folder / "preview_1.txt").write_text("brmbl, waving\n")
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory, project_params, tiny_flux2):
    """One real mflux training run on the tiny model: 3 images, 32 px, 6 steps, checkpoints every 3."""
    from charlora.train.run import train

    root = tmp_path_factory.mktemp("trained")
    data = make_train_dir(root / "data")
    params = params_with(project_params, base_model={"name": TINY, "path": str(tiny_flux2)},
                         train={"resolution": 32, "epochs": 2, "checkpoint_every": 3, "learning_rate": 1e-3})
    metrics = train(params, data, root / "training", root / "live", tiny_flux2)
    return params, root, metrics


def place_in_project(project: Path, folder: Path, relative: str) -> str:
    """Copy a model folder into the project (params may only name folders inside it); returns ``relative``."""
    shutil.copytree(folder, project / relative, dirs_exist_ok=True)
    return relative


def fast_copy(target: Path, florence: Path) -> Path:
    """A fresh copy of the project: the shipped sample on the random tiny model, with a tiny local Florence-2 and
    small training settings (tests of code paths; tests/test_learning.py runs the default micro model)."""
    project = copy_project(target)
    model = place_in_project(project, florence, "models/local/florence2-tiny")  # gitignored: your own local models
    update_params(project, {"base_model.name": TINY, "caption.model": model, "caption.max_new_tokens": 12, "caption.num_beams": 1,
                            "caption.device": "cpu", "train.resolution": 32, "train.epochs": 1,
                            "evaluate.max_prompts": 2, "evaluate.image_checkpoints": 1})
    # Without metadata.jsonl, the 9 sample images that have no .txt beside them need machine captions.
    (project / "data/raw/metadata.jsonl").unlink()
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fast settings"], project)
    return project


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, tiny_florence2) -> tuple[Path, str]:
    """One `dvc repro` of the whole pipeline in a fresh copy (fast settings): (project, dvc's output).

    Tests that change the project work on their own :func:`clone_project` of it.
    """
    project = fast_copy(tmp_path_factory.mktemp("pipeline") / "project", tiny_florence2)
    result = run(["dvc", "repro"], project)
    return project, result.stdout + result.stderr


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The default pipeline (the micro model), as a user runs it after a fresh clone: (project, metrics/eval.json,
    dvc's output). Tests that change the project work on their own :func:`clone_project` of it."""
    project = copy_project(tmp_path_factory.mktemp("default") / "project", full_sample=True)
    result = run(["dvc", "repro"], project, timeout=1800)
    return project, json.loads((project / "metrics/eval.json").read_text()), result.stdout + result.stderr


def clone_project(source: Path, target: Path) -> Path:
    """A copy of a project folder with its outputs, dvc cache and git history."""
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture
def project(tmp_path) -> Path:
    return copy_project(tmp_path / "project")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With xdist (`make test` runs `pytest -n 2 --dist loadgroup`), the tests that share one costly session run
    go to one worker, so that run is made once; every other test goes wherever a worker is free.

    xdist's loadgroup puts tests whose node id ends in "@<group>" on one worker. xdist 3.8.0 writes that suffix to
    ``item._nodeid`` for tests marked ``xdist_group``, but pytest 9.2 reads the node id from ``item._id``, so its
    marks group nothing (each test of the learning suite then remade the default run on its own worker). The
    suffix is set here, where pytest reads it."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    for item in items:
        shared = next((name for name in ("default_run", "pipeline_run") if name in item.fixturenames), None)
        if shared:
            item._id = NodeId.parse(f"{item.nodeid}@{shared}")
