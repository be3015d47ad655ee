"""From trained kernels to what a bench shows and reads."""

from labrig.deploy.compiler import CompiledFrontEnd, compile_kernels, place_inputs, read_tiles

__all__ = ["CompiledFrontEnd", "compile_kernels", "place_inputs", "read_tiles"]
