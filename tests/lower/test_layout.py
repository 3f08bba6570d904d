"""Layouts: flat slots, and paths on a time grid."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.lower.layout import PathLayout

RECURRENCE = """
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(0.9 * x[t-1], 0.5) }
for t in 1:T { y[t] ~ normal(x[t], 1) }
"""


def test_path_layout_round_trips_a_recurrence_on_a_time_grid():
    T = 9
    grid = np.linspace(0.0, 2.0, T)
    lw = ppl.compile(RECURRENCE).lower({"T": T, "y": np.zeros(T).tolist()})
    draws = jax.vmap(lambda k: lw.prior_sample(k, lw.data_arrays))(jax.random.split(jax.random.PRNGKey(3), 4))
    layout = PathLayout(grid, {"x": 1, "w": 2})
    for i in range(4):
        paths = {"x": draws["x"][i][:, None], "w": jnp.stack([draws["x"][i], -draws["x"][i]], -1)}
        flat = layout.flatten(paths)
        assert flat.shape == (layout.dim,) == (T * 3,)
        back = layout.unflatten(flat)
        np.testing.assert_array_equal(back["x"], paths["x"])
        np.testing.assert_array_equal(back["w"], paths["w"])
        np.testing.assert_array_equal(layout.at(back, "x", grid[[0, 4, 8]])[:, 0],
                                      np.asarray(draws["x"][i])[[0, 4, 8]])
    with pytest.raises(ValueError, match="not on the grid"):
        layout.index_of([0.1])


def test_flat_layout_packs_what_it_slices():
    lw = ppl.compile(RECURRENCE).lower({"T": 5, "y": np.zeros(5).tolist()})
    u = jnp.arange(lw.dim, dtype=float)
    assert lw.layout.names == ["x"] and lw.dim == 5
    np.testing.assert_array_equal(lw.layout.pack({"x": lw.layout.unconstrained("x", u)}), u)
