"""The one error type for a model that cannot be built as configured."""

from __future__ import annotations

from drivers.errors import LabrigError


class ModelConfigError(LabrigError, ValueError):
    """A model config is inconsistent or names an unknown option; the message says which."""
