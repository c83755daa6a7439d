"""The data stages in a notebook: preprocess (raw vs processed, what was rejected and why), caption (each
picture with its caption and where it came from; editing one), prior (the base model's pictures beside
their captions) and merge (the training / held-out split)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from charlora import layout
from charlora.fileio import write_text_atomic
from charlora.notebook.commands import project_root, repro
from charlora.notebook.views import html_table, missing, open_picture, picture, read, sheet, table
from charlora.params import load_params

# What each caption source means (metrics/caption.json counts them).
CAPTION_SOURCES = {
    "user": "your caption: data/raw/<picture>.txt, or its line in data/raw/metadata.jsonl",
    "cache": "a machine caption kept from an earlier run (data/cache/captions)",
    "florence2": "captioned by Florence-2 in the last run",
}


def show_preprocess(root: Path | None = None) -> None:
    """Raw pictures beside their cleaned copies (one sheet), and a table of every raw file: kept as which
    ``char_NNN`` at which size, or rejected with its reason."""
    root = root or project_root()
    if missing(root, "preprocess", "metrics/preprocess.json", "data/processed/manifest.json"):
        return
    report, manifest = read(root, "metrics/preprocess.json"), read(root, "data/processed/manifest.json")
    print(f"preprocess: {report['accepted']} of {report['raw_files']} raw files kept, {report['rejected']} rejected; "
          f"long side {report['size']} px ({report['resize']}); {report['user_captions']} with your caption")
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    raw_dir, processed_dir = root / layout.RAW_DIR, root / layout.PROCESSED_DIR
    cells = []
    for entry in manifest:
        raw = raw_dir / entry["source"]
        # Only pictures preprocess kept, and never through a link leading out of data/raw.
        pictures = [open_picture(raw, 160)] if raw.is_file() and layout.is_inside(raw, raw_dir) else []
        cells.append((pictures + [open_picture(processed_dir / f"{entry['name']}.png", 160)],
                      [entry["source"], f"{entry['original_width']}x{entry['original_height']} -> "
                                        f"{entry['name']} {entry['width']}x{entry['height']}"]))
    picture(sheet(cells, columns=3), "raw (left) and processed (right):")
    rows = [{"raw file": e["source"], "outcome": e["name"], "raw size": f"{e['original_width']}x{e['original_height']}",
             "processed size": f"{e['width']}x{e['height']}", "your caption": "yes" if e.get("user_caption") else "",
             "reason": ""} for e in manifest]
    rows += [{"raw file": r["source"], "outcome": "rejected", "raw size": "", "processed size": "", "your caption": "",
              "reason": r["reason"] + ("" if r["quarantined"] else " (not read, not copied)")} for r in report["rejects"]]
    table(sorted(rows, key=lambda row: row["raw file"]), index="raw file",
          title=f"every raw file (rejects: {report['rejected']}, copies in {layout.REJECTED_DIR}):")


def show_captions(root: Path | None = None) -> None:
    """Each processed picture as a thumbnail with its caption and source, and the sources counted."""
    root = root or project_root()
    if missing(root, "caption", "data/captioned/captions.json", "data/processed/manifest.json"):
        return
    records = read(root, "data/captioned/captions.json")
    raw_names = {entry["name"]: entry["source"] for entry in read(root, "data/processed/manifest.json")}
    counts = Counter(record["source"] for record in records)
    table([{"source": source, "captions": count, "meaning": CAPTION_SOURCES.get(source, "machine caption")}
           for source, count in sorted(counts.items())], index="source", title=f"{len(records)} captions by source:")
    html_table([{"picture": root / layout.PROCESSED_DIR / f"{r['name']}.png", "name": r["name"],
                 "raw file": raw_names.get(r["name"], ""), "source": r["source"], "caption": r["caption"]}
                for r in records], images=["picture"])


def edit_captions(edits: dict[str, str], root: Path | None = None, rerun: bool = True) -> None:
    """Write each edited caption as your caption of that picture, ``data/raw/<picture>.txt`` (it wins over
    metadata.jsonl and Florence-2), then rerun caption and show the captions again.

    Keys are processed names (``char_003``) or raw file names (``bramble_snow.png``); the trigger word is put
    first by the caption stage, so it may be left out. Empty ``edits``: nothing happens.
    """
    root = root or project_root()
    if not edits:
        print("no caption edits: set CAPTION_EDITS = {'char_003': 'sitting in the snow, on the left'} and run this "
              "cell (or edit data/raw/<picture>.txt yourself and run nb.repro('caption')).")
        return
    if missing(root, "preprocess", "data/processed/manifest.json"):
        return
    sources = {entry["name"]: entry["source"] for entry in read(root, "data/processed/manifest.json")}
    sources.update({source: source for source in list(sources.values())})
    unknown = sorted(set(edits) - set(sources))
    if unknown:
        raise KeyError(f"no picture {', '.join(unknown)}; use a name such as {next(iter(sources))} "
                       f"(see nb.show_captions()).")
    for key, text in edits.items():
        if not text.strip():
            raise ValueError(f"the caption for {key} is empty; an empty caption file is ignored by preprocess.")
        target = root / layout.RAW_DIR / f"{Path(sources[key]).stem}.txt"
        write_text_atomic(target, text.strip() + "\n")
        print(f"{key}: wrote {target.relative_to(root)}")
    if rerun:
        repro("caption", root=root)
        show_captions(root)


def show_prior(root: Path | None = None) -> None:
    """Each training picture and its caption beside the base model's pictures for that caption without the trigger
    word (prior preservation), or one line when it is off for this base model."""
    root = root or project_root()
    if missing(root, "prior", "metrics/prior.json"):
        return
    summary = read(root, "metrics/prior.json")
    if not summary["pictures"]:
        print(f"prior: prior preservation is off for this base model (prior.per_image {summary['per_image']}); "
              "no pictures. Set prior.per_image in params.yaml to turn it on.")
        return
    print(f"prior: {summary['pictures']} pictures ({summary['generated']} generated, {summary['cached']} from the "
          f"cache), {summary['per_image']} per training picture, {summary['steps']} steps, guidance {summary['guidance']}")
    folder = root / layout.PRIOR_ROOT / load_params(root / "params.yaml").character.name
    rows = []
    for source in summary["sources"]:
        priors = sorted(folder.glob(f"{source}_prior*.png"))
        rows.append({"picture": root / layout.PROCESSED_DIR / f"{source}.png", "name": source,
                     "caption": (root / layout.CAPTIONED_DIR / f"{source}.txt").read_text(encoding="utf-8").strip(),
                     "prior pictures": priors,
                     "prior caption": priors[0].with_suffix(".txt").read_text(encoding="utf-8").strip() if priors else ""})
    html_table(rows, images=["picture", "prior pictures"])


def show_merge(root: Path | None = None) -> None:
    """The split merge made: training pairs (and prior pictures) and the held-out pictures for validation."""
    root = root or project_root()
    if missing(root, "merge", "metrics/merge.json"):
        return
    summary = read(root, "metrics/merge.json")
    name = load_params(root / "params.yaml").character.name
    print(f"merge: {summary['train_images']} training pairs and {summary.get('prior_images', 0)} prior pictures in "
          f"{layout.TRAIN_ROOT / name}; {summary['heldout_images']} held out for validation in "
          f"{layout.HELDOUT_ROOT / name}: {', '.join(summary['heldout']) or 'none'}")
