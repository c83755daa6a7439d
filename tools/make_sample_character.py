"""Draw the shipped sample character "bramble" into data/raw with the cartoon world's renderer.

Bramble (``charlora.world.BRAMBLE``) is a round orange fox with a teal scarf and a white star on
its forehead: a combination of traits the world (charlora.world) never shows, so a model
pretrained on the world can only draw it through a LoRA. The 40 shots vary scene, pose, size in
frame and position. The first 14 also vary file format and size, so that preprocess has real work
to do: JPEG and PNG, one RGBA PNG cutout with a transparent background, one JPEG with an EXIF
orientation tag (pixels stored sideways), one image larger than 3000 px. The other 26 are plain
shots drawn from a seed, one in each scene and then ten more; one of them (the same jump in front
of a yellow instead of a white studio wall) is a near duplicate that preprocess quarantines, as it
would a user's. Why 40 and not 14: trained on 13 pictures, the micro model's LoRA learned those
pictures faster than bramble's look, and its held-out loss stayed above the base model's (README:
What the default run shows).

Captions describe only what varies between shots ("sitting on a sunny beach, small, on the
left"): the trigger word that the pipeline puts first ("brmbl, sitting on ...") must absorb the
character's constant look. Some images have a ``.txt`` beside them (as users often write), the
rest are in ``metadata.jsonl`` (the Hugging Face imagefolder convention), so the default run
needs no captioning model. Deterministic: running it again gives the same files.

    python tools/make_sample_character.py [--out data/raw]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlora.world import BRAMBLE, POSES, POSITIONS, SCENES, SIZES, Spec, render, scene_caption  # noqa: E402

TRIGGER = "brmbl"  # params.yaml character.trigger; only used by tools/world_sheet.py to show full captions


@dataclass(frozen=True)
class Shot:
    file: str
    size: tuple[int, int]
    scene: str            # a world scene; the cutout is drawn without it (transparent) but captioned with it
    pose: str
    frame: str            # size in frame: small, medium, large
    position: str         # left, centre, right
    seed: int             # places the scene's details and picks the caption's wording
    caption_beside: bool  # True: <file>.txt beside the image; False: a metadata.jsonl row

    @property
    def spec(self) -> Spec:
        return Spec(creature=BRAMBLE, scene=self.scene, pose=self.pose, size=self.frame, position=self.position,
                    seed=self.seed)

    @property
    def caption(self) -> str:
        return scene_caption(self.spec)


# The shots that vary file format and size: what tests of code paths (on the random tiny model) need.
FORMAT_SHOTS = [
    Shot("bramble_meadow.jpg", (1400, 1050), "meadow", "standing", "medium", "centre", 1, True),
    Shot("bramble_closeup.png", (900, 900), "studio_yellow", "standing", "large", "centre", 2, True),
    Shot("bramble_night.jpg", (1280, 720), "night", "jumping", "medium", "left", 3, False),
    Shot("bramble_room.jpg", (1024, 1280), "room", "sitting", "medium", "right", 4, False),
    Shot("bramble_beach.jpg", (1600, 1000), "beach", "waving", "small", "right", 5, True),
    Shot("bramble_snow.png", (1000, 800), "snow", "standing", "medium", "left", 6, False),
    Shot("bramble_sunset.jpg", (1500, 900), "sunset", "sitting", "large", "centre", 7, False),
    Shot("bramble_forest.jpg", (1100, 1100), "forest", "waving", "medium", "left", 8, True),
    Shot("bramble_cutout.png", (800, 1000), "studio_white", "standing", "large", "centre", 9, False),
    Shot("bramble_phone.jpg", (1200, 900), "city", "jumping", "medium", "right", 10, False),
    Shot("bramble_poster.jpg", (3200, 2400), "sky", "jumping", "large", "centre", 11, False),
    Shot("bramble_tiny_wave.png", (720, 720), "studio_blue", "waving", "small", "left", 12, True),
    Shot("bramble_rain.jpg", (1000, 1333), "rain", "standing", "large", "centre", 13, False),
    Shot("bramble_desk.png", (1200, 800), "studio_pink", "sitting", "large", "right", 14, False),
]


def plain_shots(count: int, seed: int) -> list[Shot]:
    """``count`` further shots in plain JPEG/PNG at ordinary sizes: the scenes in turn, pose, size in frame and
    position drawn from ``seed``."""
    rng = random.Random(seed)
    sizes = [(1024, 1024), (1200, 900), (900, 1200), (1280, 960), (1000, 1000), (1440, 1080), (960, 1280)]
    shots = []
    for i in range(count):
        scene, pose = SCENES[i % len(SCENES)], rng.choice(POSES)
        suffix = "png" if i % 3 == 0 else "jpg"
        shots.append(Shot(f"bramble_{i + 1:02d}_{scene}_{pose}.{suffix}", sizes[i % len(sizes)], scene, pose,
                          rng.choice(SIZES), rng.choice(POSITIONS), 15 + i, i % 4 == 0))
    return shots


SHOTS = FORMAT_SHOTS + plain_shots(26, seed=2026)

# Saved with EXIF orientation 6 (rotate 90 degrees clockwise to view), pixels stored sideways.
EXIF_ROTATED = "bramble_phone.jpg"
# Saved as RGBA with a transparent background (no scene drawn).
CUTOUT = "bramble_cutout.png"


def render_shot(shot: Shot, size: tuple[int, int] | None = None) -> Image.Image:
    """The shot's picture, upright, at its own size or at ``size``."""
    return render(shot.spec, size or shot.size, transparent=shot.file == CUTOUT)


def write_sample(out_dir: Path, shots: list[Shot] | None = None) -> None:
    """Draw ``shots`` (default: all of :data:`SHOTS`) with their captions into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = []
    for shot in SHOTS if shots is None else shots:
        image = render_shot(shot)
        path = out_dir / shot.file
        if path.suffix == ".jpg":
            if shot.file == EXIF_ROTATED:
                exif = Image.Exif()
                exif[0x0112] = 6
                # Stored rotated 90 degrees counter-clockwise; orientation 6 tells viewers to turn it back.
                image.rotate(90, expand=True).save(path, quality=88, exif=exif.tobytes())
            else:
                image.save(path, quality=88)
        else:
            image.save(path, optimize=True)
        if shot.caption_beside:
            path.with_suffix(".txt").write_text(shot.caption + "\n", encoding="utf-8")
        else:
            metadata.append({"file_name": shot.file, "text": shot.caption})
    with open(out_dir / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for row in metadata:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    write_sample(parser.parse_args().out)
