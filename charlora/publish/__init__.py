"""Publishing: the dry-run plan (dvc repro) and the real publish to the Hugging Face Hub and Runware (make publish)."""
