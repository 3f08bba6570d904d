"""Progress on stderr that tells the truth: what is being done now, and for how long.

A run goes through stages: compiling (tracing and XLA compilation, which can take longer than
sampling), then the program's own phases (NUTS warm-up and sampling, particle Gibbs sweeps,
filters, calibration replicates). Programs report with `progress(done, total, **info)` — the
plain two-argument call works too — where `info` may carry `phase` ("warm-up", "sampling" …),
`unit` ("iterations", "replicates" …) and `divergences` (per chain, so far).

On a terminal one line is redrawn in place (a bar, per-chain divergences, the elapsed time),
whenever something changes and every second while nothing does. Elsewhere (a pipe, a log file,
CI) a line is written when a stage starts or ends, when the phase changes, and otherwise at
most every `every` seconds (a heartbeat: a long compilation or a long compiled call still shows
that the run is alive).
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Optional, Sequence

import jax
import numpy as np


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Progress:
    """`label`: what runs ("nuts", "calibrate" …). `stream`: stderr by default. `tty`: draw a
    bar (default: whether the stream is a terminal). `every`: seconds between heartbeat lines
    when not drawing a bar (0: a line at every update). `min_seconds`: on a terminal, draw
    nothing until the run has lasted this long (short runs stay quiet)."""

    def __init__(self, label: str, stream=None, min_seconds: float = 0.0, every: float = 5.0,
                 tty: Optional[bool] = None):
        self.label, self.stream = label, stream or sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty, self.every, self.min_seconds = tty, float(every), float(min_seconds)
        # whether programs compiled as one call should report their steps from inside it (a
        # host callback, which keeps the program out of JAX's persistent cache): for a bar only
        self.live = tty
        self.start = time.perf_counter()
        self.stage: Optional[str] = None  # "compiling" | "running" | None (finished)
        self.stage_start = self.start
        self.done, self.total = 0, 0
        self.phase: Optional[str] = None
        self.unit = "iterations"
        self.divergences: Optional[Sequence[int]] = None
        self.chains: Optional[int] = None
        self._last_line = 0.0  # when the last line (or redraw) was written
        self._drawn = ""  # the bar as last drawn
        self._what = "compiling"
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None

    # ------------------------------------------------------------ stages
    def compiling(self, what: str = "compiling") -> None:
        """Compilation starts (a heartbeat keeps reporting until the first update). `what`
        describes the stage when it is more than compiling ("compiling and running the first
        replicate")."""
        with self._lock:
            self.stage, self.stage_start = "compiling", time.perf_counter()
            self._what = what
            if not self.tty:
                self._line(f"{what}…")
        self._start_heartbeat()

    def compiled(self) -> None:
        """Compilation is over: say how long it took."""
        with self._lock:
            if self.stage != "compiling":
                return
            took = time.perf_counter() - self.stage_start
            self.stage, self.stage_start = "running", time.perf_counter()
            self._clear()
            if self._what != "compiling":  # a stage of its own: the status line follows
                return
            if self.tty:
                if time.perf_counter() - self.start >= self.min_seconds:
                    self._write(f"{self.label}: compiled in {_fmt_seconds(took)}\n")
            else:
                self._line(f"compiled in {_fmt_seconds(took)}")

    def finish(self, message: str = "") -> None:
        """The run is over (stops the heartbeat; ends the bar's line)."""
        self._stop.set()
        with self._lock:
            if self.stage == "compiling":  # the program never reported: compiled and ran
                took = time.perf_counter() - self.stage_start
                self._clear()
                if not self.tty or took >= self.min_seconds:
                    self._write(f"{self.label}: compiled and ran in {_fmt_seconds(took)}\n")
                self.stage = None
                return
            if self.stage is None:
                return
            self.stage = None
            elapsed = time.perf_counter() - self.start
            if self.tty:
                if self._drawn:
                    self._draw(force=True)
                    self._write("\n")
                    self._drawn = ""
            else:
                what = message or (f"{self.done}/{self.total} {self.unit}" if self.total else "done")
                self._line(f"{what}, {_fmt_seconds(elapsed)} in all")

    # ------------------------------------------------------------ updates
    def __call__(self, done: int, total: int, phase: Optional[str] = None,
                 divergences: Optional[Sequence[int]] = None, unit: Optional[str] = None,
                 chains: Optional[int] = None) -> None:
        with self._lock:
            self.compiled()
            if self.stage is None:
                self.stage, self.stage_start = "running", time.perf_counter()
                self._start_heartbeat()
            changed_phase = phase is not None and phase != self.phase
            self.done, self.total = int(done), int(total)
            if phase is not None:
                self.phase = phase
            if unit is not None:
                self.unit = unit
            if chains is not None:
                self.chains = int(chains)
            if divergences is not None:
                self.divergences = [int(d) for d in divergences]
            if self.tty:
                self._draw()
            else:
                now = time.perf_counter()
                if changed_phase or (total and done >= total) or now - self._last_line >= self.every:
                    self._line(self._status())

    # ------------------------------------------------------------ text
    def _status(self) -> str:
        parts = []
        if self.phase:
            parts.append(self.phase)
        if self.total:
            pct = 100 * self.done / max(self.total, 1)
            parts.append(f"{self.done}/{self.total} {self.unit} ({pct:.0f}%)")
        if self.chains and self.total:
            parts.append(f"{self.chains} chains")
        if self.divergences is not None:
            parts.append("divergences per chain " + " ".join(str(d) for d in self.divergences))
        parts.append(_fmt_seconds(time.perf_counter() - self.start))
        return ", ".join(parts)

    def _bar(self) -> str:
        elapsed = time.perf_counter() - self.start
        if self.stage == "compiling":
            return f"{self.label}: {self._what}… {_fmt_seconds(elapsed)}"
        if not self.total:  # a phase without a count
            return f"{self.label}: {self.phase or 'running'}… ({_fmt_seconds(elapsed)})"
        pct = 100 * self.done / max(self.total, 1)
        bar = "#" * int(pct // 5)
        text = f"{self.label} [{bar:<20}] {pct:3.0f}% {self.done}/{self.total}"
        if self.phase:
            text += f" {self.phase}"
        if self.divergences is not None:
            text += "  divergences " + " ".join(str(d) for d in self.divergences)
        return text + f" ({_fmt_seconds(elapsed)})"

    def _draw(self, force: bool = False) -> None:
        if not force and time.perf_counter() - self.start < self.min_seconds:
            return
        text = self._bar()
        pad = max(0, len(self._drawn) - len(text))
        self._write("\r" + text + " " * pad)
        self._drawn = text
        self._last_line = time.perf_counter()

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self._write("\r" + " " * len(self._drawn) + "\r")
            self._drawn = ""

    def _line(self, text: str) -> None:
        self._write(f"{self.label}: {text}\n")
        self._last_line = time.perf_counter()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the run
            pass

    # ------------------------------------------------------------ heartbeat
    def _start_heartbeat(self) -> None:
        if self._beat is not None or (not self.tty and self.every <= 0):
            return
        interval = 1.0 if self.tty else self.every

        def beat():
            while not self._stop.wait(min(interval, 0.5)):
                with self._lock:
                    if self.stage is None:
                        return
                    now = time.perf_counter()
                    if now - self._last_line < interval:
                        continue
                    if self.tty:
                        self._draw()
                    elif self.stage == "compiling":
                        self._line(f"still {self._what}, {_fmt_seconds(now - self.stage_start)}")
                    else:
                        self._line(self._status())

        self._beat = threading.Thread(target=beat, daemon=True, name="ppl-progress")
        self._beat.start()

    def close(self) -> None:
        """Stop the heartbeat without a final line (the run failed or was interrupted)."""
        self._stop.set()
        with self._lock:
            self._clear()
            self.stage = None


@contextlib.contextmanager
def running(bar: Optional[Progress]):
    """`with running(bar):` around a run: the bar finishes when the block ends and closes
    without a final line when it fails or is interrupted; None reports nothing."""
    if bar is None:
        yield None
        return
    try:
        yield bar
    except BaseException:
        bar.close()
        raise
    bar.finish()


# ---------------------------------------------------------------- from inside compiled code
# A program compiled as one call (particle Gibbs, PMMH, particle filters) reports its steps
# through a host callback: `tick(x)` inside the traced step, where x is any value of the step
# (so vmap unrolls one tick per chain and nothing hoists it out of the loop). The callback
# counts into the run that `reporting` opened; with none open it does nothing, so the compiled
# code is the same with and without a report (one compilation, cached).
_active = None
_active_lock = threading.Lock()


class _Steps:
    def __init__(self, progress, total: int, info: dict):
        self.progress, self.total, self.info = progress, int(total), info
        self.done = 0
        self._last = 0.0

    def advance(self, n: int) -> None:
        before, self.done = self.done, min(self.done + n, self.total)
        now = time.perf_counter()
        if self.done == before:
            return
        if now - self._last >= 0.1 or self.done >= self.total:  # the bar needs no more
            self._last = now
            self.progress(self.done, self.total, **self.info)


def _host_tick(x) -> None:
    steps = _active
    if steps is not None:
        try:
            steps.advance(int(np.size(x)))
        except Exception:  # noqa: BLE001 - a report must never break the run
            pass


def tick(x) -> None:
    """Inside traced code: one step done (per lane under vmap)."""
    jax.debug.callback(_host_tick, x)


class reporting:
    """`with reporting(progress, total, phase=…, unit=…, chains=…):` around a compiled call
    whose steps `tick`: progress(done, total, **info) as they complete (at most every 0.1 s),
    and once at the start and the end. `progress` None: nothing is reported."""

    def __init__(self, progress, total: int, **info):
        self.steps = _Steps(progress, total, info) if progress is not None else None

    def __enter__(self):
        global _active
        if self.steps is not None:
            self.steps.progress(0, self.steps.total, **self.steps.info)
            with _active_lock:
                _active = self.steps
        return self

    def __exit__(self, kind, value, tb):
        global _active
        if self.steps is not None:
            with _active_lock:
                if _active is self.steps:
                    _active = None
            if kind is None and self.steps.done < self.steps.total:
                self.steps.progress(self.steps.total, self.steps.total, **self.steps.info)
        return False
