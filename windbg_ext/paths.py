"""Files the tools read and write, checked before they are touched.

Both tools (windbg_ext and emulated_lab) take paths from the user: images,
dumps, drivers, JSON inputs, hives, and images or JSON files to write. The
rules, in one place:

- a path to read must name a regular file that can be read: a directory, a
  FIFO (which would block forever), a device or a socket is refused with a
  message saying which, never "does not exist";
- a path to write must be new or an existing regular, writable file, in a
  directory that exists: a device node, a FIFO, a symbolic link or a
  directory is refused and left untouched (the atomic temp-file + rename
  write would otherwise replace /dev/null with a regular file);
- an empty path is an error.

Every refusal is a PathError with one line: what is wrong, what to do.
"""
from __future__ import annotations

import os
import stat
from typing import Callable, IO

from windbg_ext.errors import InputError


class PathError(InputError):
    """A path the user gave cannot be used; the message is one line."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _examine(path: str, what: str, stat_call: Callable[[str], os.stat_result], hint: str):
    """-> (path, its stat, or None when nothing is there). An empty path is an error."""
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise PathError("%s: no path given (%s)" % (what, hint))
    try:
        return path, stat_call(path)
    except FileNotFoundError:
        return path, None
    except OSError as e:
        raise PathError("%s %s cannot be examined: %s" % (what, path, e.strerror or e))


def readable_file(path: str, what: str) -> str:
    """Returns `path` if it names a readable regular file (symbolic links are
    followed), else raises PathError naming `what` (e.g. "--image")."""
    path, st = _examine(path, what, os.stat, "give a file name")
    if st is None:
        raise PathError("%s %s does not exist" % (what, path))
    if stat.S_ISDIR(st.st_mode):
        raise PathError("%s %s is a directory: give a file inside it" % (what, path))
    if not stat.S_ISREG(st.st_mode):
        raise PathError("%s %s is not a regular file (it is %s)" % (what, path, file_kind(st.st_mode)))
    if not os.access(path, os.R_OK):
        raise PathError("%s %s is not readable (permission denied)" % (what, path))
    return path


def open_for_reading(path: str, what: str, mode: str = "rb") -> IO:
    """readable_file, then open without blocking on a FIFO swapped in since the
    check (O_NONBLOCK), and check again on the open file."""
    readable_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise PathError("%s %s cannot be opened: %s" % (what, path, e.strerror or e))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathError("%s %s is not a regular file (it is %s)" % (what, path, file_kind(st.st_mode)))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def writable_file(path: str, what: str) -> str:
    """Returns `path` if a file may be written there: a new name in an existing,
    writable directory, or an existing regular file that is writable. Refuses
    (untouched) directories, devices, FIFOs, sockets and symbolic links."""
    path, st = _examine(path, what, os.lstat, "give a file name, e.g. lab.hvimg")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise PathError("%s %s is a directory: give a file name inside it" % (what, path))
        if stat.S_ISLNK(st.st_mode):
            raise PathError("%s %s is a symbolic link (to %s): refusing to replace it; give the file it points "
                            "to or a new name" % (what, path, os.readlink(path)))
        if not stat.S_ISREG(st.st_mode):
            raise PathError("%s %s is not a regular file (it is %s): refusing to replace it; give a new file "
                            "name" % (what, path, file_kind(st.st_mode)))
        # the mode bits too: root may write a 0444 file, but its owner marked it read-only
        if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
            raise PathError("%s %s is read-only: refusing to replace it; give another name or make it writable"
                            % (what, path))
    where = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(where):
        raise PathError("%s %s: directory %s does not exist" % (what, path, where))
    if not os.access(where, os.W_OK | os.X_OK):
        raise PathError("%s %s: directory %s is not writable" % (what, path, where))
    return path


def write_atomically(path: str, what: str, fill: Callable[[IO[bytes]], None]) -> None:
    """Writes a file whole or not at all: `fill(f)` writes into a temporary file
    beside `path`, which then replaces `path` (checked with writable_file
    before and again just before the rename). The file gets the usual mode
    (0666 minus the umask); on any error nothing is left behind."""
    import tempfile  # writers only: readers (each `!py` call) do not pay for it

    writable_file(path, what)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hvlab-", dir=directory)
    except OSError as e:
        raise PathError("%s %s cannot be written: %s" % (what, path, e.strerror or e))
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the output is an ordinary file
        writable_file(path, what)  # it may have changed while we wrote
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise PathError("%s %s cannot be written: %s" % (what, path, e.strerror or e))
        raise
