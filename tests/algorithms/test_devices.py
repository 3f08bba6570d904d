"""Chains and particles over devices: 4 forced CPU host devices, in a subprocess (the device
count is fixed when JAX starts). A filter whose particles are split over devices against the
same filter on one device (same keys) and against the Kalman evidence; NUTS and particle
Gibbs chains on 4 devices against 1 device, draw for draw."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(r"""
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import ppl, jax, jax.numpy as jnp, numpy as np
    from ppl.algorithms import particle_filter as pf, devices, kalman
    from test_particle_filter import lg_model, lg_kalman, LG_PARAMS
    assert jax.local_device_count() == 4, jax.local_devices()
    out = {}
    y = np.array(json.loads(open(sys.argv[1]).read())["y"])
    RUNS, CHAINS = int(sys.argv[4]), sys.argv[5] == "chains"

    def both(name, model, runs, n, **kw):
        keys = jax.random.split(jax.random.key(11), runs)
        lay = devices.layout(runs, 4, n, shard=kw.pop("shard", "particles"))
        r4 = pf.run_chains(keys, model, LG_PARAMS, n, lay, **kw)
        r1 = pf.run_chains(keys, model, LG_PARAMS, n, None, **kw)
        out[name] = dict(split=lay.particle_split, rows=lay.rows,
                         lz4=np.asarray(r4.log_evidence).tolist(),
                         lz1=np.asarray(r1.log_evidence).tolist(),
                         fm4=np.asarray(r4.filtering_means).mean(0).tolist(),
                         dtype=str(r4.particles.dtype), shape=list(r4.particles.shape))

    # guided proposal, all T = 100 steps: per-particle keys, adaptive systematic resampling
    both("guided", lg_model(y, proposal=True), RUNS, 128)
    # bootstrap with the filter's own counter-based noise, multinomial at every step, and in
    # float32; the first 15 steps (bootstrap's log Ẑ spreads too much over 100 at this N)
    noisy = lg_model(y[:15])._replace(
        transition_noise=lambda k, m, n: jax.random.normal(k, (m, n, 1)),
        transition_from_noise=lambda e, xp, t, p: p["phi"] * xp + e[:, 0], noise_size=1)
    both("bootstrap", noisy, RUNS, 128, resampling="multinomial", ess_threshold=1.0)
    both("bootstrap32", noisy, RUNS, 128, dtype=jnp.float32)
    if CHAINS:  # 2 chains, each over 2 devices
        both("mixed", noisy, 2, 1 << 16, shard="auto")
    out["kalman"] = float(kalman.filter(lg_kalman(y), y).log_evidence)
    out["kalman15"] = float(kalman.filter(lg_kalman(y[:15]), y[:15]).log_evidence)

    if not CHAINS:
        print("RESULT " + json.dumps(out))
        sys.exit(0)
    # NUTS and particle Gibbs chains: 4 devices against 1
    root = sys.argv[3]
    eight = ppl.load(root + "/examples/eight_schools.ppl")
    data = json.loads(open(root + "/examples/eight_schools.json").read())
    draws = {}
    for d in (1, 4):
        idata = eight.sample(data, method="nuts", chains=4, draws=60, warmup=60, seed=5, devices=d,
                             validate=False)
        draws[d] = np.asarray(idata.posterior["tau"].values)
    out["nuts_same"] = bool(np.array_equal(draws[1], draws[4]))
    out["nuts_shape"] = list(draws[4].shape)
    lg = ppl.compile('''
    data T: int
    data y: real[T]
    a ~ uniform(0, 1)
    x: real[T]
    x[1] ~ normal(0, 1)
    for t in 2:T { x[t] ~ normal(a * x[t-1], 1) }
    for t in 1:T { y[t] ~ normal(x[t], 0.2) }
    ''')
    pg = {}
    for d in (1, 4):
        idata = lg.sample({"T": 30, "y": y[:30].tolist()}, method="smc", chains=4, draws=30,
                          warmup=10, particles=20, seed=2, devices=d, evidence_draws=0,
                          paris=False, validate=False)
        pg[d] = np.asarray(idata.posterior["a"].values)
    out["pg_same"] = bool(np.array_equal(pg[1], pg[4]))
    out["pg_spread"] = float(np.std(pg[4]))
    print("RESULT " + json.dumps(out))
""")


def log_mean_exp_and_se(lz):
    lz = np.asarray(lz)
    c = lz.max()
    r = np.exp(lz - c)
    return np.log(r.mean()) + c, r.std(ddof=1) / r.mean() / np.sqrt(len(r))


def _child(shared_data, runs, chains):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=str(ROOT))
    path = shared_data / "ssm" / "linear_gaussian_T100.json"
    p = subprocess.run([sys.executable, "-c", CHILD, str(path), str(Path(__file__).parent),
                        str(ROOT), str(runs), "chains" if chains else "filters"], env=env,
                       capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, p.stderr[-4000:]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def four_devices(shared_data):
    """Small: same-key agreement of split filters, chains on 4 devices against 1."""
    return _child(shared_data, 8, True)


@pytest.fixture(scope="module")
def four_devices_200(shared_data):
    """200 split filters per case, for the mean of Ẑ."""
    return _child(shared_data, 200, False)


@pytest.mark.parametrize("name", ["guided", "bootstrap", "bootstrap32", "mixed"])
def test_split_filter_is_the_one_device_filter(four_devices, name):
    # Same keys, particles split over devices: the same noise (by global particle index) and
    # the same ancestors (resampled from the gathered weights); only the order in which the
    # weights are summed differs, so log Ẑ agrees to rounding on (almost) every run.
    r = four_devices[name]
    assert r["split"] > 1
    lz4, lz1 = np.asarray(r["lz4"]), np.asarray(r["lz1"])
    assert np.all(np.isfinite(lz4))
    close = np.abs(lz4 - lz1) <= 1e-8 * np.abs(lz1)
    assert close.mean() >= 0.95, np.abs(lz4 - lz1)
    assert r["shape"][1] == {"mixed": 1 << 16}.get(name, 128)  # every particle back, in order


@pytest.mark.slow
@pytest.mark.parametrize("name,ref", [("guided", "kalman"), ("bootstrap", "kalman15"),
                                      ("bootstrap32", "kalman15")])
def test_split_filter_evidence_is_unbiased(four_devices_200, name, ref):
    # mean of Ẑ over 200 split filters against the exact evidence, within 4 delta-method se
    four_devices = four_devices_200
    r = four_devices[name]
    est, se = log_mean_exp_and_se(r["lz4"])
    exact = four_devices[ref]
    assert abs(est - exact) < 4 * se + 1e-3, (est, se, exact)
    if name.endswith("32"):
        assert r["dtype"] == "float32"


def test_nuts_chains_same_on_four_devices_as_on_one(four_devices):
    assert four_devices["nuts_shape"] == [4, 60]
    assert four_devices["nuts_same"]


def test_particle_gibbs_chains_same_on_four_devices_as_on_one(four_devices):
    assert four_devices["pg_same"]
    assert four_devices["pg_spread"] > 0
