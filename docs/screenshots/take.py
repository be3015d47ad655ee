"""Take the README's console screenshots from a real window on the simulated bench.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/screenshots/take.py
    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots/take.py --size 1366x768

With --size the window is given that size (the screen's) and only the whole window is
taken, as console-<size>.png: every dock must stay readable (they scroll) at it.

Trains a tiny student on a toy task (a bright square whose place is the class),
compiles it for `sim`, then drives the console as an operator would: connect,
load the program, show an image with the light on, run 320 images and browse the
images of one confusion-matrix cell. Each dock in use is grabbed (`QWidget.grab`) into docs/screenshots/<dock>.png.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from labrig.data import ImageDataset
from labrig.deploy import compile_program, save_program
from labrig.deploy.inputs import encode_images
from labrig.distill import TrainConfig, Trainer, seed_everything
from labrig.models import BackendConfig, SCLCConfig, StudentConfig, StudentModel

OUT = Path(__file__).parent
SIZE = 16


def toy(n: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        r, col = 2 + 3 * (c // 4), 1 + 4 * (c % 4)
        images[i, 0, r : r + 4, col : col + 4] += 0.7
    return ImageDataset((images.clamp(0, 1) * 255).to(torch.uint8), labels,
                        [f"class {i}" for i in range(10)], name="toy squares")


def trained_program(folder: Path) -> Path:
    seed_everything(0)
    model = StudentModel(StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)),
                                       backend=BackendConfig(), input_size=(SIZE, SIZE)))
    Trainer(model, TrainConfig(epochs=6, batch_size=32, lr=3e-3, progress=False, seed=1,
                               device="cpu")).fit(toy(640, 0))
    program = compile_program(model, "sim", toy(64, 2))
    return save_program(program, folder / "toy-squares.h5")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from PySide6.QtCore import QEventLoop, QSettings

    from labrig.gui.app import create_app
    from labrig.gui.main_window import MainWindow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="", help="WxH: the window's size; only the whole window is taken")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    torch.set_num_threads(1)
    app = create_app()
    folder = Path(tempfile.mkdtemp(prefix="labrig-shots-"))
    program_path = trained_program(folder)
    window = MainWindow("sim", settings=QSettings(str(folder / "console.ini"), QSettings.Format.IniFormat))
    window.resize(*(size or (1600, 1000)))
    window.show()

    def pump(seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if until is not None and until():
                return

    def grab(widget, name: str) -> None:
        if hasattr(widget, "raise_"):
            widget.raise_()
        pump(0.6)
        path = OUT / f"{name}.png"
        widget.grab().save(str(path))
        print("wrote", path)

    window.devices.connect_bench()
    pump(60, lambda: window.session.connected)
    window.program.open_program(program_path)
    pump(60, lambda: window.session.program is not None)
    session, program = window.session, window.session.program
    window.program.channel.setValue(1)
    window.program.what.setCurrentText("mask phase")

    # what the bench computes for one image: the program's filter, one encoded image, the light on
    images = toy(8, 3)
    gray = encode_images(program.input, images.images[:, 0].numpy() / 255.0)
    session.show_pattern("filter", program.filter.gray[0])
    session.show_pattern("input", gray[5])
    session.set_camera(exposure_s=program.readout.exposure_s[0], gain=program.readout.gain)
    session.set_laser_power(program.readout.laser_power_w)
    session.arm()
    window.live.auto_levels.setChecked(True)
    pump(3)
    top = min(r[0] for r in window.live.rois) - 30
    bottom = max(r[2] for r in window.live.rois) + 30
    left = min(r[1] for r in window.live.rois) - 30
    right = max(r[3] for r in window.live.rois) + 30
    zoom = {"xRange": (left, right), "yRange": (top, bottom), "padding": 0}
    window.live.view.viewbox.setRange(**zoom)
    if size is None:
        grab(window.live, "live")
        grab(window.devices, "devices")
        grab(window.patterns, "patterns")
        grab(window.program, "program")
    session.make_safe()
    window.devices.power.edit.setText("99999")  # refused (not clipped): shown under the box, logged
    window.devices.power.commit()

    window.run.set_dataset(toy(320, 4), "toy squares (320 images)")
    window.run.out_path.setText(str(folder / "run.h5"))
    window.run.limit.setValue(0)
    window.run.batch.setValue(32)
    window.run.twin.setChecked(True)
    window.run.start_run()
    pump(300, lambda: not window.run.running and window.run.result is not None)
    window.run.index.setValue(7)
    matrix = window.run.outcome.confusion() if window.run.outcome is not None else None
    if matrix is not None:  # browse one confusion cell: the worst mix-up, else the first class
        off = matrix * (1 - torch.eye(len(matrix), dtype=torch.int64).numpy())
        cell = divmod(int(off.argmax()), len(matrix)) if off.max() > 0 else (0, 0)
        window.run.confusion.setCurrentCell(*cell)
        window.run.filter_cell(*cell)
    window.log_dock.level.setCurrentText("INFO")
    if size is None:
        grab(window.run, "run")
        grab(window.log_dock, "log")
    window.run.raise_()
    window.program.raise_()
    window.live.raise_()
    session.arm()  # the light on again: the live view shows the image the run left on the input
    pump(2.0)  # the live view came back after the run (fitted to the frame): zoom in again
    window.live.view.viewbox.setRange(**zoom)
    grab(window, f"console-{size[0]}x{size[1]}" if size else "console")
    session.make_safe()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
