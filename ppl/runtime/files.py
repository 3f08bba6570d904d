"""Atomic writes: a crash never leaves a half-written file where the user asked for one."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".ppl-", suffix=suffix, dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
