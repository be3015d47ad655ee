"""A fine-tuned program's lineage in words (the console's Program dock, reports)."""

from __future__ import annotations

from typing import Any

__all__ = ["lineage_rows"]


def lineage_rows(program: Any) -> list[tuple[str, str]]:
    """(key, value) rows describing where a fine-tuned program came from; [] for a compiled one."""
    ft = getattr(program, "source", {}).get("finetune")
    if not ft:
        return []
    cal = ft.get("calibration_hash")
    evals = ft.get("evals") or []
    last = evals[-1] if evals else {}
    first = evals[0] if evals else {}
    rows = [
        ("fine-tuned", f"{ft.get('mode')} ({ft.get('status')}), {ft.get('steps')} steps, {ft.get('frames')} bench "
                       f"frames (+{ft.get('eval_frames')} to evaluate) on {ft.get('bench') or '-'}"),
        ("parent", f"{str(ft.get('parent_digest', ''))[:16]}… {ft.get('parent_path') or ''}".strip()),
        ("calibration", f"{cal[:16]}… {ft.get('calibration_path') or ''}".strip() if cal else "none (nominal twin)"),
    ]
    if last.get("bench_accuracy") is not None:
        rows.append(("bench accuracy", f"{100 * first.get('bench_accuracy', float('nan')):.1f} % -> "
                                       f"{100 * last['bench_accuracy']:.1f} % (evaluation images)"))
    parent = ft.get("parent_finetune")
    if parent:
        rows.append(("parent fine-tune", f"{parent.get('mode')}, {parent.get('steps')} steps, "
                                         f"{parent.get('frames')} frames"))
    return rows
