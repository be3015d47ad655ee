"""Copy-me driver templates, one per device kind: `camera`, `slm`, `shutter`, `laser`.

Each is a complete, importable driver whose hardware hooks are marked ``HW:``
(``grep -n "HW:" drivers/templates/camera.py`` lists what to write). Copy the file
into your own package, rename the class, fill in every marked hook with your vendor
SDK's calls, register the class under the ``labrig.devices`` entry-point group and
name its kind in a bench profile. Everything else (bounds checks, pattern checks,
state, idempotent close, the safety guard) is done by the protocol it subclasses
(`drivers.base`), the same for every device. `tests/test_driver_templates.py`
writes a driver from each template this way and opens it in a bench.
"""
