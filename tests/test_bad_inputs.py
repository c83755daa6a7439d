"""Messy folders and bad params through the stage scripts: a clear message, no traceback, the right
exit code, raw files unchanged, and no half-written output left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from charlora.fileio import read_json, sha256_file
from tests.conftest import noise_image, run, update_params

pytestmark = pytest.mark.slow  # each runs stage scripts in a subprocess


def raw_hashes(project):
    return {p.name: sha256_file(p) for p in sorted((project / "data/raw").iterdir()) if not p.is_symlink()}


def stage(project, name):
    return run([sys.executable, f"stages/{name}.py"], project, check=False)


def assert_clean_failure(result, *fragments):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_messy_folder_is_cleaned_reported_and_untouched(project):
    raw = project / "data/raw"
    (raw / "zero.jpg").write_bytes(b"")
    full = (raw / "bramble_night.jpg").read_bytes()
    (raw / "cut short.jpg").write_bytes(full[: len(full) // 2])
    (raw / "readme.png").write_text("not a picture")
    Image.new("1", (30000, 30000)).save(raw / "bomb.png", optimize=True)
    noise_image(raw / "cmyk photo.jpg", (800, 600), seed=11, mode="CMYK")
    noise_image(raw / "tiny.png", (120, 90), seed=12)
    noise_image(raw / "banner.png", (3000, 300), seed=13)
    (raw / "bramble_night copy.jpg").write_bytes(full)
    Image.open(raw / "bramble_meadow.jpg").resize((1000, 750)).save(raw / "bramble_meadow_small.jpg", quality=80)
    noise_image(raw / "ünïcode näme.png", (700, 700), seed=14)
    (raw / "lonely.txt").write_text("a caption without a picture")
    (raw / "ünïcode näme.txt").write_bytes(b"\xff\xfe\x00broken")
    before = raw_hashes(project)

    result = stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    assert raw_hashes(project) == before
    report = read_json(project / "metrics/preprocess.json")
    reasons = {r["source"]: r["reason"] for r in report["rejects"]}
    assert set(reasons) == {"zero.jpg", "cut short.jpg", "readme.png", "bomb.png", "tiny.png", "banner.png",
                            "bramble_night copy.jpg", "bramble_meadow_small.jpg"}
    assert sorted(p.name for p in (project / "data/rejected").iterdir()) == sorted(reasons)
    for name in reasons:
        assert f"rejected {name}: " in result.stdout
    sources = [m["source"] for m in read_json(project / "data/processed/manifest.json")]
    assert "cmyk photo.jpg" in sources and "ünïcode näme.png" in sources
    warnings = "\n".join(report["warnings"])
    assert "lonely.txt: caption file with no image" in warnings and "ünïcode näme.txt: not UTF-8" in warnings


def test_empty_raw_folder_fails_clearly_and_keeps_the_last_good_output(project):
    assert stage(project, "preprocess").returncode == 0
    good = {p.name: sha256_file(p) for p in (project / "data/processed").iterdir()}
    for path in (project / "data/raw").iterdir():
        path.unlink()
    result = stage(project, "preprocess")
    assert_clean_failure(result, "no images in data/raw", "Put 10-30 pictures")
    assert {p.name: sha256_file(p) for p in (project / "data/processed").iterdir()} == good
    assert not [p for p in (project / "data").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("updates, message", [
    ({"preprocess.size": "big"}, "'preprocess.size' must be of type int"),
    ({"preprocess.min_side": 0}, "'preprocess.min_side' is 0; it must be at least 16"),
    ({"preprocess.colour": "red"}, "unknown key 'preprocess.colour'"),
])
def test_bad_params_fail_before_any_work(project, updates, message):
    update_params(project, updates)
    result = stage(project, "preprocess")
    assert_clean_failure(result, message)
    assert not (project / "data/processed").exists()


@pytest.mark.parametrize("updates, message", [
    ({"train.lora.single_targets": ["attn.to_qkv"]}, "'train.lora.single_targets[0]' is 'attn.to_qkv'; allowed values: attn.to_qkv_mlp_proj"),
    ({"base_model.path": "models/base/nowhere"}, "base_model.path 'models/base/nowhere' is not a FLUX.2 Klein model folder"),
    ({"base_model.name": "flux2-klein-4b"}, "step-distilled"),
])
def test_bad_training_setup_fails_before_loading_the_model(project, updates, message):
    train_dir = project / "data/train/bramble"
    noise_image(train_dir / "char_001.png", (64, 64))
    (train_dir / "char_001.txt").write_text("brmbl, a test\n")
    update_params(project, updates)
    result = stage(project, "train")
    assert_clean_failure(result, message)
    assert not (project / "models/training").exists()


def test_symlinks_out_of_data_raw_are_rejected_and_never_copied(project, tmp_path):
    outside = tmp_path / "outside"
    (outside / "more").mkdir(parents=True)
    (outside / "notes.txt").write_text("a private text file outside the project")
    noise_image(outside / "more" / "extra.png", (700, 700), seed=21)
    raw = project / "data/raw"
    (raw / "escape.png").symlink_to(outside / "notes.txt")
    (raw / "more").symlink_to(outside / "more", target_is_directory=True)
    result = stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    reasons = {r["source"]: r["reason"] for r in read_json(project / "metrics/preprocess.json")["rejects"]}
    assert reasons["escape.png"].startswith(f"symlink to {outside / 'notes.txt'} outside data/raw")
    assert reasons["more"].startswith(f"symlink to {outside / 'more'} (a folder) outside data/raw")
    assert "rejected escape.png: symlink to" in result.stdout and "(not read, not copied)" in result.stdout
    rejected = project / "data/rejected"
    assert not rejected.exists() or not {"escape.png", "more"} & {p.name for p in rejected.iterdir()}
    for path in (project / "data").rglob("*"):  # the stage outputs (data/raw itself holds the links)
        if path.is_file() and raw not in path.parents:
            assert b"private text file" not in path.read_bytes(), path


def test_a_data_raw_symlinked_outside_the_project_stops_with_a_clear_error(project, tmp_path):
    (project / "data/raw").rename(tmp_path / "pictures")
    (project / "data/raw").symlink_to(tmp_path / "pictures", target_is_directory=True)
    result = stage(project, "preprocess")
    assert_clean_failure(result, "data/raw leads outside the project folder")
    assert not (project / "data/processed").exists()


def test_a_model_folder_outside_the_project_is_refused(project, tmp_path):
    (tmp_path / "florence").mkdir()
    update_params(project, {"caption.model": str(tmp_path / "florence")})
    result = stage(project, "preprocess")
    assert_clean_failure(result, "'caption.model' is", "leads outside the project folder", "Move or copy it into the project")


def test_a_stage_started_outside_the_venv_reruns_itself_with_the_projects_venv(project):
    """`.venv/bin/dvc repro` without the venv on PATH runs stages with the system python: they still work."""
    bare = [sys.executable, "-S", "stages/export.py", "--help"]  # -S: no site-packages, like a bare system python
    missing = run(bare, project, check=False)
    assert missing.returncode == 1 and "Run `make setup`" in missing.stderr and "Traceback" not in missing.stderr
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    helped = run(bare, project)
    assert "usage: export.py" in helped.stdout
