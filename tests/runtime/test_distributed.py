"""Two processes through jax.distributed on the loopback address: the same command in each,
process 0 writes the output; its draws, chain for chain, are those of one process."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ppl.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
MODEL, DATA = ROOT / "examples" / "eight_schools.ppl", ROOT / "examples" / "eight_schools.json"
ARGS = ["--data", str(DATA), "--method", "nuts", "--chains", "4", "--draws", "40",
        "--warmup", "40", "--seed", "3", "--quiet", "--no-validate"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    # one host device per process: the chains of a process run one after another there
    return dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=1")


def _posterior(path):
    import arviz as az
    idata = az.from_netcdf(path)
    return {k: np.asarray(v.values) for k, v in idata.posterior.data_vars.items()}


@pytest.mark.slow  # two processes, 40 s
def test_two_processes_give_the_draws_of_one(tmp_path):
    port = _free_port()
    out2 = tmp_path / "two.nc"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "ppl", "sample", str(MODEL), *ARGS, "--output", str(out2),
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, (o, e[-3000:])
    # process 0 reports, process 1 prints nothing of its own (gloo's C++ may say it connected)
    assert "wrote" in outs[0][0] and "method:" in outs[0][0]
    assert "wrote" not in outs[1][0] and "method:" not in outs[1][0]
    out1 = tmp_path / "one.nc"
    p = subprocess.run([sys.executable, "-m", "ppl", "sample", str(MODEL), *ARGS, "--output",
                        str(out1)], env=_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = _posterior(out1), _posterior(out2)
    assert a.keys() == b.keys() and a["tau"].shape == (4, 40)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("args,message", [
    (["--coordinator", "127.0.0.1:1234", "--process-id", "0"], "need --num-processes"),
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"], "is not below"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "nohost"], "is not HOST:PORT"),
    (["--num-processes", "8", "--process-id", "0", "--coordinator", "h:1"], "cannot be shared"),
    (["--devices", "999"], "but this process has"),
])
def test_distributed_argument_errors(args, message, capsys):
    rc = cli_main(["sample", str(MODEL), "--data", str(DATA), "--chains", "4", *args])
    assert rc == 1
    assert message in capsys.readouterr().err
