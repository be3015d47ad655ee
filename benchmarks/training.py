"""Training throughput (images/s) of teachers and students: ``python benchmarks/training.py``.

One optimiser step per timing (forward, loss, backward, step) on random
Fashion-MNIST-sized batches; the median over `--steps` steps after two warm-up
steps. Runs on the CPU (with `--threads` torch threads) and, where present,
on CUDA. Prints a markdown table and writes JSON with the machine.

    python benchmarks/training.py --threads 1 --out runs/bench/training.json
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from labrig.distill.losses import kd_loss
from labrig.experiments.classification import ClassificationConfig
from labrig.models.student import StudentModel
from labrig.models.teacher import TeacherCNN, TeacherConfig
from labrig.timing import median_seconds


def measure(device: torch.device, batch: int, steps: int) -> list[dict]:
    config = ClassificationConfig()
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    teacher = TeacherCNN(config.teacher).to(device)
    alexnet = TeacherCNN(TeacherConfig(arch="alexnet", width=64)).to(device)

    def train_step(model: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x)).backward()
            opt.step()
        return step

    def ce(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    frozen = TeacherCNN(config.teacher).to(device).eval().requires_grad_(False)
    cached = frozen(x).detach()

    def kd_live(logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = frozen(x)
        return kd_loss(logits, t, y)

    def kd_cached(logits: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, cached, y)

    def student(mode: str) -> StudentModel:
        s = StudentModel(replace(config.student, frontend=replace(config.student.frontend, mode=mode)))
        return s.to(device)

    cases = [
        ("teacher `small` (width 32)", teacher, ce),
        ("teacher `alexnet` (width 64)", alexnet, ce),
        ("SCLC student, collapsed", student("collapsed"), ce),
        ("SCLC student, collapsed + KD, live teacher", student("collapsed"), kd_live),
        ("SCLC student, collapsed + KD, cached teacher logits", student("collapsed"), kd_cached),
        ("SCLC student, uncollapsed stack", student("stack"), ce),
        ("SCLC student, optics-aware (sim optics)", student("optics_aware"), ce),
    ]
    rows = []
    for name, model, loss in cases:
        model.train()
        seconds = median_seconds(train_step(model, loss), steps, device)
        rows.append({"model": name, "images_per_s": batch / seconds, "step_s": seconds})
        print(f"{device}: {name}: {batch / seconds:,.0f} img/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/training.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {str(d): measure(d, args.batch, args.steps) for d in devices}
    machine = {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
               "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "batch": args.batch, "results": results}, indent=2))
    print("\n| device | model | img/s |\n|---|---|---|")
    for device, rows in results.items():
        for row in rows:
            print(f"| {device} | {row['model']} | {row['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
