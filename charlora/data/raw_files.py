"""What a raw picture folder holds: candidate images, caption files, ``metadata.jsonl``, and the
symlinks that lead outside it (listed so preprocess can reject them, never opened), plus the user
captions found beside the pictures.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from charlora.errors import PipelineError
from charlora.layout import is_inside

# Files that may sit beside the images and are not images themselves.
CAPTION_SUFFIX = ".txt"
METADATA_FILE = "metadata.jsonl"
IGNORED_NAMES = {METADATA_FILE, ".gitkeep", ".DS_Store", "README.md"}


@dataclass(frozen=True)
class RawFiles:
    """What a raw folder holds, sorted by name; ``outside``: symlinks leading out of it (never read)."""

    images: list[Path]
    captions: list[Path]
    metadata: Path | None
    outside: list[Path]


def natural_key(name: str) -> tuple[str, str]:
    """Sort key for file names: stem first ("pose.jpg" before "pose copy.jpg", so duplicates keep the
    original), Unicode-normalised (NFC) so a name sorts the same on macOS and Linux."""
    stem, dot, suffix = unicodedata.normalize("NFC", name).rpartition(".")
    return (stem, suffix) if dot else (suffix, "")


def list_raw_files(raw_dir: Path, project_root: Path | None = None) -> RawFiles:
    """The candidate images, caption files and ``metadata.jsonl`` in ``raw_dir``, and the symlinks
    (to files or folders) that lead outside it, which are never opened.

    With ``project_root``, a ``raw_dir`` that resolves outside it (a symlinked folder) is an error.
    """
    if project_root is not None and raw_dir.exists() and not is_inside(raw_dir, project_root):
        raise PipelineError(f"{raw_dir} leads outside the project folder (to {raw_dir.resolve()}); nothing outside the "
                            f"project is read through a symlink. Replace the link with a folder holding the pictures.")
    if not raw_dir.is_dir():
        raise PipelineError(f"raw image folder {raw_dir} does not exist. Create it and put your character's images in it.")
    entries = sorted(raw_dir.iterdir(), key=lambda p: natural_key(p.name))
    outside = [p for p in entries if p.is_symlink() and not is_inside(p, raw_dir)]
    files = [p for p in entries if p not in outside and p.is_file()]
    captions = [p for p in files if p.suffix.lower() == CAPTION_SUFFIX]
    images = [p for p in files if p.suffix.lower() != CAPTION_SUFFIX and p.name not in IGNORED_NAMES and not p.name.startswith(".")]
    metadata = raw_dir / METADATA_FILE
    return RawFiles(images, captions, metadata if metadata in files else None, outside)


def outside_reason(link: Path, raw_dir: Path) -> str:
    """The reject reason of a symlink that leads outside the raw folder."""
    target = link.resolve()
    kind = " (a folder)" if target.is_dir() else ""
    return (f"symlink to {target}{kind} outside {raw_dir}; it is not read. Copy the picture itself into {raw_dir}")


def read_user_captions(metadata: Path | None, images: list[Path], caption_files: list[Path]) -> tuple[dict[str, str], list[str]]:
    """User captions by image file name, from ``<image>.txt`` (wins) or ``metadata.jsonl``; plus warnings."""
    warnings_: list[str] = []
    captions: dict[str, str] = {}
    if metadata is not None:
        for number, line in enumerate(metadata.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                captions[str(row["file_name"])] = str(row["text"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError):
                warnings_.append(f"{metadata}:{number}: not a JSON line with 'file_name' and 'text'; ignored")
    stems = {p.stem: p.name for p in images}
    for caption_file in caption_files:
        image_name = stems.get(caption_file.stem)
        if image_name is None:
            warnings_.append(f"{caption_file}: caption file with no image of the same name; ignored")
            continue
        try:
            text = caption_file.read_bytes().decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            warnings_.append(f"{caption_file}: not UTF-8 text; ignored (save it as UTF-8 to use it). "
                             f"{image_name} will be captioned automatically")
            continue
        if not text:
            warnings_.append(f"{caption_file}: empty caption; {image_name} will be captioned automatically")
            continue
        captions[image_name] = text
    return captions, warnings_
