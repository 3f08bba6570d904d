"""Data against the model: strictness (issue 13, defect 6), indices from data (defect 1) and
the memory estimate (defect 7)."""
import json

import numpy as np
import pytest

from ppl.check.checker import check
from ppl.check.data import bind_data, load_json, machine_memory
from ppl.syntax.errors import PPLDataError
from ppl.syntax.parser import parse


def bind(src, data, name="d.json"):
    return bind_data(check(parse(src, "m.ppl")), data, name)


def error(src, data):
    with pytest.raises(PPLDataError) as e:
        bind(src, data)
    return e.value.format()


def json_file(tmp_path, text, name="d.json"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


REG = "data N: int\ndata y: real[N]\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)\n"
COUNTS = "data N: int\ndata k: int[N]\nlambda ~ gamma(2, 1)\nk ~ poisson(lambda)\n"
FLAGS = "data N: int\ndata b: bool[N]\np ~ beta(1, 1)\nb ~ bernoulli(p)\n"


# ---------------------------------------------------------------- the file
def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    p = json_file(tmp_path, '{"N": 2,\n "y": [1, 2],\n "N": 3}')
    with pytest.raises(PPLDataError) as e:
        load_json(p)
    text = e.value.format()
    assert text.startswith(f'{p}:3:2: error: "N" is given twice in the data file')
    assert "the first \"N\" is at line 1" in text


def test_same_key_in_different_objects_is_fine(tmp_path):
    assert load_json(json_file(tmp_path, '{"a": {"x": 1}, "b": {"x": 2}}'))["b"] == {"x": 2}


@pytest.mark.parametrize("text", ["", "   \n", b""])
def test_empty_file(tmp_path, text):
    with pytest.raises(PPLDataError, match="the data file is empty"):
        load_json(json_file(tmp_path, text))


def test_dev_null_is_an_empty_data_file():
    with pytest.raises(PPLDataError, match="the data file is empty"):
        load_json("/dev/null")


def test_deep_nesting_is_a_framed_error_not_a_recursion_error(tmp_path):
    p = json_file(tmp_path, '{"y": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(PPLDataError) as e:
        load_json(p)
    assert "more than 64 levels deep" in e.value.message and e.value.span.col == 70  # the 65th level: the object and 64 arrays


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    data = load_json(json_file(tmp_path, json.dumps({"note": "[" * 200, "N": 1})))
    assert data["N"] == 1


def test_bom_and_utf16_data(tmp_path):
    assert load_json(json_file(tmp_path, b"\xef\xbb\xbf" + b'{"N": 1}'))["N"] == 1
    assert load_json(json_file(tmp_path, '{"N": 2}'.encode("utf-16")))["N"] == 2


def test_integer_over_4300_digits_in_json(tmp_path):
    data = load_json(json_file(tmp_path, '{"N": 2, "k": [1, ' + "9" * 5000 + "]}"))
    msg = error(COUNTS, data)
    assert 'data "k[2]" is an integer of 5000 digits in d.json: far too large' in msg


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("values, where, shown", [([1.5, True, 0.5], "[2]", "true"),
                                                  ([False, 1.0, 0.5], "[1]", "false")])
def test_booleans_are_not_numbers(values, where, shown):
    msg = error(REG, {"N": 3, "y": values})
    assert f'data "y{where}" is {shown} in d.json, but "y" is declared real[N]' in msg


def test_boolean_scalar_for_int():
    assert 'data "N" is true' in error(REG, {"N": True, "y": [1.0]})


def test_booleans_are_values_of_bool_data():
    b = bind(FLAGS, {"N": 3, "b": [True, False, 1]})
    assert b.arrays["b"].tolist() == [1, 0, 1] and b.arrays["b"].dtype == np.int64


@pytest.mark.parametrize("values", [[1.5, "2.5", 0.5], ["1", "2", "3"], [1.0, None, 2.0]])
def test_strings_and_null_are_not_numbers(values):
    assert "data must be numbers" in error(REG, {"N": 3, "y": values})


@pytest.mark.parametrize("value, shown", [(2**63, "9223372036854775808"), (1e30, "1e+30"),
                                          (10**400, "100000…000 (401 digits)"),
                                          (-2**63 - 1, "-9223372036854775809")])
def test_integers_beyond_int64(value, shown):
    msg = error(COUNTS, {"N": 2, "k": [3, value]})
    assert f'data "k[2]" is {shown} in d.json, beyond the 64-bit integers' in msg


def test_int64_extremes_are_exact():
    b = bind("data k: int[2]\n", {"k": [2**63 - 1, -2**63]})
    assert b.arrays["k"].tolist() == [2**63 - 1, -2**63]


def test_huge_integer_for_a_real():
    msg = error(REG, {"N": 1, "y": [10**400]})
    assert "too large for a real" in msg


def test_undeclared_data_is_a_warning_with_a_suggestion():
    b = bind(REG, {"N": 1, "y": [1.0], "sgima": 2})
    (w,) = b.warnings
    text = w.format(None, "d.json")
    assert 'd.json has "sgima", which the model does not declare: ignored' in text


def test_value_for_a_deterministic_variable_is_an_error():
    src = REG.replace("y ~ normal(mu, 1)", "m2 = mu * 2\ny ~ normal(m2, 1)")
    msg = error(src, {"N": 1, "y": [1.0], "m2": 3.0})
    assert 'd.json gives a value for "m2", but "m2" is computed by the model' in msg


def test_value_for_a_generated_quantity_is_an_error():
    src = REG + "generated {\n  y_rep ~ normal(mu, 1)\n}\n"
    assert "a generated quantity" in error(src, {"N": 1, "y": [1.0], "y_rep": 0.0})


@pytest.mark.parametrize("decl, value, expect", [
    ("sigma ~ half_normal(1)", -1.0, "outside the support of half_normal"),
    ("sigma ~ exponential(1)", 0.0 - 2, "outside the support of exponential"),
    ("sigma: real<lower=0> ~ normal(0, 1)", -0.5, "below its lower bound 0"),
    ("sigma: real<lower=0, upper=N> ~ normal(0, 1)", 5.0, "above its upper bound N = 2"),
    ("sigma: simplex[2] ~ dirichlet([1, 1])", [0.5, 0.6], "is not a simplex"),
    ("sigma: ordered[2] ~ normal(0, 1)", [2.0, 1.0], "not strictly increasing"),
    ("sigma: real[3] ~ normal(0, 1)", [1.0, 2.0], "has shape (2)"),
    ("k ~ poisson(3)", 1.5, None),
])
def test_fixed_latent_outside_its_support_bounds_or_shape(decl, value, expect):
    name = decl.split()[0].rstrip(":")
    src = "data N: int\n" + decl + "\n"
    if expect is None:  # a discrete latent held at a non-integer
        with pytest.raises(PPLDataError, match="outside the support of poisson"):
            bind(src, {"N": 2, name: value})
        return
    assert expect in error(src, {"N": 2, name: value})


def test_fixed_latent_inside_its_support_is_held():
    b = bind("sigma ~ half_normal(1)\n", {"sigma": 0.5})
    assert float(b.fixed["sigma"]) == 0.5


# ---------------------------------------------------------------- indices from data
IDX = """data N: int
data y: real[N]
data idx: int[N]
mu: real[N] ~ normal(0, 1)
y ~ normal(mu[idx], 0.1)
"""


def test_issue_reproducer_index_from_data():
    msg = error(IDX, {"N": 4, "y": [1, 2, 3, 4], "idx": [0, 5, -1, 2]})
    assert msg.startswith('m.ppl:5:15: error: index out of range: "idx[1]" is 0 in d.json, '
                          'but "mu" has indices 1 to 4')
    assert "  5 | y ~ normal(mu[idx], 0.1)\n    |               ^^^" in msg


def test_first_bad_element_above_the_extent():
    msg = error(IDX, {"N": 4, "y": [1, 2, 3, 4], "idx": [1, 2, 5, 2]})
    assert '"idx[3]" is 5 in d.json' in msg and "the last index is 4" in msg


def test_valid_indices_bind():
    bind(IDX, {"N": 4, "y": [1, 2, 3, 4], "idx": [4, 1, 2, 2]})


@pytest.mark.parametrize("slice_, data, expect", [
    ("mu[0:2]", {}, "slice start out of range: 0, but"),
    ("mu[2:10]", {}, "slice end out of range: 10, but"),
    ("mu[2:n]", {"n": 10}, 'slice end out of range: "n" is 10 in d.json'),
    ("mu[n:4]", {"n": 0}, 'slice start out of range: "n" is 0 in d.json'),
])
def test_slice_bounds(slice_, data, expect):
    src = "data N: int\ndata n: int\nmu: real[N] ~ normal(0, 1)\ns = sum(" + slice_ + ")\n"
    assert expect in error(src, {"N": 4, "n": 1, **data})


def test_empty_slices_are_fine():
    src = "data N: int\ndata n: int\nmu: real[N] ~ normal(0, 1)\ns = sum(mu[n+1:n])\n"
    bind(src, {"N": 4, "n": 4})


LOOP = """data N: int
data J: int
data y: real[N]
data g: int[N]
theta: real[J] ~ normal(0, 1)
for n in 1:N {
  y[n] ~ normal(theta[g[n]], 1)
}
"""


def test_index_in_a_loop_names_the_element():
    msg = error(LOOP, {"N": 3, "J": 2, "y": [1, 2, 3], "g": [1, 2, 3]})
    assert '"g[3]" is 3 in d.json, but "theta" has indices 1 to 2' in msg


def test_loop_past_the_end_of_data():
    src = "data N: int\ndata y: real[N]\nfor i in 1:N+1 {\n  target += y[i]\n}\n"
    msg = error(src, {"N": 3, "y": [1, 2, 3]})
    assert 'index out of range: "i" is 4, but "y" has indices 1 to 3' in msg


def test_guarded_index_is_not_reported():
    src = """data N: int
data idx: int[N]
mu: real[N] ~ normal(0, 1)
for i in 1:N {
  if idx[i] > 0 {
    target += mu[idx[i]]
  } else {
    target += mu[1]
  }
}
"""
    bind(src, {"N": 4, "idx": [0, 1, 0, 4]})
    assert '"idx[2]" is 9' in error(src, {"N": 4, "idx": [0, 9, 0, 4]})


def test_loop_with_no_iterations_checks_nothing():
    src = "data N: int\ndata M: int\ndata y: real[N]\nfor i in 1:M {\n  target += y[i + 10]\n}\n"
    bind(src, {"N": 2, "M": 0, "y": [1, 2]})


def test_ragged_loops_from_data():
    src = """data N: int
data G: int
data start: int[G]
data len: int[G]
data y: real[N]
mu ~ normal(0, 1)
for g in 1:G {
  for j in start[g]:(start[g] + len[g] - 1) {
    y[j] ~ normal(mu, 1)
  }
}
"""
    bind(src, {"N": 5, "G": 2, "start": [1, 3], "len": [2, 3], "y": [1, 2, 3, 4, 5]})
    msg = error(src, {"N": 5, "G": 2, "start": [1, 3], "len": [2, 4], "y": [1, 2, 3, 4, 5]})
    assert 'index out of range: "j" is 6 (at g = 2), but "y" has indices 1 to 5' in msg


def test_local_values_computed_from_data():
    src = "data N: int\ndata idx: int[N]\nmu: real[N] ~ normal(0, 1)\nfor i in 1:N {\n" \
          "  k = idx[i] + 1\n  target += mu[k]\n}\n"
    assert '"k" is 5 (at i = 4)' in error(src, {"N": 4, "idx": [0, 1, 2, 4]})


def test_two_dimensional_index_names_the_dimension():
    src = "data N: int\ndata g: int[N, 2]\nmu: real[2, 3] ~ normal(0, 1)\nfor i in 1:N {\n" \
          "  target += mu[g[i, 1], g[i, 2]]\n}\n"
    msg = error(src, {"N": 2, "g": [[1, 3], [2, 4]]})
    assert '"g[2, 2]" is 4 in d.json, but dimension 2 of "mu" has indices 1 to 3' in msg


def test_indices_that_depend_on_random_variables_are_left_to_run_time():
    src = "data N: int\nk ~ poisson(2)\nmu: real[N] ~ normal(0, 1)\ntarget += mu[k]\n"
    bind(src, {"N": 3})


def test_index_in_a_declared_size():
    src = "data K: int[2]\nmu: real[K[3]] ~ normal(0, 1)\n"
    assert "out of range" in error(src, {"K": [1, 2]})


def test_generated_block_is_checked_too():
    src = IDX.replace("y ~ normal(mu[idx], 0.1)", "y ~ normal(mu, 0.1)") + \
        "generated {\n  z = mu[idx]\n}\n"
    assert '"idx[1]" is 0' in error(src, {"N": 4, "y": [1, 2, 3, 4], "idx": [0, 1, 2, 3]})


def test_examples_bind_without_index_errors():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "examples"
    for ppl in sorted(root.glob("*.ppl")):
        data = root / (ppl.stem + ".json")
        if data.exists():
            bind_data(check(parse(ppl.read_text(), ppl.name)), load_json(data), data.name)


# ---------------------------------------------------------------- memory
BIG = "data N: int\nmu: real[N] ~ normal(0, 1)\n"


def test_a_model_larger_than_the_machine_is_refused_before_allocation():
    """N = 10^9: 8 GB a copy of mu, at least four copies during inference."""
    limit = machine_memory()
    assert limit is not None
    n = limit // 8  # one copy fits in memory, four do not
    msg = error(BIG, {"N": n})
    assert "the model needs about" in msg and f'"mu" (real[N]) has {n} elements' in msg


def test_memory_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("PPL_MEMORY_LIMIT", "1e6")
    assert machine_memory() == 10**6
    bind(BIG, {"N": 1000})  # 32 kB
    with pytest.raises(PPLDataError, match="more than the 1.0 MB this machine has"):
        bind(BIG, {"N": 100_000})


def test_integral_floats_for_int_data_become_integers():
    b = bind(COUNTS, {"N": 2.0, "k": [1.0, 2.0]})
    assert b.static["N"] == 2 and isinstance(b.static["N"], int)
    assert b.arrays["k"].dtype == np.int64 and b.arrays["k"].tolist() == [1, 2]
    assert 'is 1.5 in d.json, but "k" is declared int[N]' in error(COUNTS, {"N": 2, "k": [1.5, 2]})


def test_fixed_discrete_latent_is_an_integer_array():
    b = bind("k ~ poisson(3)\n", {"k": 2.0})
    assert b.fixed["k"].dtype == np.int64
