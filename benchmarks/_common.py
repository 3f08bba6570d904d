"""Shared helpers for the benchmark scripts and their workers (standard library only, so the
anchor venvs — which have neither jax nor arviz — can import it too).

Workers talk to the orchestrating script over a pipe, one JSON object per line:
the orchestrator writes a request line to the worker's stdin, the worker answers with one line
on its stdout. Everything a library prints is moved to stderr (``serve`` re-points file
descriptor 1), so progress bars and warnings never corrupt the protocol.

Keeping workers alive lets one run interleave repetitions across systems (round-robin), which
makes ratios fairer on a machine whose load drifts.
"""
from __future__ import annotations

import json
import math
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
if not SHARED_DATA.exists():  # /work/shared/data when run from a clone elsewhere
    SHARED_DATA = Path("/work/shared/data")
RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- worker side
def serve(handler: Callable[[dict], dict]) -> None:
    """Run a request/response loop on stdin/stdout; ``handler`` gets and returns dicts.

    A handler exception is reported as ``{"error": ...}`` and the loop goes on.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed from here on goes to stderr
    sys.stdout = sys.stderr
    proto.write(json.dumps({"ready": True, "t_ready_wall": time.time()}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("cmd") == "exit":
            break
        try:
            resp = handler(req)
        except Exception as exc:  # noqa: BLE001 — reported to the orchestrator
            resp = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        proto.write(json.dumps(resp) + "\n")
    proto.close()


# ----------------------------------------------------------------------- orchestrator side
class WorkerError(RuntimeError):
    pass


class WorkerTimeout(WorkerError):
    pass


class Worker:
    """A worker process spoken to over JSON lines.

    ``t_spawn_wall`` is ``time.time()`` just before the process is started, so a worker can
    report end-to-end time as ``its time.time() - t_spawn_wall`` (same wall clock).
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, name: str = "",
                 stderr_path: Path | None = None, inherit_env: bool = True):
        self.name = name or Path(argv[-1]).stem
        full_env = dict(os.environ) if inherit_env else {}
        if env:
            full_env.update(env)
        self.stderr_file = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
        self.t_spawn_wall = time.time()
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
            env=full_env, text=True, bufsize=1, cwd=str(ROOT),
            start_new_session=True,  # its own process group, so `kill` reaches its children
        )
        hello = self._read()
        self.startup_s = hello["t_ready_wall"] - self.t_spawn_wall

    def _read(self, timeout: float | None = None) -> dict:
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                self.kill()
                raise WorkerTimeout(f"worker {self.name}: no answer within {timeout:g} s; killed")
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            raise WorkerError(f"worker {self.name} exited (rc={rc}) without answering; "
                              f"see its stderr log")
        return json.loads(line)

    def call(self, timeout: float | None = None, **req: Any) -> dict:
        """Send one request and wait for its answer (at most ``timeout`` seconds, then the
        worker and its children are killed and `WorkerTimeout` is raised)."""
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        resp = self._read(timeout)
        if "error" in resp:
            raise WorkerError(f"worker {self.name}: {resp['error']}\n{resp.get('traceback', '')}")
        return resp

    def kill(self) -> None:
        """Kill the worker's whole process group (pystan runs chains in child processes)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.stderr_file is not subprocess.DEVNULL:
            self.stderr_file.close()
            self.stderr_file = subprocess.DEVNULL

    def close(self) -> float:
        """Ask the worker to exit; return seconds from spawn to process exit."""
        try:
            self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.stderr_file is not subprocess.DEVNULL:
            self.stderr_file.close()
        return time.perf_counter() - self.t_spawn

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.close()


# --------------------------------------------------------------------------------- numbers
def median(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, int):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if ax < 1 else f"{x:,.{max(digits - len(str(int(ax))), 0)}f}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    def line(r: list[Any]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(o: Any) -> Any:
    try:
        import numpy as np  # noqa: PLC0415
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def machine_info() -> dict:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                info["cpu"] = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
            text=True, check=False).stdout.strip()
    except OSError:
        pass
    return info


def anchor_python(name: str) -> str:
    """The interpreter of anchor venv ``name``, built on first use by ``benchmarks/venv.py``.

    Loaded by path: the file's name would otherwise collide with the standard library's ``venv``.
    """
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("ppl_bench_venv", HERE / "venv.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.python_for(name)


def ppl_available() -> tuple[bool, str]:
    """Whether ppl's compiler is importable (checked in a subprocess: cheap and side-effect free)."""
    r = subprocess.run([sys.executable, "-c", "import ppl.api"], capture_output=True, text=True,
                       cwd=str(ROOT))
    if r.returncode == 0:
        return True, ""
    last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
    return False, last
