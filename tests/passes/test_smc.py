"""The smc pass against exact answers: Kalman evidence, the forward algorithm, closed-form
conjugate evidence, and the reference SV evidence on the GBP/USD returns."""
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.cli import main as cli_main
from ppl.passes.smc import evidence_estimate
from ppl.syntax.errors import PPLRuntimeError

ROOT = Path(__file__).resolve().parents[2]
SV = dict(mu=-1.02432, phi=0.9702, s=0.178)

LG100 = """
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(0.9 * x[t-1], 1) }
for t in 1:T { y[t] ~ normal(x[t], 0.2) }
"""


def _json(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def lg100(shared_data):
    d = _json(shared_data / "ssm" / "linear_gaussian_T100.json")
    return ppl.compile(LG100), {"T": d["T"], "y": d["y"]}


@pytest.fixture(scope="module")
def sv_model():
    return ppl.load(ROOT / "examples" / "sv.ppl")


def _zhat_check(idata, exact, k=4.0):
    """The mean of Ẑ over independent filters, with a delta-method tolerance from the spread."""
    log_z = idata.sample_stats["log_evidence"].values.ravel()
    est, se = evidence_estimate(log_z)
    assert np.isfinite(se) and se > 0
    assert abs(est - exact) < k * se + 0.02, (est, se, exact, log_z.std())
    return est, se, log_z.std()


def test_guided_filter_mean_of_zhat(lg100):
    m, data = lg100
    idata = m.sample(data, method="smc", chains=100, particles=100, draws=10, proposal="guided",
                     seed=3)
    assert idata.posterior.attrs["smc_algorithm"] == "particle filter (guided)"
    _, _, sd = _zhat_check(idata, -149.1159051)
    assert sd < 1.0  # far below the bootstrap's spread at this N (9.9)
    assert idata.sample_stats["ess"].shape == (100, 1, 100)
    assert idata.posterior["x"].shape == (100, 10, 100)


@pytest.mark.slow
def test_bootstrap_filter_mean_of_zhat(lg100):
    m, data = lg100
    idata = m.sample(data, method="smc", chains=64, particles=1000, draws=10,
                     proposal="bootstrap", seed=5)
    _, _, sd = _zhat_check(idata, -149.1159051)
    assert 0.8 < sd < 4.0  # the README's bootstrap spread at N=1000 is 1.87


def test_kalman_marginalisation_exact(shared_data):
    d = _json(shared_data / "ssm" / "linear_gaussian_T10000.json")
    m = ppl.compile(LG100.replace("0.9 * x", "0.8 * x").replace("normal(x[t], 0.2)",
                                                                 "normal(10 * x[t], 0.1)"))
    idata = m.sample({"T": d["T"], "y": d["y"]}, method="smc", chains=1, draws=20)
    assert idata.posterior.attrs["smc_algorithm"].startswith("Kalman")
    assert abs(idata.posterior.attrs["log_evidence"] - (-37264.2543444)) < 1e-3
    # smoothed draws track the data closely (y = 10 x + small noise)
    x = idata.posterior["x"].values.mean(axis=(0, 1))
    assert np.max(np.abs(x - np.asarray(d["y"]) / 10)) < 0.05


def test_sv_first_201_returns(sv_model, shared_data):
    y = _json(shared_data / "ssm" / "gbp_usd_1997_1999_returns.json")["y"][:201]
    idata = sv_model.sample({"T": 201, "y": y, **SV}, method="smc", chains=16, particles=1000,
                            draws=20, seed=1)
    est, se, sd = _zhat_check(idata, -160.9375)
    assert idata.posterior["x"].shape == (16, 20, 201)
    assert "x_filtering_mean" in idata.sample_stats


@pytest.mark.slow
def test_sv_all_750_returns(sv_model, shared_data):
    y = _json(shared_data / "ssm" / "gbp_usd_1997_1999_returns.json")["y"]
    idata = sv_model.sample({"T": len(y), "y": y, **SV}, method="smc", chains=32,
                            particles=2000, draws=10, seed=2)
    _zhat_check(idata, -492.403)


def test_discrete_hmm_vs_forward_algorithm():
    from scipy.stats import norm

    from ppl.algorithms import hmm
    m = ppl.compile("""
data T: int
data y: real[T]
data p0: simplex[2]
data A: real[2, 2]
data mu: real[2]
z: int[T]
z[1] ~ categorical(p0)
for t in 2:T { z[t] ~ categorical(A[z[t-1]]) }
for t in 1:T { y[t] ~ normal(mu[z[t]], 1) }
""")
    rng = np.random.default_rng(1)
    T = 30
    y = rng.normal(size=T) + 2 * (rng.random(T) < 0.5)
    p0, A, mu = np.array([0.6, 0.4]), np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0.0, 2.0])
    exact = float(hmm.forward(jnp.log(p0), jnp.log(A),
                              jnp.asarray(norm.logpdf(y[:, None], mu[None], 1))).log_evidence)
    idata = m.sample({"T": T, "y": y, "p0": p0, "A": A, "mu": mu}, method="smc", chains=50,
                     particles=200, draws=10, seed=0)
    _zhat_check(idata, exact)


def test_tempered_smc_conjugate_evidence():
    from oracles.conjugate import normal_normal
    m = ppl.compile("""
data N: int
data y: real[N]
mu ~ normal(1, 2)
y ~ normal(mu, 0.5)
""")
    y = np.array([0.3, 1.2, 0.8, 2.1, 1.5, 0.9, 1.1, 0.4])
    exact = normal_normal(y, 0.5, 1.0, 2.0)
    idata = m.sample({"N": 8, "y": y}, method="smc", chains=16, particles=1000, seed=0)
    assert idata.posterior.attrs["smc_algorithm"] == "adaptive tempered SMC"
    _zhat_check(idata, exact.log_evidence, k=5.0)
    mu = idata.posterior["mu"].values
    assert abs(mu.mean() - exact.mean) < 0.02
    assert abs(mu.std() - exact.sd) < 0.02


def test_all_particles_dead_names_step_and_line():
    m = ppl.compile("""
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(x[t-1] + 100 * (t == 3), 0.1) }
for t in 1:T { y[t] ~ uniform(x[t] - 1, x[t] + 1) }
""")
    y = [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(PPLRuntimeError) as e:
        m.sample({"T": 4, "y": y}, method="smc", chains=2, particles=50, draws=5,
                 validate=False)
    assert "time step 3" in e.value.message and "line 7" in e.value.message


def test_cli_prints_log_evidence(capsys):
    rc = cli_main(["sample", str(ROOT / "examples" / "sv.ppl"), "--data",
                   str(ROOT / "examples" / "sv_fixed.json"), "--method", "smc", "--chains", "4",
                   "--draws", "20", "--quiet", "--max-elements", "5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("log evidence:"))
    est, se = (float(v) for v in line.split(":")[1].split("±"))
    assert -140 < est < -40 and 0 < se < 1


@pytest.mark.slow
def test_particle_gibbs_vs_grid_posterior(lg100):
    from ppl.algorithms import kalman
    _, data = lg100
    m = ppl.compile(LG100.replace("x: real[T]", "a ~ uniform(0, 1)\nx: real[T]")
                    .replace("0.9 * x", "a * x"))
    y = jnp.asarray(data["y"])[:, None]
    grid = np.linspace(0.001, 0.999, 999)
    lz = np.array([float(kalman.filter(kalman.LinearGaussianSSM(
        jnp.zeros(1), jnp.eye(1), a * jnp.eye(1), jnp.eye(1), jnp.eye(1), 0.04 * jnp.eye(1)),
        y).log_evidence) for a in grid])
    w = np.exp(lz - lz.max())
    w /= w.sum()
    mean = float(w @ grid)
    sd = float(np.sqrt(w @ grid ** 2 - mean ** 2))
    idata = m.sample(data, method="smc", chains=4, draws=1000, warmup=300, particles=50, seed=0)
    a = idata.posterior["a"].values
    assert abs(a.mean() - mean) < 0.02
    assert abs(a.std() - sd) < 0.015


@pytest.fixture(scope="module")
def lg100_free_a(lg100):
    """LG100 with its autoregression coefficient free, and the exact marginal posterior and
    log evidence of `a` by quadrature over Kalman likelihoods."""
    from ppl.algorithms import kalman
    _, data = lg100
    m = ppl.compile(LG100.replace("x: real[T]", "a ~ uniform(0, 1)\nx: real[T]")
                    .replace("0.9 * x", "a * x"))
    y = jnp.asarray(data["y"])[:, None]
    grid = np.linspace(0.0005, 0.9995, 1000)  # midpoints: the prior density is 1 on (0, 1)
    lz = np.array([float(kalman.filter(kalman.LinearGaussianSSM(
        jnp.zeros(1), jnp.eye(1), a * jnp.eye(1), jnp.eye(1), jnp.eye(1), 0.04 * jnp.eye(1)),
        y).log_evidence) for a in grid])
    top = lz.max()
    log_evidence = top + np.log(np.sum(np.exp(lz - top)) * (grid[1] - grid[0]))
    w = np.exp(lz - top)
    w /= w.sum()
    return m, data, float(w @ grid), float(log_evidence)


@pytest.mark.parametrize("proposal", ["auto", "bootstrap"])
def test_particle_gibbs_log_evidence_vs_quadrature(lg100_free_a, proposal):
    # auto: the model is linear-Gaussian, so the importance weights use the Kalman filter's
    # exact likelihood; bootstrap: a particle filter's unbiased estimate
    m, data, mean_a, exact = lg100_free_a
    idata = m.sample(data, method="smc", chains=2, draws=200, warmup=200, particles=20, seed=3,
                     proposal=proposal, evidence_draws=100, evidence_particles=1000)
    attrs = idata.posterior.attrs
    est, se = attrs["log_evidence"], attrs["log_evidence_se"]
    assert ("Kalman" in attrs["log_evidence_method"]) == (proposal == "auto")
    assert 0 < se < 0.5
    assert abs(est - exact) < 4 * se + 0.02, (est, se, exact)
    assert abs(float(idata.posterior["a"].mean()) - mean_a) < 0.05


@pytest.mark.slow
def test_sv_particle_gibbs_matches_nuts(sv_model, shared_data):
    """The GBP/USD returns with mu, phi, s free: particle Gibbs against NUTS on the same file
    (an independent sampler of the same joint posterior), within both runs' Monte Carlo error."""
    import arviz as az
    y = _json(shared_data / "ssm" / "gbp_usd_1997_1999_returns.json")["y"]
    data = {"T": len(y), "y": y}
    pg = sv_model.sample(data, method="smc", seed=0)
    hmc = sv_model.sample(data, method="nuts", seed=0)
    assert np.isfinite(pg.posterior.attrs["log_evidence"])
    for v in ("mu", "phi", "s"):
        a, b = pg.posterior[v].values, hmc.posterior[v].values
        se = np.hypot(*(float(az.mcse(x, var_names=[v])[v]) for x in (pg, hmc)))
        assert abs(a.mean() - b.mean()) < 4 * se + 0.01, (v, a.mean(), b.mean(), se)
        assert abs(a.std() - b.std()) < 0.25 * b.std(), (v, a.std(), b.std())


def test_pmmh_posterior_vs_quadrature(lg100_free_a):
    m, data, mean_a, exact = lg100_free_a
    idata = m.sample(data, method="smc", parameters="pmmh", chains=2, draws=400, warmup=300,
                     particles=100, seed=2, evidence_draws=100)
    attrs = idata.posterior.attrs
    assert attrs["smc_algorithm"].startswith("particle marginal")
    assert idata.posterior["x"].shape == (2, 400, 100)
    assert abs(float(idata.posterior["a"].mean()) - mean_a) < 0.04
    assert abs(attrs["log_evidence"] - exact) < 4 * attrs["log_evidence_se"] + 0.02
