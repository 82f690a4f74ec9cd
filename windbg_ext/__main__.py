import sys

from windbg_ext.cli import main

code = main()
if code:
    sys.exit(code)
