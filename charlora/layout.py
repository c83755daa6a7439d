"""Where each stage reads and writes (the same paths as in dvc.yaml), relative to the project root."""

from pathlib import Path

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
REJECTED_DIR = Path("data/rejected")
CAPTIONED_DIR = Path("data/captioned")
CAPTION_CACHE_DIR = Path("data/cache/captions")
TRAIN_ROOT = Path("data/train")
HELDOUT_ROOT = Path("data/heldout")
TINY_MODEL_DIR = Path("models/base/flux2-klein-tiny")
TINY_CLIP_DIR = Path("models/base/clip-tiny")
TRAINING_DIR = Path("models/training")
LORA_DIR = Path("models/lora")
METRICS_DIR = Path("metrics")
SAMPLES_DIR = Path("models/samples")
EXPORT_DIR = Path("models/export")
EXPORT_REPORT_NAME = "report.json"  # in EXPORT_DIR: which file was verified from which adapter (publish reads it)
