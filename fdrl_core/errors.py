"""The one error base and the one wrapper that turns it into a one-line message, exit 2.

Every error a user can cause (bad input, a damaged file, a run folder that holds another
run) is an FdrlError whose message names the problem and the fix. A CLI runs its body
inside `cli_errors(prog)`: an FdrlError, an OS error on a path (full disk, no
permission, a file where a folder should be) and Ctrl-C become one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

USAGE_EXIT = 2
INTERRUPT_EXIT = 130


class FdrlError(Exception):
    """A user-caused error; str(error) is the whole one-line message."""


class UsageError(FdrlError, ValueError):
    """A flag or argument that cannot be used as given."""


MESSAGE_LIMIT = 1000


def short(value, limit: int = 200) -> str:
    """repr(value) for a message, bounded while it is built (reprlib: nested and long values
    are elided, so a YAML file of nested aliases cannot make a message of gigabytes)."""
    import reprlib
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fail(prog: str, message: str, code: int = USAGE_EXIT):
    """Print `prog: error: message` on stderr, one line of bounded length, and exit with `code`."""
    message = " ".join(str(message).split("\n"))
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + f"... ({len(message) - MESSAGE_LIMIT} more characters cut)"
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def one_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its type's name), at most `limit` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def not_a_file(path) -> str:
    """What a path that should be a regular file is instead, for a message."""
    import stat
    from pathlib import Path
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist" if not path.is_symlink() else "is a link to a file that does not exist"
    except OSError as e:  # a symlink loop, a path through a file, no permission
        return f"cannot be opened ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a folder; give the file itself"
    return "is not a regular file (a pipe, socket or device); give the file itself"


def os_error_message(error: OSError) -> str:
    if error.filename is None:
        return one_line(error)
    where = error.filename
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    return f"{where}: {error.strerror or one_line(error)}"


@contextmanager
def cli_errors(prog: str, interrupted: str = "interrupted"):
    """Run a CLI's body: user errors become `prog: error: ...` and exit 2 (130 on Ctrl-C)."""
    try:
        yield
    except FdrlError as e:
        fail(prog, str(e))
    except OSError as e:
        fail(prog, os_error_message(e))
    except KeyboardInterrupt:
        fail(prog, interrupted, INTERRUPT_EXIT)
