"""The REPL on a terminal: driven through a pseudo-terminal, as a user types.

Escape sequences (prompt_toolkit's redraws, colours) are stripped before matching; the input is
typed without relying on highlighting.
"""
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>]")


# Run in the child's new session: opening the terminal by name makes it the controlling terminal
# (so Ctrl-C on it sends SIGINT to the REPL), then become `python -m ppl ...`. The test process
# runs JAX's threads, so the child is started by subprocess (fork and exec in C), not pty.fork.
CONTROLLING = """
import os, sys
fd = os.open(os.ttyname(0), os.O_RDWR)
os.close(fd)
os.execv(sys.executable, [sys.executable, "-m", "ppl"] + sys.argv[1:])
"""


class Terminal:
    """A child process on a pseudo-terminal, with expect-style matching of its output."""

    def __init__(self, args, env, cwd):
        fd, child = pty.openpty()
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-c", CONTROLLING, *args], stdin=child,
                                     stdout=child, stderr=child, env=env, cwd=cwd,
                                     start_new_session=True)
        os.close(child)
        self.pid, self.fd = self.proc.pid, fd
        self.text, self.seen = "", 0
        self.status = None

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child has exited
            chunk = b""
        if not chunk:
            raise EOFError
        self.text += ANSI.sub("", chunk.decode("utf-8", "replace")).replace("\r", "")
        return True

    def expect(self, pattern, timeout=300):
        """Wait until `pattern` appears after what was matched before; returns the text between."""
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = regex.search(self.text, self.seen)
            if m:
                before, self.seen = self.text[self.seen:m.start()], m.end()
                return before + m.group(0)
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output since the last "
                                     f"match:\n{self.text[self.seen:][-3000:]}")
            try:
                self._read(min(left, 1.0))
            except EOFError:
                raise AssertionError(f"the REPL exited before {pattern!r}; output:\n"
                                     f"{self.text[self.seen:][-3000:]}") from None

    def type(self, text):
        for line in text.split("\n"):
            os.write(self.fd, line.encode() + b"\r")
            time.sleep(0.05)

    def send(self, raw: str):
        os.write(self.fd, raw.encode())

    def wait(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self._read(0.2)
            except EOFError:
                pass
            if self.proc.poll() is not None:
                self.status = self.proc.returncode
                return self.status
        raise AssertionError("the REPL did not exit")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


@pytest.fixture
def terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPL_HISTORY")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", JAX_PLATFORMS="cpu",
               XDG_DATA_HOME=str(tmp_path / "share"), COLUMNS="200", LINES="50")
    opened = []

    def start(*args):
        t = Terminal(args or ["repl"], env, tmp_path)
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


def test_a_session_through_a_terminal(terminal, tmp_path):
    t = terminal("repl")
    t.expect(r"ppl repl")
    t.expect(r"ppl>")
    t.type("data N: int\ndata y: real[N]\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)")
    t.type(":data N = 3\n:data y = [0.5, 1.2, -0.3]\n:data")
    t.expect(r"y = \[0\.5, 1\.2, -0\.3\]")
    # a block continues over lines until its braces balance
    t.type("generated {\n  twice = 2 * mu\n}")
    t.type(":show")
    t.expect(r"generated \{\n\s*twice = 2 \* mu\n\}")
    # Ctrl-C drops a half-typed statement: it is never checked, so no error follows
    t.send("mu2 ~ norm")
    time.sleep(0.3)
    t.send("\x03")
    t.type(":sample 300 chains=2 warmup=300 seed=1")
    out = t.expect(r"2 chains × 300 draws, \d+ divergent transitions")
    assert "error" not in out
    assert "method: nuts" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert "mu" in rows and "twice" in rows  # generated quantities are summarised
    # both printed to three significant figures
    assert float(rows["twice"][1]) == pytest.approx(2 * float(rows["mu"][1]), rel=0.01, abs=0.002)
    t.type(":summary twice")
    t.expect(r"twice\s+-?[0-9.]+")
    t.type(":draws mu")
    t.expect(r"mu: 2 chains × 300 draws")
    t.type(":save fit.nc")
    t.expect(r"wrote fit.nc")
    assert (tmp_path / "fit.nc").stat().st_size > 0
    # Ctrl-C during a long :sample returns to the prompt, the model intact
    t.type(":sample 200000 chains=2 warmup=200000")
    t.expect(r"nuts \[")  # the progress bar: sampling has started
    t.send("\x03")
    t.expect(r"interrupted")
    t.type(":show")
    t.expect(r"y ~ normal\(mu, 1\)")
    t.type(":quit")
    assert t.wait() == 0
    history = (tmp_path / "share" / "ppl" / "repl_history").read_text()
    assert "+data N: int" in history and "+:data y = [0.5, 1.2, -0.3]" in history


def test_history_persists_and_a_file_starts_the_session(terminal, tmp_path):
    model = tmp_path / "model.ppl"
    model.write_text("data y: real\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)\n")
    first = terminal("repl", str(model))
    first.expect(r"loaded .*model\.ppl")
    first.type(":show")
    first.expect(r"y ~ normal\(mu, 1\)")
    first.type(":quit")
    assert first.wait() == 0
    second = terminal("repl")
    second.expect(r"ppl>")
    second.send("\x1b[A")  # Up: the last input of the first session, ":quit"
    time.sleep(0.3)
    second.send("\r")
    assert second.wait() == 0
