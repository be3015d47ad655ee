"""Where labrig looks for things by default.

The dataset is never looked up relative to the installed package (inside
site-packages that points nowhere): it is ``$LABRIG_DATA``, else the lab's
shared folder ``shared/data/fashion-mnist`` found from the working directory
upwards (``../shared/data`` beside a checkout, or beside its folder of
worktrees), else a clear error that says how to name it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "SHARED_DATA", "default_data_dir", "find_default_data_dir"]

DATA_ENV = "LABRIG_DATA"
SHARED_DATA = Path("shared") / "data" / "fashion-mnist"


def find_default_data_dir(start: str | Path | None = None) -> Path | None:
    """$LABRIG_DATA if set, else the first ``shared/data/fashion-mnist`` folder in `start`
    (default: the working directory) or one of its parents; None when there is none."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    here = Path(start if start is not None else Path.cwd()).resolve()
    for base in (here, *here.parents):
        if (base / SHARED_DATA).is_dir():
            return base / SHARED_DATA
    return None


def default_data_dir(start: str | Path | None = None) -> Path:
    """`find_default_data_dir`, or FileNotFoundError saying how to name the dataset."""
    found = find_default_data_dir(start)
    if found is None:
        here = Path(start if start is not None else Path.cwd()).resolve()
        raise FileNotFoundError(
            f"no dataset folder given and none found: pass --data DIR or set {DATA_ENV}=DIR "
            f"(looked for {SHARED_DATA} in {here} and every folder above it)")
    return found
