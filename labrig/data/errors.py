"""The one error type for bad or missing data.

It is a `ValueError` too, so callers that already catch bad input keep working,
and a `LabrigError`, so a front end can catch everything labrig raises on purpose.
"""

from __future__ import annotations

from drivers.errors import LabrigError


class DataError(LabrigError, ValueError):
    """A dataset file is missing, malformed or inconsistent; the message names the file."""
