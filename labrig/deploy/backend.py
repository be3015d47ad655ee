"""The electronic back end as program data, and back again as a module on a device.

Only `labrig.models.backends` is needed to run it: no trainer, no front end.
"""

from __future__ import annotations

import numpy as np
import torch

from labrig.deploy.program import BackendProgram
from labrig.models.backends import BackendConfig, ElectronicBackend
from labrig.models.serialize import config_from_dict, config_to_dict

__all__ = ["backend_program", "build_backend"]


def backend_program(backend: ElectronicBackend, in_channels: int, num_classes: int,
                    classes: list[str] | tuple[str, ...] = ()) -> BackendProgram:
    """Freeze a trained back end (floating weights as float32)."""
    state = {}
    for name, t in backend.state_dict().items():
        t = t.detach().cpu()
        state[name] = (t.to(torch.float32) if t.is_floating_point() else t).numpy().copy()
    return BackendProgram(
        config=config_to_dict(backend.config), in_channels=int(in_channels), num_classes=int(num_classes),
        state=state, classes=tuple(str(c) for c in classes),
    )


def build_backend(spec: BackendProgram, device: torch.device | str = "cpu") -> ElectronicBackend:
    """An `ElectronicBackend` in eval mode (BatchNorm on its running statistics), float32."""
    net = ElectronicBackend(config_from_dict(BackendConfig, spec.config, "backend"), spec.in_channels,
                            spec.num_classes)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in spec.state.items()})
    return net.to(device=device, dtype=torch.float32).eval()
