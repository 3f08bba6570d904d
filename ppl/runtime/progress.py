"""A one-line progress indicator on stderr for long runs."""
import sys
import time


class Progress:
    def __init__(self, label: str, stream=None, min_seconds: float = 0.0):
        self.label, self.stream = label, stream or sys.stderr
        self.start = time.perf_counter()
        self.min_seconds = min_seconds

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed < self.min_seconds and done < total:
            return
        pct = 100 * done / max(total, 1)
        bar = "#" * int(pct // 5)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar:<20}] {pct:3.0f}% {done}/{total} ({elapsed:.1f}s){end}")
        self.stream.flush()
