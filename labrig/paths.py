"""Where labrig looks for things by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """$LABRIG_DATA, else ../shared/data/fashion-mnist next to the checkout."""
    env = os.environ.get("LABRIG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
