"""The world's vocabulary: every attribute value, the spec dataclasses, and the sample character.

A :class:`Creature` is a look (body, species, colours, accessory, mark); a :class:`Spec` is one
picture of a creature (scene, pose, size in frame, position, and a seed for scene details).
"""

from __future__ import annotations

from dataclasses import dataclass

BODIES: tuple[str, ...] = ("round", "tall", "square", "long")
"""round: a ball; tall: an upright egg; square: a chunky block; long: low and wide."""
SPECIES: tuple[str, ...] = ("fox", "cat", "bear", "rabbit", "mouse", "owl")
COLOURS: tuple[str, ...] = ("orange", "blue", "green", "purple", "pink", "yellow", "grey", "brown", "red", "white")
ACCESSORIES: tuple[str, ...] = ("scarf", "hat", "bow", "glasses", "backpack", "none")
ACCESSORY_COLOURS: tuple[str, ...] = ("teal", "red", "yellow", "blue", "purple", "pink", "green", "black")
MARKS: tuple[str, ...] = ("star", "spots", "stripes", "heart", "none")
"""star: a white star on the forehead; heart: on the belly; spots and stripes: on the body."""
POSES: tuple[str, ...] = ("standing", "sitting", "jumping", "waving")
SIZES: tuple[str, ...] = ("small", "medium", "large")
POSITIONS: tuple[str, ...] = ("left", "centre", "right")
SCENES: tuple[str, ...] = (
    "beach", "forest", "night", "snow", "city", "room", "meadow", "desert", "underwater",
    "sunset", "rain", "sky", "studio_white", "studio_blue", "studio_pink", "studio_yellow",
)


@dataclass(frozen=True)
class Creature:
    """A creature's constant look. ``accessory_colour`` is None exactly when ``accessory == "none"``."""

    body: str
    species: str
    colour: str
    accessory: str
    accessory_colour: str | None
    mark: str

    def __post_init__(self) -> None:
        for name, allowed in (("body", BODIES), ("species", SPECIES), ("colour", COLOURS),
                              ("accessory", ACCESSORIES), ("mark", MARKS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; one of {', '.join(allowed)}")
        if (self.accessory == "none") != (self.accessory_colour is None):
            raise ValueError("accessory_colour must be None exactly when accessory is 'none'")
        if self.accessory_colour is not None and self.accessory_colour not in ACCESSORY_COLOURS:
            raise ValueError(f"unknown accessory_colour {self.accessory_colour!r}; one of {', '.join(ACCESSORY_COLOURS)}")


@dataclass(frozen=True)
class Spec:
    """One picture: a creature in a scene. ``seed`` places the scene's details (trees, stars...)."""

    creature: Creature
    scene: str
    pose: str
    size: str
    position: str
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("scene", SCENES), ("pose", POSES), ("size", SIZES), ("position", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; one of {', '.join(allowed)}")


BRAMBLE = Creature(body="round", species="fox", colour="orange", accessory="scarf", accessory_colour="teal", mark="star")
"""The sample character's look: a round orange fox with a teal scarf and a white star on its forehead."""


def bramble_traits(look: Creature | Spec) -> int:
    """How many of bramble's 5 defining traits a creature shares (0-5).

    The traits: round body, orange colour, fox species, teal scarf (scarf AND teal count as one),
    white star mark. The world never shows a creature with 3 or more.
    """
    creature = look.creature if isinstance(look, Spec) else look
    return sum((
        creature.body == BRAMBLE.body,
        creature.colour == BRAMBLE.colour,
        creature.species == BRAMBLE.species,
        creature.accessory == BRAMBLE.accessory and creature.accessory_colour == BRAMBLE.accessory_colour,
        creature.mark == BRAMBLE.mark,
    ))
