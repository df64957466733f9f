"""Atomic writes: a file is either its old self or wholly the new one, never half of it.

Each write goes to a hidden temporary name in the same folder (unique per process and
call, so two runs into one folder never collide), is flushed to disk, then renamed over
the target; on any failure the temporary file is removed. A process killed with -9
cannot clean up, so the temporaries carry a recognisable name that `remove_stale_temps`
clears (for files whose writer is gone). `folder_lock` keeps a second writer out of a
folder while the first is alive.
"""
from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path

from .errors import FdrlError

TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.[A-Za-z0-9]+)?$")


def temporary_name(path: str | os.PathLike) -> Path:
    """Hidden, unique, same folder and same suffix (torch.export.save insists on .pt2)."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """A file a command will write at the end of its work: checked before the work starts,
    so a wrong folder costs a second, not the run (the folder must exist and be writable)."""
    path = Path(path)
    if path.is_dir():
        raise FdrlError(f"{flag} {path} is a folder; give a file name in it")
    folder = path.parent
    if not folder.is_dir():
        raise FdrlError(f"cannot write {flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise FdrlError(f"cannot write {flag} {path}: folder {folder} is not writable")
    return path


def check_writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """A folder a command will create or fill: its nearest existing ancestor must be a writable folder."""
    path = probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise FdrlError(f"cannot write to {flag} {path}: {probe} is not a writable folder")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True):
    """Yield a temporary path to write; on success it is renamed over `path`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FdrlError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync and tmp.exists():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_path(path, fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete this module's temporary files in `folder` whose writing process is gone."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_NAME.match(p.name)
        if m and p.is_file() and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


LOCK_NAME = ".fdrl.lock"


class FolderInUse(FdrlError, RuntimeError):
    """Another live process is writing into the folder."""


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str, name: str = LOCK_NAME):
    """One writer per folder: a lock file holding the writer's PID. A lock whose process is
    gone (killed -9) is taken over; a live one is refused in one line."""
    path = Path(folder) / name
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise FolderInUse(f"{folder} is being written by another {command} (process {pid}); wait for it, "
                                  f"or use another folder") from None
            path.unlink(missing_ok=True)  # its writer is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise FolderInUse(f"{folder}: could not take its lock {path}; remove it if no {command} is running")
    try:
        yield
    finally:
        try:
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass
