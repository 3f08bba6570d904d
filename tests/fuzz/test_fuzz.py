"""Fuzzing the front end (issue 13, "keep it that way"): mutated programs and data files get a
framed error or work, never a traceback, an internal error, another exit code or a hang.

Default suite: a fixed seed, 400 mutated programs and 150 mutated data files in process
(parse, check, graph, bind), 80 mutated programs through `ppl check` in process and 3 in a
subprocess. `-m slow`: 12,000 programs, 1,500 data files, 40 subprocess runs of `ppl check`,
half of them with data (lowered and validated). The mutator is tests/fuzz/mutator.py.
"""
import pytest

from .harness import run_cli, run_cli_in_process, run_programs

# Seeds of the default suite. Their programs all pass on this branch; a failure here is a
# regression, reproduced by the program printed with it.
SEED = 13
SLOW_SEEDS = (101, 102, 103)


def _report(failures, limit=5):
    return f"{len(failures)} failure(s); the first:\n\n" + "\n\n".join(map(str, failures[:limit]))


def test_mutated_programs_and_data_in_process(tmp_path):
    failures, compiled, bound = run_programs(SEED, 400, 150, tmp_path)
    assert not failures, _report(failures)
    # the mutants must reach past the parser, or the test tests little
    assert compiled >= 40 and bound >= 3, (compiled, bound)


def test_mutated_programs_through_ppl_check(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PPL_DEBUG", raising=False)
    failures = run_cli_in_process(SEED, 80, tmp_path, capsys.readouterr)
    assert not failures, _report(failures)


def test_mutated_programs_through_the_ppl_process(tmp_path):
    """The real process: exit code, stderr and a bound on the time (a hang fails)."""
    failures = run_cli(SEED, 3, tmp_path, timeout=300, with_data=1)
    assert not failures, _report(failures)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_many_mutated_programs_and_data(tmp_path, seed):
    failures, compiled, bound = run_programs(seed, 4000, 500, tmp_path)
    assert not failures, _report(failures, 20)


@pytest.mark.slow
def test_many_mutated_programs_through_ppl_check(tmp_path):
    failures = run_cli(SLOW_SEEDS[0], 40, tmp_path, timeout=600, with_data=20)
    assert not failures, _report(failures, 20)
