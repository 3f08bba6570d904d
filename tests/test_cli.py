"""The `ppl` command, run in-process."""
from pathlib import Path

import arviz as az
import pytest

from ppl.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_prints_summary_and_writes_netcdf(capsys, tmp_path):
    out_file = tmp_path / "fit.nc"
    code, out, err = run(capsys, "sample", EXAMPLES / "eight_schools.ppl", "--data",
                         EXAMPLES / "eight_schools.json", "--seed", 2, "--output", out_file)
    assert code == 0, err
    assert "method: nuts" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert {"mu", "tau", "theta[1]", "theta[8]"} <= set(lines)
    mu_mean = float(lines["mu"][1])
    assert 3.0 < mu_mean < 6.0
    assert "Traceback" not in err
    idata = az.from_netcdf(out_file)
    assert idata.posterior["theta"].shape == (4, 1000, 8)
    assert not list(tmp_path.glob(".ppl-*")), "temporary file left behind"


def test_check_prints_plan_and_validation(capsys):
    code, out, err = run(capsys, "check", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv.json")
    assert code == 0, err
    assert "plan: " in out
    assert "line 10: for t — density: vectorize, sampling: scan (carries x, lag x[t-1])" in out
    assert "validation: lowered log density = numpyro reference" in out


def test_graph_writes_plate_notation(capsys, tmp_path):
    dot = tmp_path / "sv.dot"
    code, out, err = run(capsys, "graph", EXAMPLES / "sv.ppl", "-o", dot)
    assert code == 0, err
    text = dot.read_text()
    assert text.startswith('digraph "sv"')
    assert 'label="t in 1:T"' in text
    assert '"x" -> "x" [label="lag 1", style=dashed];' in text


def test_design_regression_runs_verbatim_with_generated_quantities(capsys):
    code, out, err = run(capsys, "sample", EXAMPLES / "regression.ppl", "--data",
                         EXAMPLES / "regression.json", "--chains", 2, "--draws", 300, "--warmup", 300)
    assert code == 0, err
    assert "beta[1]" in out and "sigma" in out


def test_user_errors_exit_1_without_traceback(capsys, tmp_path):
    bad = tmp_path / "bad.ppl"
    bad.write_text("mu ~ normal(0, 1)\ny ~ normall(mu, 1)\n")
    code, out, err = run(capsys, "sample", bad)
    assert code == 1
    assert err.startswith(f"{bad}:2:5: error: unknown distribution \"normall\"")
    assert 'hint: did you mean "normal"?' in err
    assert "Traceback" not in err


def test_method_options_reach_the_pass(capsys, tmp_path):
    out_file = tmp_path / "sv.nc"
    code, out, err = run(capsys, "sample", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv_fixed.json",
                         "--method", "smc", "--particles", 64, "--option", "resampling=multinomial",
                         "--option", "ess-threshold=1.0", "--draws", 5, "--quiet", "--output", out_file)
    assert code == 0, err
    stats = az.from_netcdf(out_file)
    assert stats.posterior.attrs["particles"] == 64
    assert bool(stats.sample_stats["resampled"].values[..., 1:].all())  # resampled at every step
    code, out, err = run(capsys, "sample", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv_fixed.json",
                         "--option", "particles")
    assert code == 1 and 'is not KEY=VALUE' in err and "Traceback" not in err


# ---------------------------------------------------------------- checked before the work
# (issue 13, defect 4) Each bad argument is an error with exit code 1 before anything is
# compiled or sampled: `_model` and `Model.sample` are replaced by traps.
SCHOOLS = [EXAMPLES / "eight_schools.ppl", "--data", EXAMPLES / "eight_schools.json"]


@pytest.fixture
def no_work(monkeypatch):
    import ppl.api
    import ppl.cli

    def trap(*a, **k):
        raise AssertionError("the work started before the arguments were checked")
    monkeypatch.setattr(ppl.api.Model, "sample", trap)
    return trap


@pytest.fixture
def no_compile(monkeypatch, no_work):
    import ppl.cli
    monkeypatch.setattr(ppl.cli, "_model", no_work)


@pytest.mark.parametrize("args, message", [
    (["--chains", "0"], "argument --chains: 0 is out of range: it must be at least 1"),
    (["--chains", "-1"], "argument --chains: -1 is out of range"),
    (["--draws", "0"], "argument --draws: 0 is out of range: it must be at least 1"),
    (["--draws", "-1"], "argument --draws: -1 is out of range"),
    (["--warmup", "-5"], "argument --warmup: -5 is out of range: it must be at least 0"),
    (["--particles", "0"], "argument --particles: 0 is out of range"),
    (["--particles", "-5"], "argument --particles: -5 is out of range"),
    (["--particles", "abc"], 'argument --particles: "abc" is not an integer'),
    (["--target-accept", "0"], "argument --target-accept: 0 is out of range: it must be strictly "
                               "between 0 and 1"),
    (["--target-accept", "1.5"], "argument --target-accept: 1.5 is out of range"),
    (["--target-accept", "nan"], "argument --target-accept: nan is out of range"),
    (["--seed", str(2**70)], f"argument --seed: {2**70} is out of range: it must be from 0 to "
                             f"{2**64 - 1}"),
    (["--seed", str(2**64)], "argument --seed: 18446744073709551616 is out of range"),
    (["--seed", "-1"], "argument --seed: -1 is out of range"),
    (["--seed", "1" * 5000], "argument --seed: 111111111111… is out of range"),
    (["--max-elements", "-1"], "argument --max-elements: -1 is out of range"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_arguments_exit_1_before_the_work(capsys, no_compile, args, message):
    code, out, err = run(capsys, "sample", *SCHOOLS, *args)
    assert code == 1, err
    assert err.startswith(f"ppl: error: {message}"), err
    assert "hint: see `ppl" in err and "Traceback" not in err


def test_largest_seed_is_accepted(capsys, no_work):
    code, out, err = run(capsys, "sample", *SCHOOLS, "--seed", 2**64 - 1)
    assert "the work started" in err  # parsed and checked, then the trap


@pytest.mark.parametrize("where, message", [
    ("missing/fit.nc", 'the folder "{tmp}/missing" does not exist'),
    (".", '"{tmp}" is a folder'),
    ("file.txt/fit.nc", '"{tmp}/file.txt" is not a folder'),
])
def test_output_that_cannot_be_written(capsys, tmp_path, no_compile, where, message):
    (tmp_path / "file.txt").write_text("")
    target = tmp_path / where if where != "." else tmp_path
    code, out, err = run(capsys, "sample", *SCHOOLS, "--output", target)
    assert code == 1 and message.format(tmp=tmp_path) in err, err
    assert list(tmp_path.iterdir()) == [tmp_path / "file.txt"]  # no probe left behind


def test_output_in_an_unwritable_place(capsys, no_compile):
    code, out, err = run(capsys, "sample", *SCHOOLS, "--output", "/proc/fit.nc")
    assert code == 1 and 'argument --output: cannot write in "/proc"' in err


@pytest.mark.parametrize("command", ["calibrate", "graph"])
def test_output_checked_for_every_command(capsys, tmp_path, no_compile, command):
    code, out, err = run(capsys, command, EXAMPLES / "eight_schools.ppl", "--output",
                         tmp_path / "no" / "x")
    assert code == 1 and "does not exist" in err


@pytest.mark.parametrize("args, message", [
    (["--option", "max_tree_dept=5"], '--option max_tree_dept: nuts has no option max_tree_dept'),
    (["--particles", "64"], "--particles: nuts has no option particles"),
    (["--method", "smc", "--option", "resampling=magic"],
     "--option resampling=magic: resampling must be one of systematic, stratified"),
    (["--method", "smc", "--option", "ess_threshold=abc"],
     "ess_threshold must be a number in (0, 1]"),
    (["--option", "max_tree_depth=0"], "max_tree_depth must be a positive integer"),
    (["--option", "chains=2"], "--option chains=… sets what --chains sets"),
    (["--vars", "thetaa"], '--vars thetaa: the model has no variable "thetaa"'),
    (["--vars", "J"], '--vars J: "J" is data'),
])
def test_checks_that_need_the_model_come_before_sampling(capsys, no_work, args, message):
    code, out, err = run(capsys, "sample", *SCHOOLS, *args)
    assert code == 1 and message in err, err
    assert "the work started" not in err


def test_unknown_option_hint_lists_the_options(capsys, no_work):
    code, out, err = run(capsys, "sample", *SCHOOLS, "--option", "max_tree_dept=5")
    assert 'hint: did you mean "max_tree_depth"? nuts takes: dense_mass, devices, max_tree_depth, ' \
           "target_accept" in err


def test_calibrate_keep_more_than_draws(capsys, no_compile):
    code, out, err = run(capsys, "calibrate", *SCHOOLS, "--keep", 500, "--chains", 1, "--draws", 100)
    assert code == 1 and "--keep 500 is more than the 100 draws" in err


def test_calibrate_seed_range(capsys, no_compile):
    code, out, err = run(capsys, "calibrate", *SCHOOLS, "--seed", 2**63)
    assert code == 1 and f"from 0 to {2**63 - 1}" in err


def test_version_and_help(capsys):
    import ppl
    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"ppl {ppl.__version__}"
    for command in ("sample", "check", "calibrate", "graph", "repl"):
        code, out, err = run(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: ppl {command}")
    code, out, err = run(capsys, "sample", "--help")
    out = out[out.index("options:"):]
    for flag, default in (("--chains", "4"), ("--draws", "1000"), ("--warmup", "1000"),
                          ("--seed", "0"), ("--max-elements", "20"), ("--method", "auto")):
        block = out[out.index(flag):]
        assert f"(default: {default})" in " ".join(block.split()[:40]), flag


def test_undeclared_data_warning_is_printed(capsys, tmp_path):
    data = tmp_path / "d.json"
    data.write_text('{"N": 2, "y": [1.0, 2.0], "sgima": 1}')
    model = tmp_path / "m.ppl"
    model.write_text("data N: int\ndata y: real[N]\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)\n")
    code, out, err = run(capsys, "check", model, "--data", data)
    assert code == 0, err
    assert f'{data}: warning: d.json has "sgima", which the model does not declare: ignored' in out


def test_data_index_error_from_the_command(capsys, tmp_path):
    model = tmp_path / "m.ppl"
    model.write_text("data N: int\ndata y: real[N]\ndata idx: int[N]\nmu: real[N] ~ normal(0, 1)\n"
                     "y ~ normal(mu[idx], 0.1)\n")
    data = tmp_path / "d.json"
    data.write_text('{"N":4,"y":[1,2,3,4],"idx":[0,5,-1,2]}')
    for command in ("check", "sample"):
        code, out, err = run(capsys, command, model, "--data", data)
        assert code == 1
        assert err.startswith(f'{model}:5:15: error: index out of range: "idx[1]" is 0 in d.json')


def test_run_larger_than_memory_is_refused_before_sampling(capsys, tmp_path, monkeypatch, no_work):
    """chains × draws of every reported variable, estimated from the declared shapes."""
    monkeypatch.setenv("PPL_MEMORY_LIMIT", str(50 * 2**20))
    model = tmp_path / "m.ppl"
    model.write_text("data N: int\nmu: real[N] ~ normal(0, 1)\n")
    data = tmp_path / "d.json"
    data.write_text('{"N": 10000}')  # 80 kB a copy: 4 chains × (1000 draws + 4 copies) = 321 MB
    code, out, err = run(capsys, "sample", model, "--data", data)
    assert code == 1 and "the run (4 chains × 1000 draws) needs about 321.3 MB of memory" in err
    assert '"mu" (real[N]) has 10000 elements' in err


@pytest.mark.parametrize("exc", [MemoryError("Unable to allocate 22.4 GiB for an array"),
                                 "xla"])
def test_out_of_memory_is_a_message(capsys, monkeypatch, exc):
    import ppl.api
    if exc == "xla":
        from jax.errors import JaxRuntimeError
        exc = JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.00GiB.")

    def boom(*a, **k):
        raise exc
    monkeypatch.setattr(ppl.api.Model, "sample", boom)
    code, out, err = run(capsys, "sample", *SCHOOLS)
    assert code == 1 and err.startswith("ppl: error: out of memory: ")
    assert "internal error" not in err


def test_internal_errors_exit_2(capsys, monkeypatch):
    import ppl.api
    from ppl.syntax.errors import PPLInternalError

    def bug(*a, **k):
        raise PPLInternalError("translation validation failed")
    monkeypatch.setattr(ppl.api.Model, "sample", bug)
    code, out, err = run(capsys, "sample", *SCHOOLS)
    assert code == 2 and "This is a bug in ppl" in err
