"""make bench: pipeline overheads and speeds, measured in one run, into metrics/bench.json.

Works in a temporary copy of the project (your workspace is not touched):
- train stage against a direct mflux ``TrainingRunner.train`` call on the same config and data:
  wall time and peak RSS, and their ratios (our overhead: validation, fingerprinting, progress, dvclive);
- seconds per training step of the tiny model at 64 and 128 px;
- no-op ``dvc repro`` against ``dvc status``; which stages rerun after a train-only param change and after
  adding one image (and how many images get machine-captioned then);
- preprocess throughput against a plain PIL loop (open, RGB, LANCZOS resize, PNG) on large JPEGs;
- the export stage on the tiny model, and the export checks of a rank-16 LoRA on every block layer of the
  real FLUX.2 Klein 4B geometry (conversion, delta check, diffusers load without base weights);
- the pre-flight memory estimate against the train stage's measured peaks (mlx's and the resident set),
  over configs of rank, resolution, batch, quantization and gradient checkpointing on the tiny model (its
  default geometry, and a wider one whose layers mflux can quantize), and on the micro model when
  ``models/micro/flux2-klein-micro`` is there.

``python tools/bench.py --only memory`` runs one section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_project, noise_image, tool_env, update_params  # noqa: E402  (shared helpers, no pytest needed)

TINY_DEFAULTS = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16,
                 "text_hidden_size": 32}  # tests/fixtures/params.yaml's tiny_model geometry

DIRECT_TRAIN = """
import sys
from charlora.params import load_params
from charlora.models.tiny import register_tiny_model
register_tiny_model(load_params().tiny_model)
from mflux.models.common.training.runner import TrainingRunner
TrainingRunner.train(config_path=sys.argv[1], resume_path=None)
"""

PLAIN_PIL = """
import sys, time
from pathlib import Path
from PIL import Image
src, out, size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for i, path in enumerate(sorted(src.glob("*.jpg"))):
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / max(image.size)
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS).save(out / f"{i}.png")
"""


REAL_EXPORT = """
import sys, time, torch
from pathlib import Path
from charlora.lora.export import base_geometry, export_adapter, layer_shape
from charlora.lora.formats import Lora, LoraLayer, write_lora
from charlora.models.flux2_layers import DOUBLE_TARGETS, SINGLE_TARGETS
from charlora.params import load_params
geometry = base_geometry("flux2-klein-base-4b", load_params().tiny_model)
generator = torch.Generator().manual_seed(0)
paths = [f"transformer_blocks.{b}.{t}" for b in range(geometry["num_layers"]) for t in DOUBLE_TARGETS]
paths += [f"single_transformer_blocks.{b}.{t}" for b in range(geometry["num_single_layers"]) for t in SINGLE_TARGETS]
layers = {}
for path in paths:
    out, inp = layer_shape(path, geometry)
    layers[path] = LoraLayer(torch.randn(16, inp, generator=generator) * 0.01, torch.randn(out, 16, generator=generator) * 0.01)
source = Path(sys.argv[1]) / "real.safetensors"
write_lora(Lora(layers, {}, "mflux"), "mflux", source)
started = time.perf_counter()
results = export_adapter(source, Path(sys.argv[1]), "real", ["diffusers", "comfyui", "kohya"], geometry, print)
assert all(r.verified for r in results), [r.summary() for r in results]
print("EXPORT_S", time.perf_counter() - started, "MB", source.stat().st_size / 1e6)
"""


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{stdout[-3000:]}")
    peak_mb = usage.ru_maxrss / (1 << 20) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return wall, peak_mb, stdout


def bench_train(project: Path) -> dict:
    """Train stage vs a direct mflux call on the same config and data (64 px), then s/step at 128 px."""
    py = sys.executable
    update_params(project, {"train.resolution": 64, "train.epochs": 2})
    measure(["dvc", "repro", "merge", "base_model"], project)
    stage_wall, stage_rss, _ = measure([py, "stages/train.py"], project)
    train_metrics = json.loads((project / "metrics/train.json").read_text())
    # The same mflux config, written beside the original so its relative data path still resolves.
    config = json.loads((project / "models/training/config.json").read_text())
    config["checkpoint"]["output_path"] = "models/direct/run"
    config_path = project / "models/direct/config.json"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(json.dumps(config))
    direct_wall, direct_rss, _ = measure([py, "-c", DIRECT_TRAIN, str(config_path)], project)
    shutil.rmtree(project / "models/direct")
    return {
        "train_stage_wall_s": round(stage_wall, 2), "direct_mflux_wall_s": round(direct_wall, 2),
        "wall_ratio": round(stage_wall / direct_wall, 3),
        "train_stage_peak_rss_mb": round(stage_rss, 1), "direct_mflux_peak_rss_mb": round(direct_rss, 1),
        "peak_rss_ratio": round(stage_rss / direct_rss, 3),
        "train_steps": train_metrics["steps"], "images": 13,
    }


def bench_seconds_per_step(project: Path) -> dict:
    """s/step of the tiny model at 64 and 128 px, on 2 images (encoding them at 128 px takes a while on a CPU)."""
    per_resolution = {}
    small_character(project)
    for resolution in (64, 128):
        update_params(project, {"character.name": "bench", "train.resolution": resolution, "train.epochs": 6})
        measure([sys.executable, "stages/train.py"], project)
        per_resolution[str(resolution)] = json.loads((project / "metrics/train.json").read_text())["seconds_per_step"]
    return per_resolution


def bench_dvc(project: Path) -> dict:
    """No-op `dvc repro` against `dvc status`, and which stages rerun after a train param change or a new image."""
    from tests.tiny_florence2 import build_tiny_florence2

    # A tiny local Florence-2 captions images without a caption file (no download); set before the
    # baseline run so that only the new image below changes what caption sees.
    build_tiny_florence2(project / "models/local/florence2-tiny")  # gitignored; models/base is the base_model stage's output
    update_params(project, {"caption.model": "models/local/florence2-tiny", "caption.max_new_tokens": 12,
                            "caption.num_beams": 1})
    measure(["dvc", "commit", "-f", "train"], project)  # train already ran outside dvc above
    measure(["dvc", "repro"], project)
    repro_wall, _, out = measure(["dvc", "repro"], project)
    status_wall, _, _ = measure(["dvc", "status"], project)
    # Which stages a train-only param change would rerun (extract and evaluate follow train's new output).
    update_params(project, {"train.learning_rate": 2.0e-4})
    _, _, dry = measure(["dvc", "repro", "--dry"], project)
    update_params(project, {"train.learning_rate": 1.0e-4})
    # One new image without a caption file: the data stages rerun and only that image is machine-captioned.
    noise_image(project / "data/raw/zz_new_pose.png", (800, 800), seed=99)
    _, _, added = measure(["dvc", "repro", "merge"], project)
    return {"noop_repro_s": round(repro_wall, 2), "status_s": round(status_wall, 2),
            "noop_repro_ran_stages": out.count("Running stage"),
            "train_param_change_reruns": ran_stages(dry),
            "new_image_reruns": ran_stages(added),
            "new_image_caption_sources": json.loads((project / "metrics/caption.json").read_text())["sources"]}


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def bench_preprocess(tmp: Path, count: int = 8) -> dict:
    raw, plain_out = tmp / "big_raw", tmp / "plain_out"
    plain_out.mkdir()
    for index in range(count):
        noise_image(raw / f"big_{index}.jpg", (4000, 3000), seed=index, quality=92)
    script = ("import sys; from pathlib import Path; from dataclasses import replace; from charlora.params import load_params; "
              "from charlora.data.images import preprocess; p = replace(load_params().preprocess, duplicate_threshold=0); "
              "o = Path(sys.argv[2]); o.mkdir(); r = o.with_name('rej'); r.mkdir(); preprocess(Path(sys.argv[1]), o, r, p)")
    ours, _, _ = measure([sys.executable, "-c", script, str(raw), str(tmp / "ours_out")], ROOT)
    plain, _, _ = measure([sys.executable, "-c", PLAIN_PIL, str(raw), str(plain_out), "1024"], ROOT)
    return {"images": count, "source_size": "4000x3000 JPEG", "preprocess_s": round(ours, 2), "plain_pil_loop_s": round(plain, 2),
            "preprocess_images_per_s": round(count / ours, 2), "plain_pil_images_per_s": round(count / plain, 2),
            "speedup": round(plain / ours, 2), "cores": os.cpu_count()}


def bench_export(project: Path, tmp: Path) -> dict:
    """The export stage on the tiny model, and the three exports of a real-geometry LoRA with all checks."""
    stage_wall, stage_peak, _ = measure([sys.executable, "stages/export.py"], project)
    (tmp / "real_export").mkdir()
    wall, peak, out = measure([sys.executable, "-c", REAL_EXPORT, str(tmp / "real_export")], ROOT)
    _, export_s, _, size_mb = next(line for line in out.splitlines() if line.startswith("EXPORT_S")).split()
    return {"tiny_stage_s": round(stage_wall, 2), "tiny_stage_peak_rss_mb": round(stage_peak, 1),
            "real_4b_rank16_lora_mb": round(float(size_mb), 1), "real_4b_three_formats_verified_s": round(float(export_s), 2),
            "real_4b_process_s": round(wall, 2), "real_4b_peak_rss_mb": round(peak, 1)}


# The memory estimate's configs: (label, tiny_model geometry changes, train values). The wide geometry
# (2 + 4 blocks of 8 x 64 heads, a 256-wide text encoder) has layers mflux can quantize (multiples of 64).
WIDE = {"num_layers": 2, "num_single_layers": 4, "num_attention_heads": 8, "attention_head_dim": 64,
        "text_hidden_size": 256}
MEMORY_CONFIGS = [
    ("tiny 64 px rank 16", {}, {"resolution": 64}),
    ("tiny 128 px", {}, {"resolution": 128}),
    ("tiny 64 px rank 64", {}, {"resolution": 64, "lora.rank": 64}),
    ("tiny 64 px batch 2", {}, {"resolution": 64, "batch_size": 2}),
    ("wide tiny 128 px", WIDE, {"resolution": 128}),
    ("wide tiny 128 px batch 2", WIDE, {"resolution": 128, "batch_size": 2}),
    ("wide tiny 128 px 8-bit", WIDE, {"resolution": 128, "quantize": 8}),
    ("wide tiny 256 px checkpointing", WIDE, {"resolution": 256, "gradient_checkpointing": True}),
]
MEMORY_DEFAULTS = {"resolution": None, "batch_size": None, "quantize": None, "gradient_checkpointing": None, "lora.rank": 16}
MICRO = "flux2-klein-micro"
MICRO_CONFIGS = [("micro 256 px", {"resolution": 256}), ("micro 256 px rank 64", {"resolution": 256, "lora.rank": 64}),
                 ("micro 512 px", {"resolution": 512}), ("micro 256 px batch 2", {"resolution": 256, "batch_size": 2})]


def small_character(project: Path, name: str = "bench", count: int = 2) -> None:
    """A training folder of ``count`` sample images (the estimate's runs need steps, not many encodings)."""
    small = project / "data/train" / name
    if small.exists():
        return
    small.mkdir(parents=True)
    for image in sorted((project / "data/train/bramble").glob("char_*.png"))[:count]:
        for path in (image, image.with_suffix(".txt")):
            shutil.copy2(path, small / path.name)


def memory_row(label: str, project: Path) -> dict:
    """One train stage run: its estimate beside its measured peaks."""
    measure([sys.executable, "stages/train.py"], project)
    metrics = json.loads((project / "metrics/train.json").read_text())
    estimate, measured = metrics["memory"]["estimate"], metrics["memory"]["measured"]
    mlx_gb, rss_gb = measured["peak_mlx_mb"] / 1024, measured["peak_rss_mb"] / 1024
    row = {"config": label, "preset": metrics["preset"], "steps": metrics["steps"],
           "estimate_mlx_gb": estimate["mlx_gb"], "measured_mlx_gb": round(mlx_gb, 3),
           "ratio_mlx": round(estimate["mlx_gb"] / mlx_gb, 3),
           "estimate_total_gb": estimate["total_gb"], "measured_rss_gb": round(rss_gb, 3),
           "ratio_rss": round(estimate["total_gb"] / rss_gb, 3),
           "estimated_phase": estimate["peak_phase"],
           "measured_phase": "steps" if measured["steps_peak_mlx_mb"] >= measured["warmup_peak_mlx_mb"] else "warm-up",
           "seconds_per_step": metrics["seconds_per_step"]}
    print(f"bench: memory {label}: estimate {row['estimate_mlx_gb']:.3f} GB / measured {row['measured_mlx_gb']:.3f} GB "
          f"= {row['ratio_mlx']}", flush=True)
    return row


def bench_memory(project: Path) -> dict:
    """The pre-flight estimate against measured peaks, on the tiny model (and micro when it is shipped)."""
    small_character(project)
    # One epoch: the first step already holds every weight and the activations (mflux evaluates the whole model then).
    base = {"character.name": "bench", "train.epochs": 1, "train.preset": "auto", "train.checkpoint_every": 1000,
            "base_model.name": "flux2-klein-tiny"}
    rows = []
    for label, geometry, values in MEMORY_CONFIGS:
        update_params(project, {**base, **{f"tiny_model.{k}": v for k, v in {**TINY_DEFAULTS, **geometry}.items()},
                                **{f"train.{k}": v for k, v in {**MEMORY_DEFAULTS, **values}.items()}})
        measure([sys.executable, "stages/base_model.py"], project)
        rows.append(memory_row(label, project))
    micro_note = micro_rows(project, base, rows)
    update_params(project, {**{f"tiny_model.{k}": v for k, v in TINY_DEFAULTS.items()},
                            **{f"train.{k}": v for k, v in MEMORY_DEFAULTS.items()}})
    measure([sys.executable, "stages/base_model.py"], project)
    ratios = [row["ratio_mlx"] for row in rows]
    return {"rows": rows, "within_25_percent": sum(0.75 <= r <= 1.25 for r in ratios), "configs": len(rows),
            "ratio_mlx_min": min(ratios), "ratio_mlx_max": max(ratios),
            "ratio_rss_min": min(r["ratio_rss"] for r in rows), "ratio_rss_max": max(r["ratio_rss"] for r in rows),
            "micro": micro_note}


def micro_rows(project: Path, base: dict, rows: list[dict]) -> str:
    """The micro model's configs, when its folder and registry entry exist; otherwise why not."""
    from charlora.models.registry import BASE_MODELS

    if not (ROOT / "models/micro" / MICRO).is_dir() or MICRO not in BASE_MODELS:
        return (f"skipped: models/micro/{MICRO} is not in this checkout or {MICRO} is not a registered base model "
                "(the micro model is not shipped yet)")
    for label, values in MICRO_CONFIGS:
        update_params(project, {**base, "base_model.name": MICRO,
                                **{f"train.{k}": v for k, v in {**MEMORY_DEFAULTS, **values}.items()}})
        measure([sys.executable, "stages/base_model.py"], project)  # installs the micro model (once; then a no-op)
        rows.append(memory_row(label, project))
    update_params(project, {"base_model.name": "flux2-klein-tiny"})
    return f"{len(MICRO_CONFIGS)} configs"


SECTIONS = ("train", "dvc", "export", "steps", "preprocess", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    only = set(parser.parse_args().only or SECTIONS)
    out = ROOT / "metrics/bench.json"
    results = json.loads(out.read_text()) if out.exists() and only != set(SECTIONS) else {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        project = copy_project(tmp / "project")
        # The speed figures are the tiny model's (README: Benchmarks); the memory section adds micro rows itself.
        update_params(project, {"base_model.name": "flux2-klein-tiny"})
        if only & {"train", "dvc", "export"}:
            print("bench: train stage vs direct mflux ...", flush=True)
            results["train"] = bench_train(project)  # also brings data/train and the tiny model that the others use
        elif only & {"steps", "memory"}:
            measure(["dvc", "repro", "merge", "base_model"], project)
        if only & {"dvc", "export"}:
            print("bench: no-op dvc repro vs dvc status ...", flush=True)
            dvc = bench_dvc(project)
            if "dvc" in only:
                results["dvc"] = dvc
        if "export" in only:
            # export needs the adapters of that full `dvc repro`, before the s/step runs rename the character
            print("bench: export (tiny stage, real 4B geometry) ...", flush=True)
            results["export"] = bench_export(project, tmp)
        if "memory" in only:
            print("bench: memory estimate vs measured peaks ...", flush=True)
            results["memory"] = bench_memory(project)
        if "steps" in only:
            print("bench: seconds per step at 64 and 128 px ...", flush=True)
            results.setdefault("train", {})["tiny_seconds_per_step"] = bench_seconds_per_step(project)
        if "preprocess" in only:
            print("bench: preprocess vs a plain PIL loop ...", flush=True)
            results["preprocess"] = bench_preprocess(tmp)
    import mlx.core as mx

    results["machine"] = {"platform": sys.platform, "cores": os.cpu_count(), "mlx_device": str(mx.default_device())}
    out.write_text(json.dumps(results, indent=2) + "\n")
    rows = [(f"{section}.{key}", value) for section in ("train", "dvc", "preprocess", "export", "memory")
            if section in results for key, value in results[section].items() if key != "rows"]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for row in results.get("memory", {}).get("rows", []):
        print(f"memory  {row['config']:<32} estimate {row['estimate_mlx_gb']:.3f} / measured {row['measured_mlx_gb']:.3f} GB "
              f"= {row['ratio_mlx']:.2f}  (with runtime {row['estimate_total_gb']:.3f} / RSS {row['measured_rss_gb']:.3f} "
              f"= {row['ratio_rss']:.2f}; peak: estimated {row['estimated_phase']}, measured {row['measured_phase']})")
    print(f"bench: written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
