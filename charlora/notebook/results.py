"""What the trained LoRA gives, in a notebook: evaluate (the best checkpoint, every checkpoint's metrics as a
table and as plots, the contact sheets, the comparison with the base model), export (files, formats and
their checks) and shots (the story's storyboard, once the project has that stage)."""

from __future__ import annotations

from pathlib import Path

from charlora import layout
from charlora.models.registry import TINY
from charlora.notebook.commands import project_root
from charlora.notebook.views import figure_png, missing, new_figure, picture, read, table
from charlora.params import load_params

# The image metrics of a shortlisted checkpoint, plotted against its step (README: Evaluation).
IMAGE_METRICS = ("identity", "identity_gain", "prompt_fit", "leakage", "diversity", "score")
RANDOM_MODEL_NOTE = ("note: the embedded tiny model has random weights; every number and picture below comes from "
                     "the real code paths but means nothing (README: Evaluation).")


def show_evaluate(root: Path | None = None) -> None:
    """The best checkpoint, every checkpoint's metrics (table and plots), each contact sheet and ``comparison.png``."""
    root = root or project_root()
    if missing(root, "evaluate", "metrics/eval.json"):
        return
    report = read(root, "metrics/eval.json")
    if load_params(root / "params.yaml").base_model.name == TINY:
        print(RANDOM_MODEL_NOTE)
    print(f"best checkpoint: step {report['best_step']}, score {report['best_score']} -> {report['best_file']} "
          f"({report['selection']})")
    table({key: value for key, value in report.items() if key not in ("checkpoints", "selection")},
          index="metrics/eval.json", title="the best checkpoint's metrics, and the base model's:")
    rows = [{**row, "best": "best" if row["step"] == report["best_step"] else ""} for row in report["checkpoints"]]
    table(rows, index="step", title="every checkpoint (image metrics only for those with the lowest held-out loss):")
    picture(metric_plots(report), "metrics by checkpoint step:")
    samples = root / layout.SAMPLES_DIR
    for sheet in sorted(samples.glob("contact_step*.png")):
        step = int(sheet.stem.removeprefix("contact_step"))
        picture(sheet, f"{sheet.relative_to(root)}: the LoRA of step {step}{' (best)' if step == report['best_step'] else ''}"
                       ", with the trigger word (top) and without it (bottom):")
    if (samples / "comparison.png").is_file():
        picture(samples / "comparison.png", f"{layout.SAMPLES_DIR / 'comparison.png'}: the base model (top) and the "
                                            f"best LoRA, step {report['best_step']} (bottom), same prompts and seeds:")


def metric_plots(report: dict) -> bytes:
    """Held-out loss of every checkpoint (and of the base model), and the image metrics of the shortlisted ones."""
    figure, (losses, metrics) = new_figure(columns=2, width=5, height=3.4)
    rows = report["checkpoints"]
    losses.plot([r["step"] for r in rows], [r["val_loss"] for r in rows], "o-", label="with the LoRA")
    losses.axhline(report["base_val_loss"], color="grey", linestyle="--", label="base model")
    losses.set_title("held-out loss (lower is better)")
    scored = [r for r in rows if "score" in r]
    for name in IMAGE_METRICS:
        if any(name in r for r in scored):
            metrics.plot([r["step"] for r in scored if name in r], [r[name] for r in scored if name in r], "o-", label=name)
    metrics.set_title("image metrics of the shortlisted checkpoints")
    metrics.set_xlim(losses.get_xlim())
    for axes in (losses, metrics):
        axes.axvline(report["best_step"], color="#d9534f", alpha=0.4, linewidth=3, label="best")
        axes.ticklabel_format(axis="y", useOffset=False)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure_png(figure)


def show_export(root: Path | None = None) -> None:
    """Each exported file: adapter, format, size, sha256 and the result of every check; which tools load which."""
    root = root or project_root()
    if missing(root, "export", str(layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME)):
        return
    report = read(root, str(layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME))
    print(f"export: {'every file verified' if report['all_verified'] else 'NOT every file verified'} "
          f"(report: {layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME}; numbers: metrics/export.json)")
    rows = []
    for role, formats in report.items():
        if role in ("all_verified", "used_by"):
            continue
        for fmt, entry in formats.items():
            rows.append({"file": Path(entry["file"]).name, "adapter": role, "format": fmt,
                         "size (KB)": round(entry["size"] / 1024, 1), "sha256": entry["sha256"][:16], "keys": entry["keys"],
                         "layers": entry["layers"], "max delta error": entry["max_delta_error"],
                         "loaded by diffusers": entry["loaded_by_diffusers"], "verified": entry["verified"]})
    table(rows, index="file", title=f"files in {layout.EXPORT_DIR}:")
    table(report.get("used_by", {}), index="format", title="which tools load which format:")


def show_shots(root: Path | None = None) -> None:
    """The storyboard of the story's shots and one row per shot (once the project has the shots stage)."""
    root = root or project_root()
    if missing(root, "shots", "metrics/shots.json"):
        return
    manifest = read(root, "metrics/shots.json")
    print(f"shots: {manifest.get('shots_total')} shot(s), {manifest.get('rendered')} rendered now, "
          f"{manifest.get('from_cache')} from the cache")
    if manifest.get("storyboard") and (root / manifest["storyboard"]).is_file():
        picture(root / manifest["storyboard"], f"{manifest['storyboard']}:")
    table([{"id": s.get("id"), "prompt": s.get("prompt"), "size": f"{s.get('width')}x{s.get('height')}",
            "seed": s.get("seed"), "references": len(s.get("references", [])), "s/image": s.get("seconds_per_image"),
            "from cache": s.get("from_cache")} for s in manifest.get("shots", [])], index="id")
