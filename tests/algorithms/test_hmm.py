"""HMM forward/backward/FFBS/Viterbi against brute-force enumeration over all state paths."""
import itertools

import jax
import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (enables float64)
from ppl.algorithms import hmm


def random_chain(seed, num_steps, num_states, time_varying):
    rng = np.random.default_rng(seed)
    log_norm = lambda x: x - np.logaddexp.reduce(x, axis=-1, keepdims=True)
    log_init = log_norm(rng.normal(size=num_states))
    shape = (num_steps - 1, num_states, num_states) if time_varying else (num_states, num_states)
    log_trans = log_norm(rng.normal(scale=1.5, size=shape))
    log_obs = rng.normal(scale=2.0, size=(num_steps, num_states))  # any log-likelihoods
    return log_init, log_trans, log_obs


def path_log_joints(log_init, log_trans, log_obs):
    """log p(z, y) for every path z, in itertools.product order."""
    num_steps, num_states = log_obs.shape
    trans = np.broadcast_to(log_trans, (num_steps - 1, num_states, num_states))
    paths = np.array(list(itertools.product(range(num_states), repeat=num_steps)))
    steps = np.arange(num_steps)
    values = log_init[paths[:, 0]] + log_obs[steps, paths].sum(axis=1)
    values += trans[steps[:-1], paths[:, :-1], paths[:, 1:]].sum(axis=1)
    return paths, values


@pytest.mark.parametrize("time_varying", [False, True])
def test_forward_and_smoothing_match_enumeration(time_varying):
    log_init, log_trans, log_obs = random_chain(0, num_steps=5, num_states=3, time_varying=time_varying)
    paths, values = path_log_joints(log_init, log_trans, log_obs)
    log_z = np.logaddexp.reduce(values)

    result = hmm.forward(log_init, log_trans, log_obs)
    assert abs(float(result.log_evidence) - log_z) < 1e-10
    # Filtering at t = 2 (0-based): log p(y_0:2, z_2) = sum over paths of the partial joint.
    _, partial = path_log_joints(log_init, log_trans[:2] if time_varying else log_trans, log_obs[:3])
    short_paths = np.array(list(itertools.product(range(3), repeat=3)))
    for k in range(3):
        np.testing.assert_allclose(result.log_alpha[2, k], np.logaddexp.reduce(partial[short_paths[:, 2] == k]), atol=1e-10)

    smoothed = hmm.backward_smoothing(log_init, log_trans, log_obs)
    posterior = np.exp(values - log_z)
    exact = np.stack([[posterior[paths[:, t] == k].sum() for k in range(3)] for t in range(5)])
    np.testing.assert_allclose(smoothed.marginals, exact, atol=1e-10, rtol=0)
    assert abs(float(smoothed.log_evidence) - log_z) < 1e-10

    best = hmm.viterbi(log_init, log_trans, log_obs)
    np.testing.assert_array_equal(best.path, paths[np.argmax(values)])
    assert abs(float(best.log_joint) - values.max()) < 1e-10


def test_single_step_chain():
    log_init, _, log_obs = random_chain(3, num_steps=1, num_states=4, time_varying=False)
    log_trans = np.zeros((4, 4))
    assert abs(float(hmm.forward(log_init, log_trans, log_obs).log_evidence) - np.logaddexp.reduce(log_init + log_obs[0])) < 1e-12
    np.testing.assert_allclose(
        hmm.backward_smoothing(log_init, log_trans, log_obs).marginals[0],
        np.exp(log_init + log_obs[0] - np.logaddexp.reduce(log_init + log_obs[0])),
        atol=1e-12,
    )


def test_ffbs_path_frequencies_match_exact_path_posterior():
    log_init, log_trans, log_obs = random_chain(1, num_steps=4, num_states=2, time_varying=True)
    paths, values = path_log_joints(log_init, log_trans, log_obs)
    probabilities = np.exp(values - np.logaddexp.reduce(values))
    n = 20_000
    draws = jax.jit(lambda key: hmm.ffbs_sample(key, log_init, log_trans, log_obs, num_samples=n))(jax.random.PRNGKey(0))
    assert draws.shape == (n, 4)
    index = np.asarray(draws) @ (2 ** np.arange(3, -1, -1))  # binary path -> product order
    observed = np.bincount(index, minlength=16)
    expected = n * probabilities
    keep = expected >= 5
    if not keep.all():
        observed = np.append(observed[keep], observed[~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
    p_value = stats.chisquare(observed, expected).pvalue
    print(f"chi-square p-value {p_value:.3f} over {len(observed)} cells")
    assert p_value > 1e-3, p_value


def test_gradient_matches_finite_differences_and_smoothing():
    log_init, log_trans, log_obs = random_chain(2, num_steps=6, num_states=3, time_varying=False)
    grads = jax.grad(hmm.log_evidence, argnums=(0, 1, 2))(log_init, log_trans, log_obs)
    for g in grads:
        assert np.all(np.isfinite(g))
    # d log p(y) / d log_obs[t, k] = p(z_t = k | y): an exact identity.
    marginals = hmm.backward_smoothing(log_init, log_trans, log_obs).marginals
    np.testing.assert_allclose(grads[2], marginals, atol=1e-12)
    # Central finite differences in float64 on every input entry (error O(h²) ≈ 1e-10).
    h = 1e-5
    f = jax.jit(hmm.log_evidence)
    inputs = [log_init, log_trans, log_obs]
    for which, array in enumerate(inputs):
        for index in np.ndindex(array.shape):
            plus, minus = [a.copy() for a in inputs], [a.copy() for a in inputs]
            plus[which][index] += h
            minus[which][index] -= h
            numeric = (float(f(*plus)) - float(f(*minus))) / (2 * h)
            assert abs(numeric - float(grads[which][index])) < 1e-7, (which, index)
