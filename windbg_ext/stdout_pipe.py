"""A reader that stops early (`python -m windbg_ext ... | head`) is not an
error: the tool exits quietly, as Unix tools do, instead of printing
"Broken pipe" or a traceback while Python flushes stdout at exit."""
import os
import sys
from typing import Callable

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool the signal stopped


def exit_code_quiet_on_broken_pipe(main: Callable[[], int]) -> int:
    """Run main(); if the reader of stdout went away, return EXIT_BROKEN_PIPE and say nothing."""
    try:
        code = main()
        sys.stdout.flush()  # the last buffered lines may be the ones that meet the closed pipe
        return code
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at /dev/null so that flush cannot fail too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
