"""Errors of the emulated machine (one line each, for the user)."""


class MachineError(Exception):
    """The emulated machine cannot continue."""
