"""An output directory belongs to one run (issue 29, family 1: nothing lost, nothing mixed).

`claim_output(directory, products, ...)` is held while a command writes its outputs:

- a directory already holding one of the command's `products` (a finished or killed run) is refused
  in one line unless `overwrite` (or `resume`, which continues that run); with `overwrite` the old
  products are deleted *before* anything new is written, so a kill can never leave old weights
  beside a new config.json;
- a lock file `.lock` holding the owner's pid and host keeps a second process out; a lock whose
  process is gone (kill -9) is stale and taken over;
- temporary files that a kill left behind (`core.io.write_atomic`'s `.NAME.XXXXXXXX`) are removed;
- a path that is a file, or a directory that cannot be created, is one clear line.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

LOCK = ".lock"
# write_atomic's temporary names: "." + the final name + "." + mkstemp's 8 characters
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}$")


def _owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, _, host = lock.read_text().partition(" ")
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def _take_lock(directory: Path, flag: str) -> Path:
    lock = directory / LOCK
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner and owner[0] != os.getpid() and (owner[1] != socket.gethostname() or _alive(owner[0])):
                raise UsageError(f"{flag} {directory} is in use by process {owner[0]} on {owner[1] or 'this host'}; "
                                 f"wait for it, or remove {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)   # stale: its process was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return lock
    raise UsageError(f"{flag} {directory}: cannot take {lock}; remove it and try again")


def make_directory(directory, flag: str = "--out") -> Path:
    """`directory` made (with its parents) for the output that `flag` names; one line where it cannot be."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{flag} {directory} is a file; give a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{flag} {directory}: a part of that path is a file; give a directory") from None
    except OSError as exc:
        raise UsageError(f"{flag} {directory}: cannot create it ({exc.strerror or exc})") from None
    return directory


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim_output(directory, products: tuple[str, ...], *, overwrite: bool = False, resume: bool = False,
                 flag: str = "--out") -> Iterator[Path]:
    """Hold `directory` for one run writing `products` (file or folder names); see the module docstring."""
    directory = Path(directory)
    make_directory(directory, flag)
    lock = _take_lock(directory, flag)
    try:
        for entry in directory.iterdir():
            if _TEMPORARY.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)   # left by a kill inside write_atomic
        present = [name for name in products if (directory / name).exists()]
        if present and not resume:
            if not overwrite:
                raise UsageError(f"{flag} {directory} already holds a run ({', '.join(present[:3])}); give "
                                 "--overwrite to replace it, --resume to continue it, or another directory")
            for name in present:
                _remove(directory / name)
        yield directory
    finally:
        if _owner(lock) and _owner(lock)[0] == os.getpid():
            lock.unlink(missing_ok=True)


def no_space(exc: OSError) -> bool:
    """Whether `exc` says the disk is full."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
