"""labrig: hybrid optical-electronic neural networks on a 4f optical bench."""

__version__ = "0.1.0"
