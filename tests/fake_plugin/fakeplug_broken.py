"""A plugin module whose import fails, like a driver missing its vendor SDK."""

raise ImportError("libfakevendor.so: cannot open shared object file")
