"""The segmentation experiment's report: numbers per arm, verdicts, and the table.

Every spread is over seeds; every comparison is `stats.compare`'s, stated
plainly (one seed a side decides nothing); gaps are said in words (below /
above) so a sign cannot be misread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labrig.experiments.jobs import JobData
from labrig.experiments.report import machine_info, markdown_table
from labrig.experiments.seg_config import SegmentationConfig
from labrig.experiments.stats import Comparison, compare, spread
from labrig.models.serialize import config_to_dict


def _summary(runs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    mious = spread([r["scores"][mode]["miou"] for r in runs])
    accs = spread([r["scores"][mode]["pixel_accuracy"] for r in runs])
    first = runs[0]
    return {"miou": mious.mean, "miou_std": mious.std, "mious": list(mious.values),
            "pixel_accuracy": accs.mean, "pixel_accuracy_std": accs.std, "mode": mode,
            "seeds": [r["tags"].get("seed") for r in runs], "test_images": first["scores"][mode]["images"],
            "val_miou": _best_val(first), "params": first["params"], "electronic_flops": first["electronic_flops"],
            "train_seconds": sum(r.get("train_seconds", 0.0) for r in runs)}


def _best_val(result: dict[str, Any]) -> float | None:
    history = result.get("history") or []
    best = result.get("best_epoch") or 0
    return history[best - 1].get("val_miou") if 0 < best <= len(history) else None


def build_report(
    config: SegmentationConfig,
    teacher: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
    data: JobData,
    data_dir: str | Path,
    teacher_checkpoint: str | Path | None,
    *,
    digital_encoder_flops: int,
) -> dict[str, Any]:
    """The report: per arm mIoU and pixel accuracy (mean ± std over seeds), costs, the KD
    verdict, the gaps to the teacher and to the ideal twin, data, config and machine."""
    t = teacher["scores"]["test"]
    report: dict[str, Any] = {
        "teacher": {"miou": t["miou"], "pixel_accuracy": t["pixel_accuracy"], "test_images": t["images"],
                    "params": teacher["params"], "electronic_flops": teacher["electronic_flops"],
                    "val_miou": _best_val(teacher), "train_seconds": teacher.get("train_seconds"),
                    "checkpoint": teacher.get("checkpoint")},
        "linear": _summary(results["linear"], "collapsed"),
        "kd": _summary(results["kd"], "collapsed"),
    }
    kd = report["kd"]
    if results["kd_hint"]:
        report["kd_hint"] = _summary(results["kd_hint"], "collapsed")
    profile = config.student.optics.profile if config.student.optics else None
    for base in ("linear", "kd"):
        student = report[base]
        for mode, key in (("optical", "as_trained_ideal_optics"), ("optics_aware", "as_trained_physical_optics")):
            s = _summary(results[base], mode)
            student[key] = {k: s[k] for k in ("miou", "miou_std", "mious", "pixel_accuracy", "pixel_accuracy_std",
                                               "test_images")}
        arm = f"{base}_optical"
        if results.get(arm):
            optical = {**_summary(results[arm], "optics_aware"), "finetuned": True}
        else:
            optical = {**student["as_trained_physical_optics"], "finetuned": False, "seeds": student["seeds"]}
        # against the ideal student on the same images the optical one was scored on
        gap = 100 * (student["as_trained_ideal_optics"]["miou"] - optical["miou"])
        report[arm] = {**optical, "profile": profile, "student": base, "gap_to_ideal_points": gap}
    comparison = compare(report["linear"]["mious"], kd["mious"])
    report["kd_vs_linear"] = {**comparison.as_dict(), "sentence": _sentence(comparison, "KD", "no KD")}
    report["digital_encoder_flops"] = int(digital_encoder_flops)
    if "kd_hint" in report:
        c = compare(kd["mious"], report["kd_hint"]["mious"])
        report["hint_vs_kd"] = {**c.as_dict(), "sentence": _sentence(c, "KD + hints", "KD")}
    students = {arm: report[arm]["miou"] for arm in ("linear", "kd", "kd_hint") if arm in report}
    best = max(students, key=students.get)  # type: ignore[arg-type]
    optical_of_best = "kd_optical" if best == "kd_hint" else f"{best}_optical"  # hints: no optical arm; KD's
    report["targets"] = {
        "best_student": best,
        "gap_to_teacher_points": 100 * (report["teacher"]["miou"] - students[best]),
        "within_8_points_of_teacher": 100 * (report["teacher"]["miou"] - students[best]) <= 8,
        "optical_arm": optical_of_best,
        "optical_gap_points": report[optical_of_best]["gap_to_ideal_points"],
        "optical_within_2_points": report[optical_of_best]["gap_to_ideal_points"] <= 2,
    }
    report["data"] = {"dir": str(data_dir), "train": len(data.train), "val": len(data.val), "test": len(data.test),
                      "size": config.data.size, "classes": data.train.classes}
    report["config"] = config_to_dict(config)
    report["teacher_checkpoint"] = str(teacher_checkpoint) if teacher_checkpoint else None
    report["machine"] = machine_info()
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The results table (mIoU and pixel accuracy, mean ± std over seeds) and the verdicts."""
    def pct(entry: dict[str, Any], key: str) -> str:
        std = entry.get(f"{key}_std")
        return f"{100 * entry[key]:.2f}" + (f" ± {100 * std:.2f}" if std else "")

    rows: list[list[Any]] = []
    named = [("teacher (U-Net)", report["teacher"]), ("SCLC, no KD", report["linear"]), ("SCLC, KD", report["kd"])]
    if "kd_hint" in report:
        named.append(("SCLC, KD + hints", report["kd_hint"]))
    for label, entry in named:
        params = entry.get("params", {})
        rows.append([label, pct(entry, "miou"), pct(entry, "pixel_accuracy"), entry.get("test_images", ""),
                     params.get("optical", 0), params.get("electronic", ""), f"{entry['electronic_flops'] / 1e6:.1f}"])
    for base, name in (("linear", "no KD"), ("kd", "KD")):
        student, optical = report[base], report[f"{base}_optical"]
        profile = optical["profile"]
        for label, entry in ((f"SCLC, {name}, ideal `{profile}` optics, as trained", student["as_trained_ideal_optics"]),
                             (f"SCLC, {name}, physical `{profile}` optics, as trained",
                              student["as_trained_physical_optics"]),
                             (f"SCLC, {name}, physical `{profile}` optics" + (", fine-tuned" if optical["finetuned"] else ""),
                              optical)):
            rows.append([label, pct(entry, "miou"), pct(entry, "pixel_accuracy"), entry["test_images"], "", "", ""])
    table = markdown_table(["model", "test mIoU %", "pixel accuracy %", "test images", "optical params",
                            "electronic params", "electronic MFLOPs/image"], rows)
    targets = report["targets"]
    d = report["data"]
    notes = [
        f"Data: {d['train']} train / {d['val']} val / {d['test']} test images, {d['size']} px, "
        f"{len(d['classes'])} classes, from {d['dir']}; seeds {report['linear']['seeds']}.",
        f"KD against no KD (mIoU): {report['kd_vs_linear']['sentence']}.",
        *([f"Hints: {report['hint_vs_kd']['sentence']}."] if "hint_vs_kd" in report else []),
        f"Best student ({targets['best_student']}): {_gap(targets['gap_to_teacher_points'], 'the teacher')} "
        f"(target: within 8 points).",
        *(f"{name} student through the physical optics{' (fine-tuned)' if o['finetuned'] else ''}: "
          f"{_gap(o['gap_to_ideal_points'], 'the ideal twin')} on the same {o['test_images']} images"
          + (" (the best student's: target within 2 points)" if arm == targets["optical_arm"] else "") + "."
          for arm, name in (("linear_optical", "No-KD"), ("kd_optical", "KD")) if (o := report[arm])),
        f"Electronic work per image: teacher {report['teacher']['electronic_flops'] / 1e6:.1f} MFLOPs, student "
        f"{report['kd']['electronic_flops'] / 1e6:.1f} (camera read-out + decoder); the optical encoder done "
        f"electronically would add {report['digital_encoder_flops'] / 1e6:.1f}.",
        f"Wall time {report.get('wall_seconds', 0):.0f} s (this invocation; finished runs are loaded, not retrained).",
    ]
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _sentence(comparison: Comparison, treated: str, control: str) -> str:
    """`Comparison.sentence`, except that one seed a side is said to decide nothing."""
    if comparison.verdict == "too few seeds to tell":
        return (f"too few seeds to tell ({treated} {100 * comparison.difference:+.2f} mIoU points against "
                f"{control}, n={comparison.treated.n}/{comparison.control.n}; the study needs >= 2 a side, 3 planned)")
    return comparison.sentence(treated, control)


def _gap(points: float, reference: str) -> str:
    """"3.10 mIoU points below the teacher" / "0.20 mIoU points above ..." (signs said in words)."""
    return f"{abs(points):.2f} mIoU points {'below' if points >= 0 else 'above'} {reference}"
