"""Serial bench controllers (pyserial): a command/response transport and the drivers on it.

`transport` frames requests and replies with timeouts and retries; `sc10` is the
Thorlabs SC10 shutter controller, `obis` a Coherent OBIS laser (SCPI-style).
"""
