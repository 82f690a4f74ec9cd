"""The one base class of "bad input" errors, shared by the front end, the
commands and the input-file readers (and by the lab, which reuses the readers).

An InputError's message is one line for the user: what is wrong, what to do.
The front end turns it into `error: ...` and exit code 2, never a traceback.
"""


class InputError(Exception):
    """Bad input from the user (arguments, files); the message is one line."""
