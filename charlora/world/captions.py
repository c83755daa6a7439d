"""Captions from attributes: a small fixed grammar, lowercase, at most 25 words.

    caption        := creature ", " scene_caption
    creature       := "a " BODY " " COLOUR " " SPECIES [" with " extra [" and " extra]]
    extra          := accessory | mark          (order of the two varies)
    accessory      := "a " ACOLOUR " " ACCESSORY | ACOLOUR " glasses"
    mark           := "a white star" | "spots" | "stripes" | "a heart"
    scene_caption  := POSE " " SCENE [", " SIZE] [", " POSITION]   (size and position swap places)

"medium" and "in the centre" are left out of some captions. The variation is picked by bits of
``variant`` (by default the spec's seed), so a spec always gets the same caption.
``scene_caption`` alone describes only what varies between pictures of one character; the
pipeline puts the trigger word in front of it ("brmbl, sitting on a sunny beach, small, ...").
"""

from __future__ import annotations

from functools import cache

from charlora.world.attributes import (ACCESSORIES, ACCESSORY_COLOURS, BODIES, COLOURS, POSES, SIZES, SPECIES, Creature,
                                       Spec)

MARK_PHRASES: dict[str, str] = {"star": "a white star", "spots": "spots", "stripes": "stripes", "heart": "a heart"}
SCENE_PHRASES: dict[str, str] = {
    "beach": "on a sunny beach",
    "forest": "in a green forest",
    "night": "under a starry night sky",
    "snow": "in the snow",
    "city": "on a city street",
    "room": "in a cosy room",
    "meadow": "in a flower meadow",
    "desert": "in a sandy desert",
    "underwater": "underwater",
    "sunset": "at sunset",
    "rain": "in the rain",
    "sky": "on a fluffy cloud",
    "studio_white": "on a plain white background",
    "studio_blue": "on a plain blue background",
    "studio_pink": "on a plain pink background",
    "studio_yellow": "on a plain yellow background",
}
POSITION_PHRASES: dict[str, str] = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
MAX_WORDS = 25


def accessory_phrase(creature: Creature) -> str | None:
    """"a teal scarf", "black glasses", or None without an accessory."""
    if creature.accessory == "none":
        return None
    if creature.accessory == "glasses":
        return f"{creature.accessory_colour} glasses"
    return f"a {creature.accessory_colour} {creature.accessory}"


def creature_caption(creature: Creature, variant: int = 0) -> str:
    """The look: "a round orange fox with a teal scarf and a white star" (bit 0 of ``variant``
    puts the mark before the accessory)."""
    extras = [p for p in (accessory_phrase(creature), MARK_PHRASES.get(creature.mark)) if p]
    if variant & 1:
        extras.reverse()
    text = f"a {creature.body} {creature.colour} {creature.species}"
    return f"{text} with {' and '.join(extras)}" if extras else text


def scene_caption(spec: Spec, variant: int | None = None) -> str:
    """What varies: "sitting on a sunny beach, small, on the left".

    Bits of ``variant`` (default: the spec's seed): 1 swaps size and position, 2 leaves out
    "medium", 3 leaves out "in the centre".
    """
    variant = spec.seed if variant is None else variant
    parts = []
    if not (spec.size == "medium" and variant >> 2 & 1):
        parts.append(spec.size)
    if not (spec.position == "centre" and variant >> 3 & 1):
        parts.append(POSITION_PHRASES[spec.position])
    if variant >> 1 & 1:
        parts.reverse()
    return ", ".join([f"{spec.pose} {SCENE_PHRASES[spec.scene]}", *parts])


def caption(spec: Spec, variant: int | None = None) -> str:
    """The full caption: creature, then :func:`scene_caption`, e.g.
    "a round orange fox with a teal scarf and a white star, sitting on a sunny beach, small, on the left"."""
    variant = spec.seed if variant is None else variant
    return f"{creature_caption(spec.creature, variant)}, {scene_caption(spec, variant)}"


def words(text: str) -> list[str]:
    """The words of a caption (commas dropped)."""
    return text.replace(",", " ").split()


@cache
def _vocabulary() -> tuple[str, ...]:
    phrases = ["a with and glasses", *BODIES, *COLOURS, *SPECIES, *ACCESSORIES, *ACCESSORY_COLOURS, *MARK_PHRASES.values(),
               *POSES, *SIZES, *SCENE_PHRASES.values(), *POSITION_PHRASES.values()]
    return tuple(sorted({w for phrase in phrases for w in words(phrase) if w != "none"}))


def vocabulary() -> list[str]:
    """Every word any caption can contain, sorted (for a tokenizer corpus)."""
    return list(_vocabulary())


def parse_scene_caption(text: str) -> dict[str, str]:
    """The ``scene``, ``pose``, ``size`` and ``position`` a scene caption names: the inverse of :func:`scene_caption`.

    A left-out size is "medium" and a left-out position "in the centre", as :func:`scene_caption` leaves them
    out, so ``Spec(creature, **parse_scene_caption(prompt), seed=0)`` draws what an evaluation prompt asks for.
    Raises ``ValueError`` naming the caption and the part that is not in the grammar.
    """
    first, *rest = [part.strip() for part in text.split(",")]
    pose, _, scene_phrase = first.partition(" ")
    scenes = {phrase: name for name, phrase in SCENE_PHRASES.items()}
    positions = {phrase: name for name, phrase in POSITION_PHRASES.items()}
    if pose not in POSES or scene_phrase not in scenes:
        raise ValueError(f"scene caption '{text}': '{first}' is not a pose ({', '.join(POSES)}) and a scene phrase")
    parsed = {"scene": scenes[scene_phrase], "pose": pose, "size": "medium", "position": "centre"}
    for part in rest:
        if part in SIZES:
            parsed["size"] = part
        elif part in positions:
            parsed["position"] = positions[part]
        else:
            raise ValueError(f"scene caption '{text}': '{part}' is neither a size nor a position")
    return parsed
