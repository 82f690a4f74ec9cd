import sys

import windbg_ext
from windbg_ext.cli import main
from windbg_ext.stdout_pipe import exit_code_quiet_on_broken_pipe

# pykd-ext runs each `!py -m windbg_ext` in a fresh interpreter unless -g: a
# package imported by an earlier run means the global one (links keep -g)
windbg_ext._runs = getattr(windbg_ext, "_runs", 0) + 1
code = exit_code_quiet_on_broken_pipe(lambda: main(global_interpreter=windbg_ext._runs > 1))
if code:
    sys.exit(code)
