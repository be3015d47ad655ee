"""Drivers for real devices, one module or package per vendor SDK: `genicam` (cameras over
harvesters), `slm` and `slmsuite_camera` (slmsuite), `serial` (Thorlabs SC10 shutter,
Coherent OBIS laser). Each implements a protocol of `drivers.base` and is found by the
bench through its ``labrig.devices`` entry point; a new one starts from `drivers.templates`.
"""
