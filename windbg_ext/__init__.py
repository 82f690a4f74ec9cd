"""hvlab's WinDbg/PyKD suite: see inside a VT-x hypervisor, live or offline.

Kept import-light: every `!py` call starts a fresh interpreter, so importing
this package must cost next to nothing. Heavy modules are imported by the
command that needs them.
"""
__version__ = "0.1.0"
