"""python -m debuggee (from scripts/): same as scripts/check-debuggee."""
import sys

from debuggee.cli import console_main

sys.exit(console_main())
