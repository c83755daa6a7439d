"""The notebook's setup check: where it runs (Python, mlx and its device, mflux, dvc), the base model, the
character and trigger word, the params that matter, and which stages `dvc repro` would run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from charlora.models.registry import TINY
from charlora.notebook.commands import command_env, project_root, venv_bin
from charlora.notebook.views import table
from charlora.params import load_params
from charlora.train.settings import base_model_for

# The params that decide a run, as dotted keys of params.yaml (a key the file lacks is left out).
KEY_PARAMS = ("preprocess.size", "preprocess.resize", "caption.captioner", "caption.model", "prior.per_image",
              "merge.heldout_fraction", "train.preset", "train.resolution", "train.epochs", "train.batch_size",
              "train.learning_rate", "train.quantize", "train.lora.rank", "train.lora.alpha",
              "evaluate.max_prompts", "evaluate.image_checkpoints", "evaluate.lora_scale", "export.formats",
              "publish.hf.repo_id", "publish.runware.enabled")


def setup(root: Path | None = None) -> None:
    """Find the project (the folder above ``notebooks/``), make it the working directory (paths then read as from a
    shell in the project), and show the setup check."""
    root = project_root(root)
    os.chdir(root)
    show_setup(root)


def show_setup(root: Path | None = None) -> None:
    """Tables of the machine and tools, the character and base model, and the key params; then `dvc status`."""
    root = root or project_root()
    params = load_params(root / "params.yaml")  # checked as the stages check it: a bad key is named here
    table(environment(root), index="environment")
    model = base_model_for(params)
    folder = model.local_dir or params.base_model.path
    state = ("ready" if (root / folder / "transformer").is_dir() else "not there yet: the base_model stage prepares it"
             ) if folder else "downloaded by mflux from the Hugging Face Hub on first use"
    table({"character.name": params.character.name, "character.trigger": params.character.trigger,
           "base_model.name": model.name + (" (embedded, random weights: its pictures mean nothing)" if model.name == TINY
                                            else ""),
           "base model weights": f"{folder or model.hf_repo} ({state})", "base model needs": model.memory},
          index="character and base model")
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    table({key: _show(value) for key in KEY_PARAMS if (value := _dotted(raw, key)) is not _ABSENT},
          index="params.yaml", title="the params that matter (null: the base model's default; all in params.yaml):")
    shown = subprocess.run([str(venv_bin() / "dvc"), "status", "--json"], cwd=root, env=command_env(),
                           capture_output=True, text=True)
    print(status_line(json.loads(shown.stdout or "{}")) if shown.returncode == 0 else f"dvc status failed:\n{shown.stderr}")


def status_line(changed: dict) -> str:
    """`dvc status --json` in words: which stages `dvc repro` would run, and why."""
    if not changed:
        return "dvc status: everything is up to date; `dvc repro` runs nothing."
    lines = ["dvc status: `dvc repro` runs these stages (and the stages after them that their outputs change):"]
    for stage, changes in changed.items():
        reasons = []
        for change in changes:
            for kind, paths in (change.items() if isinstance(change, dict) else [(str(change), {})]):
                names = list(paths) if isinstance(paths, dict) else [str(paths)]
                reasons.append(kind + (f": {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}" if names else ""))
        lines.append(f"  {stage}: {'; '.join(reasons)}")
    return "\n".join(lines)


def environment(root: Path) -> dict[str, str]:
    """Where the notebook runs: project, Python, mlx and its device, mflux, dvc."""
    import mlx.core as mx  # after charlora's import prepared mlx for this machine

    return {"project": str(root), "python": f"{sys.executable} ({platform.python_version()})",
            "machine": f"{platform.system()} {platform.machine()}",
            "mlx": f"{mx.__version__} on {mx.default_device()}{_accelerator(mx)}",
            "mflux": _version("mflux"), "dvc": _version("dvc")}


def _accelerator(mx) -> str:
    if mx.metal.is_available():
        return " (Metal)"
    if hasattr(mx, "cuda") and mx.cuda.is_available():
        return " (CUDA)"
    return " (no Metal or CUDA: training runs on the CPU)"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed: run `make setup`"


_ABSENT = object()


def _dotted(tree: dict, key: str):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _show(value) -> str:
    return "null" if value is None else str(value)
