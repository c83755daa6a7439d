"""Seeded sampling of world specs, with the exclusion rule that keeps bramble out of the world.

Every attribute is drawn uniformly; a creature sharing 3 or more of bramble's 5 traits is drawn
again, and so is an accessory in the body's own colour (it would vanish). Specs come from one
``random.Random(seed)``, so a seed always gives the same sequence, and the first ``n`` specs of a
longer sample are the same as a sample of ``n``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from itertools import islice

from charlora.world.attributes import (ACCESSORIES, ACCESSORY_COLOURS, BODIES, COLOURS, MARKS, POSES, POSITIONS, SCENES,
                                       SIZES, SPECIES, Creature, Spec, bramble_traits)

MAX_BRAMBLE_TRAITS = 2
"""The most of bramble's traits a world creature may share."""


def sample_creature(rng: random.Random) -> Creature:
    """One world creature: uniform attributes, redrawn until it passes the exclusion rule."""
    while True:
        accessory = rng.choice(ACCESSORIES)
        colour = rng.choice(COLOURS)
        accessory_colour = _accessory_colour(rng, accessory, colour)  # drawn before the body: the seeds' sequence
        creature = Creature(body=rng.choice(BODIES), species=rng.choice(SPECIES), colour=colour, accessory=accessory,
                            accessory_colour=accessory_colour, mark=rng.choice(MARKS))
        if _allowed(creature):
            return creature


def _accessory_colour(rng: random.Random, accessory: str, body_colour: str) -> str | None:
    """An accessory's colour, never the body's (it would vanish); None without an accessory."""
    return None if accessory == "none" else rng.choice([c for c in ACCESSORY_COLOURS if c != body_colour])


def _allowed(creature: Creature) -> bool:
    """The world's rules: fewer than 3 of bramble's traits, and an accessory that shows against the body."""
    return creature.colour != creature.accessory_colour and bramble_traits(creature) <= MAX_BRAMBLE_TRAITS


LOOKALIKE_TRAITS = ("body", "species", "colour", "accessory", "mark")
"""The creature traits :func:`lookalike` changes, one at a time."""


def lookalike(creature: Creature, rng: random.Random) -> Creature:
    """``creature`` with one trait changed: a hard negative for the micro CLIP, which otherwise
    tells creatures apart by colour alone. The result passes the same rules as :func:`sample_creature`."""
    while True:
        trait = rng.choice(LOOKALIKE_TRAITS)
        if trait == "accessory":
            accessory = rng.choice(ACCESSORIES)
            other = replace(creature, accessory=accessory,
                            accessory_colour=_accessory_colour(rng, accessory, creature.colour))
        else:
            values = {"body": BODIES, "species": SPECIES, "colour": COLOURS, "mark": MARKS}[trait]
            other = replace(creature, **{trait: rng.choice([v for v in values if v != getattr(creature, trait)])})
        if other != creature and _allowed(other):
            return other


def iter_specs(seed: int) -> Iterator[Spec]:
    """An endless, deterministic stream of world specs for ``seed``."""
    rng = random.Random(seed)
    while True:
        creature = sample_creature(rng)
        yield Spec(creature=creature, scene=rng.choice(SCENES), pose=rng.choice(POSES), size=rng.choice(SIZES),
                   position=rng.choice(POSITIONS), seed=rng.getrandbits(32))


def sample_specs(count: int, seed: int) -> list[Spec]:
    """The first ``count`` specs of :func:`iter_specs` for ``seed``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return list(islice(iter_specs(seed), count))
