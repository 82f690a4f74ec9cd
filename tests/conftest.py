"""Shared by every test directory: the repository root is importable
(windbg_ext, emulated_lab) without installing the package."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
