"""A procedural cartoon world: creatures in scenes, each picture with a caption built from its attributes.

The world is training data for a micro FLUX.2 Klein model. A creature is a body shape (round,
tall, square, long) with species cues (ears, tail, snout: fox, cat, bear, rabbit, mouse, owl), a
body colour, an optional accessory in an accessory colour (scarf, hat, bow, glasses, backpack)
and an optional mark (a white star on the forehead, spots, stripes, a heart on the belly). A
picture puts one creature in a scene (beach, forest, night, snow, city, room, meadow, desert,
underwater, sunset, rain, sky, plain studio colours) in a pose (standing, sitting, jumping,
waving), at a size (small, medium, large) and a position (left, centre, right).

The sample character bramble (:data:`BRAMBLE`: a round orange fox with a teal scarf and a white
star) is a combination the world never shows: no sampled creature shares 3 or more of its 5
traits (:func:`bramble_traits`), while each trait alone, and every pair, appears. A LoRA is the
only way for a model pretrained on the world to draw bramble.

Public API::

    specs = sample_specs(1000, seed=0)          # or iter_specs(seed): deterministic Spec stream
    image = render(specs[0], (128, 128))        # PIL RGB image of any size; transparent=True: RGBA, no scene
    text = caption(specs[0])                    # "a tall blue cat with a red hat, sitting in the snow, small"
    scene_caption(spec)                         # "sitting in the snow, small": what varies, no creature
    parse_scene_caption("sitting in the snow, small")  # back to {"scene": "snow", "pose": "sitting", ...}
    creature_caption(creature)                  # "a tall blue cat with a red hat"
    vocabulary()                                # every word a caption can contain
    BRAMBLE, bramble_traits(spec_or_creature)   # the sample character and the exclusion rule
    lookalike(creature, rng)                    # the creature with one trait changed (a hard negative)

The same spec and size give the same pixels on every run (seeded ``random.Random`` only, no
fonts, no clock), drawn at 2-4x and reduced with LANCZOS. Only Pillow, numpy and the standard
library are used.
"""

from charlora.world.attributes import (ACCESSORIES, ACCESSORY_COLOURS, BODIES, BRAMBLE, COLOURS, MARKS, POSES, POSITIONS,
                                       SCENES, SIZES, SPECIES, Creature, Spec, bramble_traits)
from charlora.world.captions import caption, creature_caption, parse_scene_caption, scene_caption, vocabulary, words
from charlora.world.render import render
from charlora.world.sampling import iter_specs, lookalike, sample_creature, sample_specs

__all__ = [
    "ACCESSORIES", "ACCESSORY_COLOURS", "BODIES", "BRAMBLE", "COLOURS", "MARKS", "POSES", "POSITIONS", "SCENES", "SIZES",
    "SPECIES", "Creature", "Spec", "bramble_traits", "caption", "creature_caption", "iter_specs", "lookalike",
    "parse_scene_caption", "render", "sample_creature", "sample_specs", "scene_caption", "vocabulary", "words",
]
