"""Import modules afresh, so their import-time code runs again (issue 16).

mutmut activates a mutant by setting MUTANT_UNDER_TEST before each test, but the
modules were imported before that: code that runs at import (the `@R.rule`
decorators of entry_checks/controls.py, host.py and guest_*.py, which call
model.Registry, and guest_state's `_inject_rule`, `_link` and `R.add` calls)
ran with no mutant active. Inside `rebuilt(...)` those modules are imported
again, so that code runs with the mutant under test, and the fresh modules are
returned; afterwards sys.modules and the parent packages' attributes are put
back as they were, so other tests see the original objects.

    with rebuilt("windbg_ext.arch.entry_checks.guest_state") as (gs,):
        ids = [c.id for c in gs.CHECKS]
"""
from __future__ import annotations

import contextlib
import importlib
import sys

_MISSING = object()


def _parent_attr(name):
    parent, _, child = name.rpartition(".")
    return (sys.modules.get(parent), child) if parent else (None, child)


@contextlib.contextmanager
def rebuilt(*names):
    """Yields the modules `names` imported again, in the order given."""
    saved = {n: sys.modules.get(n, _MISSING) for n in names}
    attrs = {}
    for n in names:
        parent, child = _parent_attr(n)
        if parent is not None:
            attrs[n] = (parent, child, getattr(parent, child, _MISSING))
    try:
        for n in names:
            sys.modules.pop(n, None)
        yield tuple(importlib.import_module(n) for n in names)
    finally:
        for n, old in saved.items():
            if old is _MISSING:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old
        for parent, child, old in attrs.values():
            if old is _MISSING:
                if hasattr(parent, child):
                    delattr(parent, child)
            else:
                setattr(parent, child, old)
