"""The evaluate stage: held-out loss per checkpoint, sample images, CLIP metrics and the best checkpoint."""
