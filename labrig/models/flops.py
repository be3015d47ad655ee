"""Per-image FLOP counts of the electronic parts, by forward hooks.

A multiply-add counts as 2 FLOPs; element-wise ops (ReLU, BatchNorm's scale
and shift, normalisation) as 1 or 2 per element; pooling as one per input
element. A module may define ``extra_flops(inputs, output) -> int`` for its own
functional work (e.g. a log1p in its forward); its children are counted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

_POOLS = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid)


def _per_image(t: torch.Tensor) -> int:
    return t[0].numel() if t.ndim > 0 else 1


def module_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """FLOPs per image of one forward of a leaf module (0 for unknown/free modules)."""
    custom = getattr(module, "extra_flops", None)
    if callable(custom):
        return int(custom(inputs, output))
    x = inputs[0] if inputs else None
    if isinstance(module, nn.Conv2d):
        per_out = 2 * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        per_out += 1 if module.bias is not None else 0
        return per_out * _per_image(output)
    if isinstance(module, nn.Linear):
        return (2 * module.in_features + (1 if module.bias is not None else 0)) * _per_image(output)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return 2 * _per_image(output)
    if isinstance(module, _ELEMENTWISE):
        return _per_image(output)
    if isinstance(module, _POOLS) and x is not None:
        return _per_image(x)
    return 0


def count_flops(
    model: nn.Module,
    run: Callable[[], object],
    *,
    skip: Callable[[nn.Module], bool] | None = None,
) -> int:
    """FLOPs per image of what `run()` does with `model`'s counted modules.

    Leaves are counted by type, and any module with its own ``extra_flops`` method
    (plus its children). `skip(module)` excludes a subtree.
    """
    total = 0
    handles = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += module_flops(module, inputs, output)

    def visit(module: nn.Module) -> None:
        if skip is not None and skip(module):
            return
        children = list(module.children())
        if callable(getattr(module, "extra_flops", None)) or not children:
            handles.append(module.register_forward_hook(hook))
        for child in children:
            visit(child)

    visit(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run()
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
