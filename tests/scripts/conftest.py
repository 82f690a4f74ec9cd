"""scripts/ is not a package: put it on sys.path so `debuggee` imports as the
check-debuggee wrapper imports it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
for p in (SCRIPTS, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture
def data():
    return lambda name: os.path.join(DATA, name)
