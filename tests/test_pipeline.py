"""The DVC pipeline end to end in a fresh copy of the project, as a user runs it."""

from __future__ import annotations

import json

import pytest

from charlora.lora.safetensors import read_metadata
from tests.conftest import ROOT, clone_project, fast_copy, noise_image, run, update_params

pytestmark = pytest.mark.slow

DATA_STAGES = ("preprocess", "caption", "merge")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, pipeline_run):
    """A private copy of the session's `dvc repro` run: (project, its output, the final adapter's tensors sha256)."""
    source, out = pipeline_run
    project = clone_project(source, tmp_path_factory.mktemp("first") / "project")
    return project, out, json.loads((project / "metrics/extract.json").read_text())["final"]["tensors_sha256"]


def caption_sources(project):
    return json.loads((project / "metrics/caption.json").read_text())["sources"]


def test_repro_status_param_change_and_new_image(first_run):
    project, out, _ = first_run
    for stage in (*DATA_STAGES, "base_model", "train", "extract", "evaluate", "publish", "shots"):
        assert f"Running stage '{stage}'" in out
    assert caption_sources(project) == {"florence2": 9, "user": 5}
    # One progress display per stage: none of mflux's tqdm bars or per-checkpoint LoRA banners.
    for noise in ("Loading 1 LoRA file", "Applied to", "it/s]", "Saving components"):
        assert noise not in out, noise
    assert "train: warm-up done in" in out and "evaluate: image 1/" in out
    # The default run (train.preset: auto) names the preset it chose, the estimate and the expected time, and records them.
    assert "train: memory preset " in out and "(auto: flux2-klein-tiny fits every preset" in out
    assert "train: estimated peak " in out and "train: expected time: about " in out and "train: memory: measured peak" in out
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["preset"] in ("16gb", "24gb", "32gb", "48gb", "64gb") and train["memory"]["fits"] is True
    assert train["estimated_peak_gb"] > 0 and train["memory"]["measured"]["peak_mlx_mb"] > 0
    adapter = project / "models/lora/bramble.safetensors"
    assert read_metadata(adapter)["trigger_word"] == "brmbl"
    assert sorted(p.name for p in (project / "data/train/bramble").glob("preview_*.txt")) == ["preview_1.txt", "preview_2.txt"]

    evaluation = json.loads((project / "metrics/eval.json").read_text())
    assert (project / f"models/samples/contact_step{evaluation['best_step']:06d}.png").exists()
    assert (project / "models/samples/comparison.png").exists() and (project / "models/lora/bramble-best.safetensors").exists()
    assert 0 <= evaluation["leakage"] and -1 <= evaluation["identity"] <= 1 and evaluation["base_val_loss"] > 0

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


def test_second_fresh_copy_gives_the_same_adapter_and_experiments_compare(tmp_path, tiny_florence2, first_run):
    project = fast_copy(tmp_path / "project", tiny_florence2)
    run(["dvc", "repro"], project)
    # Determinism: the same data and params from a fresh copy give bit-identical adapter weights on CPU.
    final = json.loads((project / "metrics/extract.json").read_text())["final"]
    assert final["tensors_sha256"] == first_run[2]
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
    assert "rank8" in table and "final_loss" in table and "best_score" in table and "base_val_loss" in table
    # make exp: the changed param and the deciding metrics, readable in a 120-column terminal.
    shown = run(["make", "-s", "exp", f"VENV={ROOT / '.venv'}"], project, env={"COLUMNS": "120"}).stdout
    lines = shown.splitlines()
    headers = " ".join(line for line in lines if "Experiment" in line)
    for column in ("best_score", "identity", "best_val_loss", "train.lora.rank", "final_loss", "seconds_per_step",
                   "peak_rss_mb", "estimated_peak_gb"):
        assert column in headers, (column, shown)
    assert "…" not in shown and max(map(len, lines)) <= 120, shown
    assert "tensors_sha256" not in shown and "learning_rate" not in shown and "Created" not in shown
    assert "rank8" in shown
    everything = run(["make", "-s", "exp-all", f"VENV={ROOT / '.venv'}"], project, env={"COLUMNS": "10000"}).stdout
    assert "heldout_fraction" in everything and "tensors_sha256" in everything
    # The resolved memory settings and the preset they came from are recorded (metrics/train.json).
    assert "settings.gradient_checkpointing" in everything and "preset" in everything
    run(["dvc", "plots", "show"], project)
    html = (project / "dvc_plots/index.html").read_text()
    assert "metrics/train/plots/metrics/loss.tsv" in html and "metrics/eval/plots/metrics/val_loss.tsv" in html
