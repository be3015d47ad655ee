"""Write docs/results.md from the experiments' JSON outputs, so the numbers in the
doc are the numbers the commands produced.

    python docs/make_results.py --classification R.json --study RUNS/study.json \
        --efficiency EFF/efficiency.json --segmentation SEG.json [--out docs/results.md]

`--study` may be a ``study-status.json`` (a study still running): the doc then
says how many jobs had finished.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labrig.experiments.report import markdown_table
from labrig.experiments.seg_report import report_markdown
from labrig.experiments.stats import COMPARISON_COLUMNS, comparison_row, restate


def pct(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def classification_section(r: dict) -> str:
    rows = []
    names = {"teacher": "teacher (nonlinear CNN, `small`)", "linear": "SCLC, no KD", "kd": "SCLC, KD (T = 10, α = 0.5)",
             "kd_optical": "SCLC, KD, through the `sim` optics, fine-tuned"}
    for key, label in names.items():
        e = r[key]
        p = e["params"]
        rows.append([label, pct(e["accuracy"], e.get("accuracy_std")), p.get("optical", 0), p["electronic"],
                     f"{e['electronic_flops']:,}"])
    best = r["best_optical"]
    rows.append([f"best ideal student ({'KD' if best['arm'] == 'kd' else 'no KD'}) through the `sim` optics, fine-tuned",
                 pct(best["accuracy"], best["accuracy_std"]), "", "", ""])
    table = markdown_table(["model", "test accuracy % (mean ± std, 3 seeds)", "optical params",
                            "electronic params", "electronic FLOPs/image"], rows)
    kd_opt = r["kd_optical"]
    return f"""{table}

- Teacher: {pct(r['teacher']['accuracy'])} % (target ≥ 94.0 %), one run.
- Best SCLC student with ideal optics: {'KD' if best['arm'] == 'kd' else 'no KD'},
  {pct(best['ideal_accuracy'], best['ideal_accuracy_std'])} % (target ≥ 91.5 %).
- The same student through the `sim` bench's optics (8-bit phase-only SLM with
  double-phase encoding, 4 tiles per frame, camera shot and read noise, 12-bit
  ADC) after a 40-step optics-aware fine-tune: {pct(best['accuracy'], best['accuracy_std'])} %,
  {best['gap_points']:.2f} points below it (target ≤ 1.0); before the fine-tune
  {pct(best['accuracy_as_trained'])} % (on {min(10000, r['config'].get('as_trained_test_limit') or 10000)} test images).
- The KD student through the same optics: {pct(kd_opt['accuracy'], kd_opt.get('accuracy_std'))} %,
  {kd_opt['gap_to_kd_points']:.2f} points below the ideal KD student.
- Data: {r['data']['train']} training / {r['data']['val']} validation (from the
  training split, seeded, stratified) / {r['data']['test']} test images.
  Students: 16 optical channels, two 5×5 layers collapsing to 9×9 kernels,
  coherent detection, `mlp` back end (log1p of the tiles, 6×6 pooling, one
  hidden layer of 256), AdamW lr 3e-3, cosine schedule, 6 epochs, batch 128, no
  augmentation. Teacher: 18 epochs with crop and flip augmentation.
- Wall time of the report: {r.get('wall_seconds', 0) / 60:.0f} min (most runs reused from the KD study's folder).
"""


def study_section(s: dict) -> str:
    head = ""
    if "finished_jobs" in s:
        head = (f"**Partial:** {s['finished_jobs']} of {s['total_jobs']} jobs had finished when this was written; "
                "arms with fewer than 3 seeds are marked by their n.\n\n")
    arms = markdown_table(["arm (back end / budget / recipe)", "test accuracy % (mean ± std)", "n"],
                          [[k, pct(a["mean"], a["std"]), a["n"]] for k, a in s["arms"].items()])
    comparisons = [restate(c) for c in s["comparisons"]]
    comps = markdown_table(COMPARISON_COLUMNS, [comparison_row(c) for c in comparisons])
    sentences = "\n".join(f"- {c['what']}: {c['sentence']}." for c in comparisons)
    return f"{head}### Arms\n\n{arms}\n\n### Comparisons (Welch's t-test; verdict at p < 0.05)\n\n{comps}\n\n{sentences}\n"


def efficiency_section(e: dict) -> str:
    rows = []
    for p in e["points"]:
        f, t = p["flops"], p["latency_s"]
        rows.append([p["size"], f"{f['teacher']:.3g}", f"{f['sclc_direct']:.3g}", f"{f['sclc_fft']:.3g}",
                     f"{f['hybrid']:.3g}", f"{f['sclc_fft'] / f['hybrid']:.1f}", f"{f['teacher'] / f['hybrid']:.0f}",
                     f"{1e3 * t['teacher']:.2f}", f"{1e3 * t['sclc_direct']:.2f}", f"{1e3 * t['sclc_fft']:.2f}",
                     f"{1e3 * t['hybrid']:.2f}"])
    table = markdown_table(["N", "teacher FLOPs", "SCLC direct", "SCLC FFT", "hybrid", "FFT/hybrid", "teacher/hybrid",
                            "teacher ms", "direct ms", "FFT ms", "hybrid ms"], rows)
    cross = e["crossover"]
    text = f"""{table}

Crossovers (smallest N from which the hybrid stays cheaper): FLOPs {cross['flops']};
latency {cross['latency']}. Frame time of the optics: {1e3 * e['bench_frame']['frame_s']:.2f} ms
(`{e['bench_frame']['profile']}`: settle {e['bench_frame']['settle_s']} s + exposure {e['bench_frame']['exposure_s']} s).
Machine: {e['machine']['platform']}, {e['machine']['device']}, {e['machine']['threads']} threads, torch
{e['machine']['torch']}; latency is the median of {e['repeats']} single-image runs.
"""
    return text


def _binned_ways(e: dict) -> list[str]:
    return [f"hybrid_bin{k}" for k in e["binning"]]


def binning_section(e: dict) -> str:
    """The on-camera binning arm and the energy per image (FLOPs-based host time)."""
    ways = _binned_ways(e)
    timed = e.get("latency_measured", True)

    def label(way: str) -> str:
        k = way.split("_bin")[1]
        return f"{k}×{k} binned"

    def cell(p: dict, metric: str, way: str, scale: float, fmt: str) -> str:
        v = (p.get(metric) or {}).get(way)
        if v is None:
            return "–"
        v = v["total"] if isinstance(v, dict) else v
        return format(scale * v, fmt)

    flops = markdown_table(
        ["N", "tile px", "hybrid FLOPs", *(label(w) for w in ways), "SCLC FFT / best binned",
         *(["hybrid ms", *(f"{label(w)} ms" for w in ways)] if timed else [])],
        [[p["size"], f"{p['tile'][0]}²", f"{p['flops']['hybrid']:.3g}", *(cell(p, "flops", w, 1, ".3g") for w in ways),
          f"{p['flops']['sclc_fft'] / min(p['flops'][w] for w in ['hybrid', *ways] if w in p['flops']):.0f}",
          *([cell(p, "latency_s", "hybrid", 1e3, ".2f"), *(cell(p, "latency_s", w, 1e3, ".2f") for w in ways)]
            if timed else [])]
         for p in e["points"]])

    def split(p: dict, way: str) -> str:
        v = p["energy_j"].get(way)
        if v is None:
            return "–"
        return f"{1e3 * v['total']:.3g} ({1e3 * (v['total'] - v['host']):.3g} + {1e3 * v['host']:.3g})"

    energy = markdown_table(
        ["N", "teacher mJ", "SCLC direct mJ", "SCLC FFT mJ", "hybrid mJ (bench + host)",
         *(f"{label(w)} mJ (bench + host)" for w in ways)],
        [[p["size"], *(cell(p, "energy_j", w, 1e3, ".3g") for w in ("teacher", "sclc_direct", "sclc_fft")),
          split(p, "hybrid"), *(split(p, w) for w in ways)]
         for p in e["points"]])
    powers = markdown_table(["part", "power W", "what", "source"],
                            [[r["key"], f"{r['watts']:g}", r["part"], r["source"]] for r in e["powers"]])
    cross = e["crossover"]
    rate = e.get("host_rate_flops", {})
    return f"""### On-camera binning and energy per image

`labrig experiment efficiency --no-latency --out docs/results/binning` (FLOPs are
counted on the real modules, so this arm needs no timing; single-image
latencies on this session's CPU, shared at a load average of 20–27 on 2 cores,
measured the load, not the models). The camera sums k×k pixels before the host
sees them (SFNC `BinningHorizontal` / `BinningVertical`, now in the GenICam
driver; the twin's `CameraModel.binned_electrons`), so the host reads k² fewer
pixels per tile; a factor is tried only while a binned tile keeps at least the
back end's 6×6 pooling grid ("–" otherwise).

{flops}

Energy per image: every part's electrical power times the time it is needed —
the bench parts for the optical frame ({1e3 * e['bench_frame']['frame_s']:.1f} ms), the host for its FLOPs
at {rate.get('value', 0) / 1e9:.0f} GFLOP/s ({rate.get('source', '')}). Crossovers in
energy (smallest N from which the hybrid stays cheaper): unbinned {cross.get('energy')};
4×4 binned {cross.get('energy_bin4')}; 8×8 binned {cross.get('energy_bin8')}.

{energy}

The power figures are **assumptions**, not measurements:

{powers}
"""


def budget_section(b: dict | None) -> str:
    """The 10 %-subset demonstration: the old epoch-counted budget against the step-counted one."""
    if b is None:
        return "*Not run for this page.*\n"
    from labrig.experiments.budget import report_markdown as budget_table

    c = b["config"]
    t_ref = b["arms"]["full"]["promised_steps"]
    lines = []
    if b.get("finished_only") and any(a.get(k) is None for a in b["arms"].values() for k in ("teacher", "linear", "kd")):
        lines.append("**Partial:** the runs finished when this page was written; n says how many seeds an "
                     "entry has.\n")
    lines.append(budget_table(b))
    trained = sum((a.get(k) or {}).get("train_seconds", 0.0) for a in b["arms"].values()
                  for k in ("teacher", "linear", "kd"))
    for comp in b.get("comparisons", []):
        lines.append(f"- {comp['what']}: {comp['sentence']}.")
    base = c["base"]
    lines.append(f"""
Budget (reduced to fit this CPU; the same in every arm), in optimisation steps of batch
{base['student_train']['batch_size']}: teacher {t_ref['teacher']} ({c['teacher_epochs']} epoch(s) of the full
{c['reference_train_size']}-image split), students {t_ref['student']}
({c['student_epochs']} × {c.get('student_steps_per_epoch') or 'a full pass'} steps, `--student-steps`); the subset is a seeded
random {100 * c['fraction']:.0f} % of the training split ({b['arms']['subset/steps']['train_images']} images).
Teacher: width {base['teacher']['width']} (the classification teacher's architecture at half width, to fit the CPU),
crop and flip augmentation; students: the classification experiment's (16 optical channels, 9² collapsed kernels,
`mlp` back end); KD T = {base['kd']['temperature']:g}, α = {base['kd']['alpha']:g} from the arm's own teacher.
Validation: {b['arms']['full']['val_images']} images; test: the {b['arms']['full']['test_images']}-image test split.
Training time summed over the runs: {trained / 3600:.1f} h of one niced thread each, on 2 cores shared at a load
average of 20–27 (runs trained in parallel processes, then loaded by the report).
""")
    return "\n".join(lines)


def frontier_section(f: dict | None) -> str:
    """mIoU against host MFLOPs: every student variant and the teacher."""
    if f is None:
        from labrig.experiments.seg_frontier import FrontierConfig, plan, plan_markdown

        p = plan(FrontierConfig())
        return (f"**Not trained for this page** (see below for why). The designs and what each costs the host at "
                f"{p['size']} px, computed from the models (no training needed):\n\n{plan_markdown(p)}")
    from labrig.experiments.seg_frontier import report_markdown as frontier_table

    c = f["config"]["base"]
    return f"""{frontier_table(f)}
Budget: {f['data']['train']} training / {f['data']['val']} validation / {f['data']['test']} test scenes of
{f['data']['size']} px; teacher {c['teacher_train']['epochs']} epochs, every student {c['student_train']['epochs']}
epochs (seeds {f['config']['seeds']}), labels only, scored in the digital (collapsed) mode.
Wall time {f.get('wall_seconds', 0) / 60:.0f} min.

![segmentation frontier](results/seg-frontier.png)
"""


def segmentation_section(r: dict) -> str:
    """The experiment's own table and verdicts, plus the per-seed values and the settings."""
    r = {**r, "kd_vs_linear": restate(r["kd_vs_linear"], "KD", "no KD")}
    if "hint_vs_kd" in r:
        r["hint_vs_kd"] = restate(r["hint_vs_kd"], "KD + hints", "KD")
    c = r["config"]
    student, train = c["student"], c["student_train"]
    front, decoder = student["frontend"], student["decoder"]
    seeds = markdown_table(
        ["seed", "no KD", "KD", "no KD, optics, fine-tuned", "KD, optics, fine-tuned"],
        [[seed, *(f"{100 * r[arm]['mious'][i]:.2f}" for arm in ("linear", "kd", "linear_optical", "kd_optical"))]
         for i, seed in enumerate(r["linear"]["seeds"])])
    kd = c["kd"]
    tune = c["optical_finetune"] or {}
    return f"""{report_markdown(r)}
Per seed (test mIoU %; the optical columns on the first {r['kd_optical']['test_images']} test images):

{seeds}

Settings: scenes of {r['data']['size']} px with {c['data']['scenes']['items'][0]}–{c['data']['scenes']['items'][1]}
garments each (side {c['data']['scenes']['item_scale'][0]}–{c['data']['scenes']['item_scale'][1]} of the scene,
turned by up to ±{c['data']['scenes']['rotation_deg']:.0f}°, on textured noisy backgrounds); test scenes are built
from the IDX test split only. Teacher: U-Net width {c['teacher']['width']}, depth {c['teacher']['depth']},
{c['teacher_train']['epochs']} epochs. Students: linear conv layers of {' and '.join(f'{k}×{k}' for k in front['kernel_sizes'])}
({'/'.join(str(k) for k in front['channels'])} channels) that collapse to {front['channels'][-1]} Fourier masks
({sum(front['kernel_sizes']) - len(front['kernel_sizes']) + 1}² kernels), coherent detection on the
`{student['optics']['profile']}` bench, decoder
{decoder['widths']} with dilations {decoder['dilations']} at 1/{decoder['downsample']} resolution;
{train['epochs']} epochs, AdamW lr {train['lr']}, batch {train['batch_size']}, cosine; KD T = {kd['temperature']},
α = {kd['alpha']} from cached float16 teacher logits. Optics-aware fine-tune: {tune.get('max_steps_per_epoch')} steps
of batch {tune.get('batch_size')}, lr {tune.get('lr')}. Machine: {r['machine']['platform']}, torch {r['machine']['torch']},
{r.get('workers', 1)} worker process(es) of one thread for the students.

![segmentation predictions](results/segmentation.png)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classification", type=Path, required=True)
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--efficiency", type=Path, required=True)
    parser.add_argument("--segmentation", type=Path, required=True)
    parser.add_argument("--binning", type=Path, default=None,
                        help="efficiency JSON with the binned arms and energy (default: --efficiency's, if it has them)")
    parser.add_argument("--budget", type=Path, default=None, help="experiment budget's report (optional)")
    parser.add_argument("--frontier", type=Path, default=None, help="experiment seg-frontier's report (optional)")
    parser.add_argument("--template", type=Path, default=Path(__file__).with_name("results.template.md"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    text = args.template.read_text()
    text = text.replace("{{classification}}", classification_section(json.loads(args.classification.read_text())))
    text = text.replace("{{study}}", study_section(json.loads(args.study.read_text())))
    efficiency = json.loads(args.efficiency.read_text())
    text = text.replace("{{efficiency}}", efficiency_section(efficiency))
    binned = json.loads(args.binning.read_text()) if args.binning else efficiency
    text = text.replace("{{binning}}", binning_section(binned) if binned.get("binning") else "")
    text = text.replace("{{budget}}", budget_section(json.loads(args.budget.read_text()) if args.budget else None))
    text = text.replace("{{frontier}}",
                        frontier_section(json.loads(args.frontier.read_text()) if args.frontier else None))
    text = text.replace("{{segmentation}}", segmentation_section(json.loads(args.segmentation.read_text())))
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
