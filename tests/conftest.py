"""Suite-wide settings: the tests run offline, on the CPU, with tiny models."""

import os

# Set before any Hugging Face or W&B import, so a plain `pytest` behaves like `make test`.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
