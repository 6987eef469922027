"""The errors that one line explains to the user, as opposed to faceval's own bugs.

The command line prints a `FacevalError` as one line (it names the file and the fix) and exits with status 1;
any other exception is a bug in faceval, shown with its traceback and where to report it.
"""

from __future__ import annotations


class FacevalError(Exception):
    """A problem with the user's input, files or machine, explained in one line that names the file and the fix."""


class InputError(FacevalError, ValueError):
    """A bad argument, option or input file (also a `ValueError`, as these errors always were)."""


class ResultWriteError(FacevalError, OSError):
    """A result file that could not be written (disk full, no permission); the message names the file."""
