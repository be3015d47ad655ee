"""The console's docks, one module each: devices, live view, patterns, program, run, log.

Each dock is a `QDockWidget` built from the shared `Session` (bench, program) and
`TaskManager` (worker threads); it shows state and forwards the operator's
commands to the engine, nothing more.
"""
