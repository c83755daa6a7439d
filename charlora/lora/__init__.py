"""LoRA files: extracted from checkpoints with provenance, converted between key formats, and verified."""
