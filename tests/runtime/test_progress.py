"""Progress that tells the truth (ppl/runtime/progress.py; issue 12): the compile stage with its
time, the program's phases, a heartbeat when stderr is not a terminal, a bar that advances on a
terminal; and `ppl sample` through a pipe and through a pseudo-terminal."""
import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from ppl.runtime.progress import Progress, reporting

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_without_a_terminal_lines_name_each_stage_and_a_heartbeat_fills_silences():
    err = Stream(tty=False)
    bar = Progress("nuts", stream=err, every=0.05)
    bar.compiling()
    time.sleep(0.3)  # a long compilation: the heartbeat says so
    bar(0, 100, phase="warm-up", chains=4)
    bar(50, 100, phase="warm-up")
    bar(60, 100, phase="sampling", divergences=[0, 2, 0, 1])
    bar(100, 100, phase="sampling", divergences=[0, 2, 0, 1])
    bar(0, 0, phase="generated quantities and log-likelihood")
    bar.finish()
    lines = err.getvalue().splitlines()
    assert lines[0] == "nuts: compiling…"
    assert any(ln.startswith("nuts: still compiling, ") for ln in lines[1:])
    compiled = next(i for i, ln in enumerate(lines) if ln.startswith("nuts: compiled in "))
    assert not any("still compiling" in ln for ln in lines[compiled:])
    after = lines[compiled + 1:]
    assert after[0].startswith("nuts: warm-up, 0/100 iterations (0%), 4 chains")
    assert any(ln.startswith("nuts: sampling, 60/100 iterations (60%)") and
               "divergences per chain 0 2 0 1" in ln for ln in after)
    assert any(ln.startswith("nuts: generated quantities and log-likelihood") for ln in after)
    assert lines[-1].startswith("nuts: done, ") and lines[-1].endswith(" in all")


def test_heartbeat_is_rate_limited_and_quiet_after_the_end():
    err = Stream(tty=False)
    bar = Progress("smc", stream=err, every=3600)
    bar.compiling()
    for i in range(1, 50):
        bar(i, 100, phase="particle Gibbs")  # same phase, not the end: no line each time
    bar.finish()
    n = len(err.getvalue().splitlines())
    time.sleep(0.2)
    assert n == len(err.getvalue().splitlines()) <= 5


def test_on_a_terminal_one_line_is_redrawn_and_ended():
    err = Stream(tty=True)
    bar = Progress("nuts", stream=err, min_seconds=0.0)
    bar.compiling()
    for done in (10, 20, 30):
        bar(done, 30, phase="sampling", divergences=[0, 1])
    bar.finish()
    text = err.getvalue()
    frames = [f.strip() for f in text.split("\r") if "%" in f]
    assert any("[######" in f and " 33% 10/30 sampling  divergences 0 1" in f for f in frames)
    assert frames[-1].startswith("nuts [####################] 100% 30/30")
    assert text.endswith("\n") and text.count("\n") == 2  # "compiled in" and the bar's end


def test_reporting_counts_ticks_and_reports_start_and_end():
    seen = []
    with reporting(lambda done, total, **info: seen.append((done, total, info["phase"])), 3,
                   phase="filter") as r:
        from ppl.runtime import progress
        for _ in range(5):  # more ticks than steps are clamped
            progress._host_tick(0.0)
    assert seen[0] == (0, 3, "filter") and seen[-1] == (3, 3, "filter")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert progress._active is None and r.steps.done == 3


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


SAMPLE = ["-m", "ppl", "sample", str(EXAMPLES / "eight_schools.ppl"), "--data",
          str(EXAMPLES / "eight_schools.json"), "--chains", "2", "--draws", "1500",
          "--warmup", "500", "--seed", "2"]


def test_piped_sample_shows_compile_and_sampling_lines(tmp_path):
    """stderr to a file (not a terminal): compile and sampling progress lines appear, in
    order, with the heartbeat set to one second. The run also draws from the prior (--prior):
    its summary is printed and the file holds the prior groups."""
    log = tmp_path / "err.txt"
    with open(log, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, *SAMPLE, "--heartbeat", "1", "--prior",
                               "--output", "fit.nc"], stdout=subprocess.PIPE,
                              stderr=err, env=_env(), cwd=tmp_path, timeout=900)
        seconds = time.perf_counter() - t0
    lines = log.read_text().splitlines()
    assert proc.returncode == 0, log.read_text()
    assert seconds > 5, "the acceptance asks for a run longer than five seconds"
    assert lines[0] == "nuts: compiling…"
    i = next(i for i, ln in enumerate(lines) if ln.startswith("nuts: compiled in "))
    warm = [ln for ln in lines[i:] if ln.startswith("nuts: warm-up, ")]
    sampling = [ln for ln in lines[i:] if ln.startswith("nuts: sampling, ")]
    assert warm and sampling and lines.index(warm[0]) < lines.index(sampling[0])
    assert any("2000/2000 iterations (100%)" in ln for ln in sampling)
    assert any(ln.startswith("nuts: prior and prior predictive draws") for ln in lines)
    # the last progress line (the run's warnings, e.g. a divergence, may follow it)
    assert [ln for ln in lines if ln.startswith("nuts: ")][-1].startswith("nuts: done, ")
    assert "\r" not in log.read_text()
    out = proc.stdout.decode()
    assert "prior (2 chains × 1500 draws; data simulated in prior_predictive):" in out
    import arviz as az
    idata = az.from_netcdf(tmp_path / "fit.nc")
    assert {"prior", "prior_predictive", "log_likelihood"} <= set(idata.groups())
    assert idata.prior_predictive["y"].shape == (2, 1500, 8)


def test_on_a_pseudo_terminal_the_bar_advances_during_sampling(tmp_path):
    fd, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, *SAMPLE], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=child, env=_env(), cwd=tmp_path)
    os.close(child)
    raw = b""
    deadline = time.time() + 900
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            raw += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(fd)
    assert proc.returncode == 0, raw.decode(errors="replace")
    frames = [f.strip() for f in raw.decode("utf-8", "replace").replace("\n", "\r").split("\r")]
    counts = [int(m.group(1)) for f in frames
              for m in [re.match(r"nuts \[#*\s*\]\s+\d+% (\d+)/2000", f)] if m]
    before_end = sorted({c for c in counts if c < 2000})
    assert len(before_end) >= 3, frames
    assert counts == sorted(counts) and counts[-1] == 2000
