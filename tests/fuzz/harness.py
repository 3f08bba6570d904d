"""Running mutated programs and data through the front end, in process and through `ppl check`,
and telling a framed error (fine) from anything else (a failure, with where it was raised)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .mutator import ROOT, Mutator, Program


@dataclass
class Failure:
    what: str  # "program" | "data" | "cli"
    index: int
    error: str
    where: str  # the innermost ppl frame, e.g. ppl/ir/graph.py:123
    source: str
    data: Optional[str] = None

    def __str__(self):
        data = f"\n--- data:\n{self.data[:2000]}" if self.data is not None else ""
        return (f"[{self.what} #{self.index}] {self.error}\n  at {self.where}\n--- program:\n"
                f"{self.source[:3000]}{data}")


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/ppl/" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename[f.filename.rindex('/ppl/') + 1:]}:{f.lineno}"


def _check_error(e) -> Optional[str]:
    """None for a proper user error; a description for an internal one."""
    from ppl.syntax.errors import PPLInternalError
    try:
        text = e.format()
    except Exception as f:  # the message itself cannot be built
        return f"formatting {type(e).__name__} failed: {type(f).__name__}: {f}"
    if isinstance(e, PPLInternalError):
        return f"PPLInternalError: {text.splitlines()[0]}"
    if not text.strip():
        return "empty error message"
    return None


def compile_program(prog: Program, failures: List[Failure]):
    """The Model, None for a framed error, recording anything else."""
    from ppl.api import Model
    from ppl.syntax.errors import PPLError
    try:
        return Model(prog.source, "fuzz.ppl")
    except PPLError as e:
        bad = _check_error(e)
        if bad:
            failures.append(Failure("program", prog.index, bad, _where(e), prog.source))
    except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
        failures.append(Failure("program", prog.index, f"{type(e).__name__}: {str(e)[:300]}",
                                _where(e), prog.source))
    return None


def bind(model, prog: Program, data_path: Path, failures: List[Failure], index: int,
         text: Optional[str] = None) -> bool:
    from ppl.syntax.errors import PPLError
    try:
        model.bind(str(data_path))
        return True
    except PPLError as e:
        bad = _check_error(e)
        if bad:
            failures.append(Failure("data", index, bad, _where(e), prog.source, text))
    except Exception as e:  # noqa: BLE001
        failures.append(Failure("data", index, f"{type(e).__name__}: {str(e)[:300]}", _where(e),
                                prog.source, text))
    return False


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def run_programs(seed: int, count: int, data_count: int, workdir: Path):
    """Mutate `count` programs (compiled in process) and `data_count` data files (bound to an
    unmutated program of their origin). Returns (failures, programs compiled, data files bound)."""
    mut = Mutator(seed)
    failures: List[Failure] = []
    compiled = 0
    for k in range(count):
        prog = mut.program(k)
        model = compile_program(prog, failures)
        compiled += model is not None
        if model is not None and prog.data is not None:  # the original data, mutated program
            bind(model, prog, prog.data, failures, k)
    # data mutations, against the unmutated programs that have data
    from ppl.api import Model
    with_data = [(name, src, data) for name, src, data in mut.corpus if data is not None]
    models = {}
    for name, src, data in with_data:
        try:
            base = json.loads(data.read_text())
            if isinstance(base, dict):
                models[name] = (Model(src, name), base, src)
        except Exception:  # the golden cases are errors on purpose
            pass
    names = sorted(models)
    bound = 0
    for k in range(data_count):
        name = names[k % len(names)]
        model, base, src = models[name]
        text, done = mut.data(k, base)
        path = write(workdir / f"data{k % 16}.json", text)
        prog = Program(k, name, src, None, done)
        bound += bind(model, prog, path, failures, k, text)
    return failures, compiled, bound


def run_cli(seed: int, count: int, workdir: Path, timeout: float = 120.0, with_data: int = 0):
    """`ppl check` in a subprocess on mutated programs (with their origin's data for the first
    `with_data`): exit 0 or 1, no traceback, within the timeout."""
    mut = Mutator(seed)
    failures: List[Failure] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT), PPL_DEBUG="")
    env.pop("PPL_DEBUG")
    k = 0
    checked = 0
    while checked < count:
        prog = mut.program(10_000_000 + k)
        k += 1
        path = write(workdir / f"cli{checked}.ppl", prog.source)
        args = [sys.executable, "-m", "ppl", "check", str(path)]
        if checked < with_data and prog.data is not None:
            args += ["--data", str(prog.data)]
        t0 = time.monotonic()
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            failures.append(Failure("cli", k, f"no answer within {timeout:.0f} s", "?", prog.source))
            checked += 1
            continue
        bad = []
        if r.returncode not in (0, 1):
            bad.append(f"exit code {r.returncode}")
        if "Traceback" in r.stderr or "internal error" in r.stderr:
            bad.append("traceback or internal error")
        if r.returncode == 1 and not r.stderr.strip():
            bad.append("exit 1 without a message")
        if bad:
            failures.append(Failure("cli", k, "; ".join(bad) + f" ({time.monotonic() - t0:.1f} s): "
                                    + r.stderr[-600:], "?", prog.source))
        checked += 1
    return failures


def run_cli_in_process(seed: int, count: int, workdir: Path, capture):
    """`ppl check` in this process (no subprocess, no JAX compilation: no data) on mutated
    programs: exit 0 or 1, nothing on stderr for 0, a framed message for 1. `capture()`
    returns (stdout, stderr) since the last call (pytest's capsys.readouterr)."""
    import re
    from ppl.cli import main
    mut = Mutator(seed)
    failures: List[Failure] = []
    frame = re.compile(r"^\S+?(:\d+:\d+)?: error: \S")
    for k in range(count):
        prog = mut.program(20_000_000 + k)
        path = write(workdir / "inproc.ppl", prog.source)
        capture()
        try:
            rc = main(["check", str(path)])
        except BaseException as e:  # noqa: BLE001 - main must return, whatever happens
            failures.append(Failure("cli", k, f"main raised {type(e).__name__}: {e}", _where(e),
                                    prog.source))
            continue
        out, err = capture()
        bad = []
        if rc not in (0, 1):
            bad.append(f"exit code {rc}")
        if "Traceback" in err or "internal error" in err:
            bad.append("traceback or internal error")
        if rc == 1 and not frame.match(err):
            bad.append("exit 1 without a framed message")
        if bad:
            failures.append(Failure("cli", k, "; ".join(bad) + ": " + err[-600:], "?", prog.source))
    return failures
