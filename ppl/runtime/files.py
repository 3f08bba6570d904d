"""Atomic writes: a crash never leaves a half-written file where the user asked for one.

The temporary file of a write in progress is registered, so that the `ppl` command's signal
handling (ppl/runtime/signals.py) can remove it when SIGINT or SIGTERM ends the process; after
a signal no temporary file is created and none replaces its target.
"""
import contextlib
import os
import stat
import tempfile
import threading

# Held while a temporary file is created and registered, and while it replaces its target:
# the signal handling takes it too, so a signal sees every temporary file that exists.
LOCK = threading.Lock()
_pending = set()
_stopping = False


class Stopping(BaseException):
    """The process is ending on a signal: nothing more is written."""


def pending() -> list:
    return sorted(_pending)


def stop_writing() -> list:
    """Called with LOCK held by the signal handling: no write may start or finish from now
    on. Removes the temporary files of the writes in progress; returns their targets."""
    global _stopping
    _stopping = True
    targets = []
    for tmp, target in list(_pending):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        targets.append(target)
    _pending.clear()
    return targets


def check_writable(path: str) -> None:
    """Raise OSError unless a file could be written at `path` the way atomic_path writes it:
    the folder exists, is a folder, and a temporary file can be created in it."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(path)
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".ppl-", dir=folder)
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = os.path.abspath(path)
    with LOCK:
        if _stopping:
            raise Stopping()
        fd, tmp = tempfile.mkstemp(prefix=".ppl-", suffix=suffix, dir=os.path.dirname(path) or ".")
        _pending.add((tmp, path))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path))
        with LOCK:
            if _stopping:
                raise Stopping()
            os.replace(tmp, path)
    finally:
        with LOCK:
            _pending.discard((tmp, path))
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def _mode_for(path: str) -> int:
    """The mode an ordinary `open(path, "w")` would give: an existing file's own mode, else
    0666 less the umask (mkstemp's temporary files are 0600, private to their owner)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux shows it without changing it; os.umask() can only be read by setting it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
