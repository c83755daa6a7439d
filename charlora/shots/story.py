"""``story/shots.yaml``: the story's shared settings and its shots, read and checked in one pass.

Every problem is collected before anything is rendered, each named by the shot and the field
(``shot 'meadow' (shots[2]), references[1]: ...``), and reported together: a story with a mistake
renders nothing, and the images, storyboard and cache of the last good run stay as they were.

Reference images are read only from the story's own folder (``story/``), the folder the shots
stage watches: a path, or a symlink on the way, that leads out of it is refused without being
opened, so nothing outside the project is ever read through the story.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from charlora.errors import PipelineError
from charlora.fileio import sha256_file
from charlora.layout import is_inside

MAX_REFERENCES = 4  # FLUX.2 Klein conditions on up to 4 reference images
SIZE_RANGE = (128, 2048)  # story sizes, in the real models' pixels (Runware's FLUX.2 range)
MAX_REFERENCE_PIXELS = 100_000_000  # decompression-bomb guard, as preprocess.max_pixels
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RESERVED_IDS = {"storyboard"}  # storyboard.png sits beside the shots
STORY_KEYS = ("size", "steps", "guidance", "lora_scale", "seed", "shots")
SHOT_KEYS = ("id", "prompt", "trigger", "references", "size", "seed")
_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


@dataclass(frozen=True)
class Reference:
    """A reference image of a shot: as written in the story, where it is, its sha256 and upright size."""

    file: str
    path: Path
    sha256: str
    size: tuple[int, int]


@dataclass(frozen=True)
class Shot:
    """One shot: its prompt (trigger word in, unless ``trigger: false``), references, size and seed overrides."""

    id: str
    index: int
    prompt: str
    trigger: bool
    references: tuple[Reference, ...]
    size: tuple[int, int] | None
    seed: int | None


@dataclass(frozen=True)
class Story:
    """The shared settings (``steps``/``guidance`` None: the base model's) and the shots in order."""

    size: tuple[int, int]
    steps: int | None
    guidance: float | None
    lora_scale: float
    seed: int
    shots: tuple[Shot, ...]


def with_trigger(prompt: str, trigger: str, put_in: bool) -> str:
    """The prompt as rendered: ``{trigger}`` replaced, else the trigger word put first (unless it is already)."""
    if "{trigger}" in prompt:
        return prompt.replace("{trigger}", trigger)
    if not put_in or prompt.lower().startswith(trigger.lower()):
        return prompt
    return f"{trigger}, {prompt}"


class _Problems:
    """Problems found so far, each ``<where>: <what>``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")


def _number(value: Any, where: str, problems: _Problems, *, integer: bool, low: float, high: float,
            nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool):
        problems.add(where, f"{value!r} is not {kind}" + ("; null takes the model's value" if nullable else ""))
        return None
    if not low <= value <= high:
        problems.add(where, f"{value} is out of range; use {low} to {high}")
        return None
    return value if integer else float(value)


def parse_size(value: Any, where: str, problems: _Problems) -> tuple[int, int] | None:
    """``"768x1344"`` -> (768, 1344): each side a multiple of 16 within :data:`SIZE_RANGE`."""
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        problems.add(where, f"{value!r} is not a size; write WIDTHxHEIGHT, such as 768x1344 (9:16 vertical)")
        return None
    size = (int(match.group(1)), int(match.group(2)))
    low, high = SIZE_RANGE
    for side, pixels in zip(("width", "height"), size):
        if pixels % 16:
            nearest = max(low, 16 * round(pixels / 16))
            problems.add(where, f"{value}: the {side} {pixels} is not a multiple of 16 (FLUX.2 works on 16-pixel "
                                f"patches); the nearest is {nearest}")
            return None
        if not low <= pixels <= high:
            problems.add(where, f"{value}: the {side} {pixels} is out of range; use {low} to {high} pixels")
            return None
    return size


def read_reference(value: Any, where: str, story_dir: Path, root: Path, problems: _Problems) -> Reference | None:
    """A reference image inside ``story_dir`` (a folder of the project ``root``), opened and checked.

    Returns None (and adds a problem) when it is not usable. Paths are relative to ``root``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(value, str) or not value.strip():
        problems.add(where, f"{value!r} is not a path; give the image's path from the project folder, "
                            "such as story/references/meadow.png")
        return None
    root = root.resolve()
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    if not is_inside(path, root):  # resolved first: neither the path nor a symlink on the way is followed out
        problems.add(where, f"{value} leads outside the project folder ({root}) to {path.resolve()}; nothing "
                            f"outside the project is read. Copy the image into {story_dir.name}/references/.")
        return None
    if not is_inside(path, story_dir):
        problems.add(where, f"{value} is outside {story_dir.name}/; copy it into {story_dir.name}/references/ "
                            "(the shots stage watches that folder, so dvc reruns it when a reference changes)")
        return None
    if not path.is_file():
        problems.add(where, f"{value} does not exist" if not path.exists() else f"{value} is not a file")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_REFERENCE_PIXELS:
                    problems.add(where, f"{value} is {image.width}x{image.height}, over {MAX_REFERENCE_PIXELS} "
                                        "pixels; downscale it (Klein conditions on about 1 MP)")
                    return None
                image.load()
                size = ImageOps.exif_transpose(image).size
    except UnidentifiedImageError:
        problems.add(where, f"{value} is not an image PIL can read (PNG, JPEG or WebP work)")
        return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        problems.add(where, f"{value} could not be read: corrupt, truncated or unreadable ({error})")
        return None
    return Reference(value, path, sha256_file(path), size)


def _shot(raw: Any, index: int, trigger: str, story_dir: Path, root: Path, seen: dict[str, int],
          problems: _Problems) -> Shot | None:
    label = f"shots[{index}]"
    if not isinstance(raw, dict):
        problems.add(label, f"{raw!r} is not a shot; each shot is a mapping with at least id and prompt")
        return None
    shot_id = raw.get("id")
    if isinstance(shot_id, str) and shot_id:
        label = f"shot '{shot_id}' ({label})"
    start = len(problems.items)
    for key in sorted(set(raw) - set(SHOT_KEYS), key=str):
        problems.add(label, f"unknown key '{key}'; a shot has {', '.join(SHOT_KEYS)}")
    if shot_id is None:
        problems.add(f"{label}, id", "missing; give the shot an id (it names models/shots/<id>.png)")
    elif not isinstance(shot_id, str) or not ID_PATTERN.fullmatch(shot_id):
        problems.add(f"{label}, id", f"{shot_id!r} is not a valid id; use lowercase letters, digits, - and _ "
                                     "(it names the image file)")
    elif shot_id in RESERVED_IDS:
        problems.add(f"{label}, id", f"'{shot_id}' is reserved ({shot_id}.png is the sheet of all shots); pick another")
    elif shot_id in seen:
        problems.add(f"{label}, id", f"'{shot_id}' is also the id of shots[{seen[shot_id]}]; each id names one image "
                                     "file, so ids must be unique")
    else:
        seen[shot_id] = index
    put_in = raw.get("trigger", True)
    if not isinstance(put_in, bool):
        problems.add(f"{label}, trigger", f"{put_in!r} is not true or false (false: no trigger word in this shot)")
        put_in = True
    prompt = raw.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        problems.add(f"{label}, prompt", "empty; describe what the shot shows")
    elif not isinstance(prompt, str):
        problems.add(f"{label}, prompt", f"{prompt!r} is not text")
    elif "{trigger}" in prompt and not put_in:
        problems.add(f"{label}, prompt", "has {trigger} but the shot says trigger: false; remove one of them")
    references = raw.get("references") or []
    if not isinstance(references, list):
        problems.add(f"{label}, references", f"{references!r} is not a list of image paths")
        references = []
    elif len(references) > MAX_REFERENCES:
        problems.add(f"{label}, references", f"{len(references)} images; at most {MAX_REFERENCES} (FLUX.2 Klein "
                                             "conditions on up to 4 reference images)")
        references = []
    read = [read_reference(value, f"{label}, references[{i}]", story_dir, root, problems)
            for i, value in enumerate(references)]
    size = parse_size(raw["size"], f"{label}, size", problems) if raw.get("size") is not None else None
    seed = _number(raw.get("seed"), f"{label}, seed", problems, integer=True, low=0, high=2_000_000_000, nullable=True)
    if len(problems.items) > start:
        return None
    return Shot(shot_id, index, with_trigger(prompt.strip(), trigger, put_in), put_in, tuple(read), size, seed)


def load_story(path: Path, trigger: str, root: Path) -> Story:
    """Read and check the story at ``path`` in the project ``root``; ``trigger`` goes into the prompts.

    The story's folder holds its reference images. Raises :class:`PipelineError` listing every
    problem, each named by shot and field.
    """
    path = path if path.is_absolute() else root / path
    if not is_inside(path, root):
        raise PipelineError(f"{path} leads outside the project folder ({root.resolve()}) to {path.resolve()}; the story "
                            "is read from the project only. Make story/ a folder in the project, not a link out of it.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found. Write the story there (README: Shots) or restore the sample: "
                            f"git checkout -- {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path} is not valid YAML ({error}). Fix the file and run again.") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: the story must be a mapping with size, steps, guidance, lora_scale, seed and shots.")
    problems = _Problems()
    for key in sorted(set(raw) - set(STORY_KEYS), key=str):
        problems.add(str(key), f"unknown key; the story has {', '.join(STORY_KEYS)} (per-shot keys go under shots)")
    size = parse_size(raw.get("size", "768x1344"), "size", problems)
    steps = _number(raw.get("steps"), "steps", problems, integer=True, low=1, high=200, nullable=True)
    guidance = _number(raw.get("guidance"), "guidance", problems, integer=False, low=0.0, high=20.0, nullable=True)
    lora_scale = _number(raw.get("lora_scale", 0.8), "lora_scale", problems, integer=False, low=0.0, high=2.0)
    seed = _number(raw.get("seed", 0), "seed", problems, integer=True, low=0, high=2_000_000_000)
    raw_shots = raw.get("shots")
    if not isinstance(raw_shots, list) or not raw_shots:
        problems.add("shots", "missing or empty; list the shots, each with an id and a prompt")
        raw_shots = []
    seen: dict[str, int] = {}
    shots = [_shot(item, index, trigger, path.parent, root, seen, problems) for index, item in enumerate(raw_shots)]
    if problems.items:
        listed = "\n".join(f"  - {item}" for item in problems.items)
        raise PipelineError(f"{path} has {len(problems.items)} problem(s); nothing was rendered and the last "
                            f"shots, storyboard and cache are as they were:\n{listed}")
    return Story(size, steps, guidance, lora_scale, seed, tuple(shots))
