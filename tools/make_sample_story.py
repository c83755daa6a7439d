"""Draw the reference images of the sample story (story/references/) with the cartoon world's renderer.

The sample story (story/shots.yaml) shows bramble in six shots; two of them condition on these
references: ``forest.png``, a scene with no creature in it (where the shot takes place), and
``pose_waving.png``, another creature of the world waving on a plain background (the pose to take).
Neither shows bramble: the LoRA brings the character, the references the place and the pose.
Deterministic: running it again gives the same files.

    python tools/make_sample_story.py [--out story/references]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlora.world import Creature, Spec, render  # noqa: E402
from charlora.world.scenes import draw_scene  # noqa: E402

# A world creature that shares none of bramble's traits (round orange fox, teal scarf, white star).
POSE_MODEL = Creature(body="tall", species="rabbit", colour="grey", accessory="none", accessory_colour=None, mark="none")
REFERENCES = {
    "forest.png": lambda: draw_scene("forest", (288, 512), seed=21)[0],
    "pose_waving.png": lambda: render(Spec(POSE_MODEL, "studio_white", "waving", "large", "centre", seed=22), (384, 384)),
}


def write_references(out_dir: Path) -> None:
    """Write every reference image of the sample story into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in REFERENCES.items():
        draw().save(out_dir / name, optimize=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("story/references"))
    write_references(parser.parse_args().out)
