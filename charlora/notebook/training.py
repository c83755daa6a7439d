"""The training stages in a notebook: train (what it cost, the settings it resolved, mflux's config, the loss
curve) and extract (the adapter's provenance metadata, every checkpoint's adapter)."""

from __future__ import annotations

import json
from pathlib import Path

from charlora import layout
from charlora.lora.safetensors import read_metadata
from charlora.notebook.commands import project_root
from charlora.notebook.views import figure_png, flatten, missing, new_figure, picture, read, table

LOSS_FILE = layout.TRAINING_DIR / "loss.jsonl"


def show_train(root: Path | None = None) -> None:
    """``metrics/train.json`` (time, memory, device and, where recorded, the memory preset and its estimate), the
    resolved training settings, mflux's training config and the loss curve."""
    root = root or project_root()
    if missing(root, "train", "metrics/train.json"):
        return
    metrics = read(root, "metrics/train.json")
    table(flatten({key: value for key, value in metrics.items() if key != "settings"}), index="metrics/train.json",
          title="what training gave and cost:")
    table(metrics.get("settings", {}), index="setting",
          title="resolved training settings (params.yaml, with null values from the base model's defaults):")
    config_file = root / layout.TRAINING_DIR / "config.json"
    if config_file.is_file():
        table(flat_config(json.loads(config_file.read_text(encoding="utf-8"))), index=str(layout.TRAINING_DIR / "config.json"),
              title="mflux's training config, as the train stage wrote it:")
    if (root / LOSS_FILE).is_file():
        picture(loss_curve(root), f"training loss by step ({LOSS_FILE}):")


def flat_config(config: dict) -> dict:
    """mflux's training config one line per setting (``optimizer.learning_rate``); the LoRA targets counted."""
    targets = config.get("lora_layers", {}).get("targets", [])
    summary = f"{len(targets)} ({', '.join(t['module_path'] for t in targets[:3])}{', ...' if len(targets) > 3 else ''})"
    return flatten({**config, "lora_layers": {**config.get("lora_layers", {}), "targets": summary}})


def loss_curve(root: Path) -> bytes:
    """The loss of each step with a moving average, and the held-out loss of each checkpoint once evaluated."""
    rows = [json.loads(line) for line in (root / LOSS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    steps, losses = [row["step"] for row in rows], [row["loss"] for row in rows]
    window = len(losses) // 10
    figure, (axes,) = new_figure(width=7, height=3.5)
    axes.plot(steps, losses, color="#b0c4de" if window > 1 else "#1f4e99", linewidth=1, label="loss per step")
    if window > 1:  # a moving mean once there are enough steps for one
        smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                  for i in range(len(losses))]
        axes.plot(steps, smooth, color="#1f4e99", linewidth=2, label=f"mean of {window} steps")
    evaluation = root / "metrics/eval.json"
    if evaluation.is_file():
        points = json.loads(evaluation.read_text(encoding="utf-8"))["checkpoints"]
        axes.plot([p["step"] for p in points], [p["val_loss"] for p in points], "o-", color="#d9534f",
                  label="held-out loss (evaluate)")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure_png(figure)


def show_extract(root: Path | None = None) -> None:
    """The final adapter's provenance metadata and every checkpoint's adapter with its tensors' sha256."""
    root = root or project_root()
    if missing(root, "extract", "metrics/extract.json"):
        return
    extract = read(root, "metrics/extract.json")
    final = extract["final"]
    metadata = dict(sorted(read_metadata(root / final["file"]).items()))
    if "lora_targets" in metadata:
        targets = json.loads(metadata["lora_targets"])
        metadata["lora_targets"] = "; ".join(f"{t['module_path']} {_blocks(t.get('blocks'))}" for t in targets)
    table(metadata, index=f"{final['file']} metadata", title=f"provenance of the final adapter (step {final['step']}):")
    table([{"step": c["step"], "file": c["file"], "size (KB)": round((root / c["file"]).stat().st_size / 1024, 1),
            "tensors_sha256": c["tensors_sha256"][:16]} for c in extract["checkpoints"]], index="step",
          title="the adapter of every checkpoint (tensors_sha256 ignores metadata: equal weights, equal hash):")


def _blocks(blocks: dict | None) -> str:
    if not blocks:
        return ""
    if "indices" in blocks:
        return f"blocks {blocks['indices']}"
    return f"blocks {blocks.get('start')}-{blocks.get('end')}"
