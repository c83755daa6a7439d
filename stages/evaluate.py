"""evaluate: held-out validation loss of every checkpoint's adapter -> metrics/eval.json and the best adapter."""

import shutil
from pathlib import Path

from charlora import layout
from charlora.cli import log, run_stage
from charlora.evaluation import CheckpointScore, ValidationLoss, heldout_pairs, pick_best
from charlora.fileio import read_json, write_json
from charlora.params import load_params
from charlora.training import log_loss_curve


def main() -> None:
    params = load_params()
    name = params.character.name
    pairs = heldout_pairs(layout.HELDOUT_ROOT / name)
    scorer = ValidationLoss(read_json(layout.TRAINING_DIR / "config.json"), params.tiny_model, params.evaluate)
    log("evaluate", f"held-out loss on {len(pairs)} image(s) at timesteps {scorer.timesteps}")
    base = scorer.score(pairs, None)
    log("evaluate", f"base model (no LoRA): {base:.5f}")
    extracted = read_json(layout.METRICS_DIR / "extract.json")["checkpoints"]
    scores = []
    for index, entry in enumerate(extracted, 1):
        adapter = Path(entry["file"])
        loss = scorer.score(pairs, adapter)
        scores.append(CheckpointScore(entry["step"], adapter, loss))
        log("evaluate", f"[{index}/{len(extracted)}] step {entry['step']}: {loss:.5f} ({loss - base:+.5f} vs base)")
    best = pick_best(scores)
    best_file = layout.LORA_DIR / f"{name}-best.safetensors"
    shutil.copyfile(best.adapter, best_file)
    log_loss_curve([{"step": s.step, "loss": s.val_loss} for s in scores], layout.METRICS_DIR / "eval", metric="val_loss")
    write_json(layout.METRICS_DIR / "eval.json", {
        "base_val_loss": round(base, 6),
        "final_val_loss": round(scores[-1].val_loss, 6),
        "best_step": best.step,
        "best_val_loss": round(best.val_loss, 6),
        "best_file": str(best_file),
        "selection": "lowest held-out validation loss with the LoRA",
        "heldout_images": len(pairs),
        "timesteps": scorer.timesteps,
        "checkpoints": [{"step": s.step, "val_loss": round(s.val_loss, 6)} for s in scores],
    })
    log("evaluate", f"best checkpoint: step {best.step} ({best.val_loss:.5f}) -> {best_file}")


if __name__ == "__main__":
    run_stage("evaluate", main)
