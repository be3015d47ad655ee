"""Report formatting shared by the experiments: markdown tables and dotted keys."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import torch


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are str()-ed."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def get_dotted(report: dict[str, Any], key: str) -> Any:
    """``get_dotted(r, "kd.accuracy") == r["kd"]["accuracy"]`` (KeyError names the missing part)."""
    value: Any = report
    for i, part in enumerate(key.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"report has no {'.'.join(key.split('.')[: i + 1])!r}")
        value = value[part]
    return value


def machine_info() -> dict[str, Any]:
    """Where a result was produced: platform, Python, torch, threads, the GPU if any."""
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
