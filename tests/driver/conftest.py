"""Fixtures of the driver tests (defined in support.py)."""
from .support import built_driver, host_core, host_program  # noqa: F401 (pytest fixtures)
