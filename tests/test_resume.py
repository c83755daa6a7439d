"""Interrupting training (SIGINT, then SIGKILL) and running it again resumes and gives the same adapter."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from charlora.lora.extract import adapter_from_checkpoint
from charlora.lora.safetensors import tensors_sha256
import pytest

from tests.conftest import TINY, make_train_dir, place_in_project, run, tool_env, update_params

pytestmark = pytest.mark.slow

CHECKPOINTS = Path("models/training/run/checkpoints")


def complete_checkpoints(project: Path) -> list[int]:
    steps = []
    for path in sorted((project / CHECKPOINTS).glob("*_checkpoint.zip")):
        try:
            with zipfile.ZipFile(path) as archive:
                if "checkpoint.json" in archive.namelist():
                    steps.append(int(path.name[:7]))
        except (zipfile.BadZipFile, OSError):
            pass  # still being written
    return steps


def interrupt_after_checkpoint(project: Path, beyond: int, sig: int) -> subprocess.CompletedProcess:
    process = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project, env=tool_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any(step > beyond for step in complete_checkpoints(project)):
            process.send_signal(sig)
            break
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def final_adapter_sha(project: Path) -> str:
    last = sorted((project / CHECKPOINTS).glob("*_checkpoint.zip"))[-1]
    return tensors_sha256(adapter_from_checkpoint(last))


def test_interrupted_training_resumes_to_the_same_adapter(project, tiny_flux2):
    # alpha 32 at rank 16 (scale 2): mflux itself would resume at scale 1 (training.resumed_at_trained_scale)
    # The tiny model goes where base_model.path null looks for it (params may only name folders in the project).
    place_in_project(project, tiny_flux2, "models/base/flux2-klein-tiny")
    update_params(project, {"base_model.name": TINY, "train.resolution": 32, "train.epochs": 40, "train.checkpoint_every": 10,
                            "train.lora.alpha": 32})
    make_train_dir(project / "data/train/bramble")  # 3 images: 120 steps

    first = interrupt_after_checkpoint(project, beyond=0, sig=signal.SIGINT)
    assert first.returncode == 130, first.stderr[-2000:]
    assert "interrupted" in first.stderr and "run `dvc repro` again" in first.stderr
    reached = max(complete_checkpoints(project))
    assert 10 <= reached < 120

    second = interrupt_after_checkpoint(project, beyond=reached, sig=signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    assert f"resuming from {reached:07d}_checkpoint.zip (step {reached})" in second.stdout
    reached_again = max(complete_checkpoints(project))
    assert reached < reached_again < 120

    third = run([sys.executable, "stages/train.py"], project)
    assert f"resuming from {reached_again:07d}_checkpoint.zip" in third.stdout
    assert max(complete_checkpoints(project)) == 120
    resumed_sha = final_adapter_sha(project)

    # The same run without interruptions gives bit-identical adapter weights (CPU training is deterministic).
    shutil.rmtree(project / "models/training")
    fresh = run([sys.executable, "stages/train.py"], project)
    assert "starting fresh" in fresh.stdout
    # One honest progress display: the warm-up apart from the steps, no mflux bar or banner.
    assert "train: warm-up done in" in fresh.stdout and "train: step 120/120  loss" in fresh.stdout
    assert "it/s]" not in fresh.stdout + fresh.stderr and "%|" not in fresh.stdout + fresh.stderr
    assert final_adapter_sha(project) == resumed_sha


def repro_until_checkpoint(project: Path, beyond: int, sig: int) -> subprocess.CompletedProcess:
    """`dvc repro train` in its own process group, stopped like a user would (Ctrl-C or kill) after a checkpoint."""
    process = subprocess.Popen(["dvc", "repro", "train"], cwd=project, env=tool_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any(step > beyond for step in complete_checkpoints(project)):
            os.killpg(process.pid, sig)
            break
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_dvc_repro_resumes_after_ctrl_c_and_kill(project):
    """The user's flow: Ctrl-C (SIGINT to the whole process group), then kill -9, then `dvc repro` again."""
    update_params(project, {"base_model.name": TINY, "train.resolution": 32, "train.epochs": 8, "train.checkpoint_every": 10})
    run(["dvc", "repro", "merge", "base_model"], project)  # 13 training images: 104 steps

    interrupted = repro_until_checkpoint(project, beyond=0, sig=signal.SIGINT)
    assert interrupted.returncode != 0
    reached = max(complete_checkpoints(project))
    killed = repro_until_checkpoint(project, beyond=reached, sig=signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert f"resuming from {reached:07d}_checkpoint.zip" in killed.stdout

    finished = run(["dvc", "repro", "train"], project)
    assert "resuming from" in finished.stdout
    assert max(complete_checkpoints(project)) == 104
    assert "Data and pipelines are up to date." in run(["dvc", "status", "train"], project).stdout
