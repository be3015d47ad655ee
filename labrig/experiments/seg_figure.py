"""The segmentation figure: inputs, ground truth and each model's prediction side by side.

One row per test image, one column per panel, a title above each column and a
legend of class colours below. Drawn with PIL (no plotting stack needed), at
an integer zoom so small scenes stay legible; written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from labrig.io import atomic_write

# background black, then well-separated colours (tab20-like); ignore is white
_COLOURS = [
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138),
    (174, 199, 232), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (219, 219, 141),
    (158, 218, 229), (127, 127, 127), (100, 100, 255),
]
IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
    """(256, 3) uint8 colours: class c, and white for the ignore label 255."""
    table = np.zeros((256, 3), dtype=np.uint8)
    for c in range(num_classes):
        table[c] = _COLOURS[c % len(_COLOURS)]
    table[255] = IGNORE_COLOUR
    return table


def colourise(mask: torch.Tensor, num_classes: int) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 colours."""
    return palette(num_classes)[mask.to(torch.uint8).cpu().numpy()]


def gray(image: torch.Tensor) -> np.ndarray:
    """(1, H, W) or (H, W) float in [0, 1] or uint8 -> (H, W, 3) uint8."""
    x = image.detach().cpu().float()
    x = x[0] if x.ndim == 3 else x
    if image.dtype != torch.uint8:
        x = x * 255
    a = x.clamp(0, 255).round().to(torch.uint8).numpy()
    return np.repeat(a[:, :, None], 3, axis=2)


def segmentation_figure(
    path: str | Path,
    images: torch.Tensor,
    truth: torch.Tensor,
    predictions: dict[str, torch.Tensor],
    classes: Sequence[str],
    *,
    zoom: int | None = None,
) -> Path:
    """Write the figure: `images` (N, 1, H, W), `truth` (N, H, W), each prediction (N, H, W)."""
    n, _, h, w = images.shape
    zoom = zoom or max(1, 128 // max(h, w))
    ch, cw = h * zoom, w * zoom
    titles = ["input", "ground truth", *predictions]
    pad, title_h = 4, 16
    legend_rows = (len(classes) + 3) // 4
    width = len(titles) * (cw + pad) + pad
    height = title_h + n * (ch + pad) + pad + legend_rows * 14 + 6
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(titles):
        draw.text((pad + col * (cw + pad), 2), title, fill=(0, 0, 0))
    for row in range(n):
        panels = [gray(images[row]), colourise(truth[row], len(classes)),
                  *(colourise(p[row], len(classes)) for p in predictions.values())]
        for col, panel in enumerate(panels):
            tile = Image.fromarray(panel).resize((cw, ch), Image.NEAREST)
            canvas.paste(tile, (pad + col * (cw + pad), title_h + row * (ch + pad)))
    colours = palette(len(classes))
    top = title_h + n * (ch + pad) + pad
    for c, name in enumerate(classes):
        x, y = pad + (c % 4) * (width // 4), top + (c // 4) * 14
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=tuple(int(v) for v in colours[c]), outline=(0, 0, 0))
        draw.text((x + 14, y + 1), str(name), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
