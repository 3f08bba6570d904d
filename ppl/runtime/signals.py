"""SIGINT and SIGTERM for the `ppl` command: a message, temporary files removed, exit 130/143.

Python's default, KeyboardInterrupt raised in the main thread, fails a long run in three ways:
the main thread may sit in XLA for many seconds and only see the signal afterwards; the
exception may land in a finaliser or a callback that swallows it, so the run goes on and
replaces the output; and a normal interpreter exit while XLA's compile threads run can abort
("terminate called after throwing an instance of ''", exit 134). So the command ends the
process itself:

- Python's C-level handler writes the signal number to a socket (signal.set_wakeup_fd) the
  moment the signal arrives; a watcher thread blocked on that socket wakes up whatever the
  main thread is doing, removes the temporary files of atomic writes in progress (and
  stops any later write), prints one line and leaves with os._exit(128 + signal).
- The Python-level handler, run in the main thread between bytecodes, does the same when it
  gets there first.

Installed first thing by the entry point (ppl/__main__.py), about 30 ms into the process and
long before JAX is imported; `install` is a no-op outside the main thread, and leaves alone a
signal the process was started ignoring.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import Optional

from . import files

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state: Optional[dict] = None


def _message(signum: int, targets) -> str:
    what = {signal.SIGINT: "interrupted (SIGINT, Ctrl-C)",
            signal.SIGTERM: "terminated (SIGTERM)"}.get(signum, f"stopped by signal {signum}")
    text = f"ppl: {what}"
    if targets:
        text += "; not written: " + ", ".join(targets)
    return text + "\n"


def exit_process(code: int, message: str = "") -> None:
    """Flush the standard streams, write `message` to stderr, and end the process now with
    os._exit: no interpreter teardown, which XLA's threads could turn into an abort."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if message:
        try:
            os.write(2, message.encode())
        except OSError:
            pass
    os._exit(code)


def _end(signum: int) -> None:
    """With files.LOCK held: stop every write, say why, leave now."""
    exit_process(128 + signum, _message(signum, files.stop_writing()))


def _watch(sock: socket.socket) -> None:
    while True:
        try:
            data = sock.recv(64)
        except OSError:
            return
        if not data:  # uninstalled
            return
        for signum in data:
            if signum in HANDLED:
                files.LOCK.acquire()  # waits for a rename or a registration in progress
                _end(signum)


def _handler(signum, frame) -> None:
    # in the main thread: if it holds the lock (a write is being registered or renamed),
    # the watcher finishes the job as soon as it is released
    if files.LOCK.acquire(blocking=False):
        _end(signum)


def install() -> bool:
    """Take over SIGINT and SIGTERM for the rest of the command. False when not possible
    (not the main thread, no socketpair)."""
    global _state
    if _state is not None:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (OSError, ValueError):
        return False
    # a signal the process was started ignoring stays ignored (`ppl sample … &` in a script:
    # the shell makes background jobs ignore Ctrl-C)
    previous = {s: signal.signal(s, _handler) for s in HANDLED
                if signal.getsignal(s) is not signal.SIG_IGN}
    thread = threading.Thread(target=_watch, args=(reader,), name="ppl-signals", daemon=True)
    thread.start()
    _state = dict(reader=reader, writer=writer, previous=previous, previous_fd=previous_fd,
                  thread=thread)
    return True


def uninstall() -> None:
    """Give SIGINT and SIGTERM back (for in-process use and the interactive REPL)."""
    global _state
    if _state is None:
        return
    st, _state = _state, None
    for s, h in st["previous"].items():
        signal.signal(s, h)
    signal.set_wakeup_fd(st["previous_fd"])
    st["writer"].close()  # the watcher's recv returns b""
    st["thread"].join(timeout=1.0)
    st["reader"].close()
