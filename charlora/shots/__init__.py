"""The shots stage: the character in each shot of a story (``story/shots.yaml``), with the best LoRA.

``story`` reads and checks the story file (every problem named by shot and field, all at once),
``plan`` turns each shot into a render job for a target model (sizes scaled per base model, seeds,
the cache key), ``references`` prepares reference images, ``cache`` keeps rendered shots by key,
``render`` renders on this machine through mflux (text to image, or the edit variant for shots with
references), ``remote`` on Runware with the published LoRA, ``storyboard`` draws the sheet, and
``run`` ties them together and writes the images, the storyboard and the manifest.
"""
