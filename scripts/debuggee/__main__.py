"""python -m debuggee (from scripts/): same as scripts/check-debuggee."""
import sys

from debuggee.cli import main

sys.exit(main())
