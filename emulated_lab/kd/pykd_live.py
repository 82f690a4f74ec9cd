"""`pykd` for the emulated kd session: pykd 0.3.4.15's functions
(kd/pykd_api.py) backed by the frozen emulated machine (kd/stub.py).

`python -m emulated_lab kd` puts this module in sys.modules as `pykd` while
scripts run, as pykd-ext does with the real one, and sets `_stub`. Its
controls are private: `_calls`, `_break_pending` (set by Ctrl+C at the kd
prompt: Ctrl+Break), `_break_after` (tests).
"""
from emulated_lab.kd.pykd_api import install as _install

_stub = None
_calls = []
_break_pending = False
_break_after = None

_install(globals())
