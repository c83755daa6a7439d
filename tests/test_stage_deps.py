"""dvc.yaml lists, for every stage, exactly the project modules its script runs (DVC's promise: edit code,
the right stages rerun; edit code a stage does not run, nothing reruns)."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("stage_deps", ROOT / "tools" / "stage_deps.py")
stage_deps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_deps)

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def code_deps(stage: dict) -> set[Path]:
    """The project modules a dvc.yaml stage lists (data, model and validation deps left out)."""
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", [])]
    return {Path(d) for d in deps if stage_deps.is_code_dep(d)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_import_closure_of_its_script(name):
    script = next(word for word in shlex.split(STAGES[name]["cmd"]) if word.startswith("stages/"))
    expected = stage_deps.closure(ROOT / script)
    listed = code_deps(STAGES[name])
    missing, extra = sorted(map(str, expected - listed)), sorted(map(str, listed - expected))
    assert not missing and not extra, (
        f"dvc.yaml stage '{name}': missing deps {missing} (edits to them rerun nothing), extra deps {extra} "
        f"(edits to them rerun it for nothing). `python tools/stage_deps.py --write` fixes dvc.yaml.")


def test_every_stage_script_is_a_stage():
    scripts = {Path(word).stem for stage in STAGES.values() for word in shlex.split(stage["cmd"]) if word.startswith("stages/")}
    assert scripts == set(stage_deps.stage_scripts())


def test_closure_follows_imports_in_functions_and_package_inits(tmp_path):
    files = {
        "stages/s.py": "import _helper\nfrom charlora import a\n",
        "stages/_helper.py": "import os\n",
        "charlora/__init__.py": "",
        "charlora/a.py": "import os\n\ndef f():\n    from charlora.sub.b import thing\n    return thing\n",
        "charlora/sub/__init__.py": "",
        "charlora/sub/b.py": "from . import c\nthing = 1\n",
        "charlora/sub/c.py": "",
        "charlora/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = {p.as_posix() for p in stage_deps.closure(tmp_path / "stages/s.py", tmp_path)}
    assert found == set(files) - {"charlora/unused.py"}
