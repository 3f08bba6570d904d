"""Simulate the example data sets (fixed seeds): `python examples/simulate.py` rewrites them."""
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def save(name, data):
    def conv(v):
        return v.tolist() if isinstance(v, np.ndarray) else v
    (HERE / f"{name}.json").write_text(json.dumps({k: conv(v) for k, v in data.items()}) + "\n")


def main():
    rng = np.random.default_rng(20261123)
    N, K = 100, 3
    X = np.round(rng.normal(size=(N, K)), 3)
    y = 1.0 + X @ np.array([0.5, -1.0, 2.0]) + rng.normal(0, 0.8, N)
    save("linear_regression", {"N": N, "K": K, "X": X, "y": np.round(y, 3)})

    X = np.round(rng.normal(size=(N, 2)), 3)
    p = 1 / (1 + np.exp(-(-0.5 + X @ np.array([1.5, -1.0]))))
    save("logistic_regression", {"N": N, "K": 2, "X": X, "y": (rng.random(N) < p).astype(int)})

    J, N = 8, 120
    group = rng.integers(1, J + 1, N)
    a = 2.0 + 1.0 * rng.normal(size=J)
    x = np.round(rng.normal(size=N), 3)
    y = a[group - 1] + 0.7 * x + rng.normal(0, 0.5, N)
    save("varying_intercepts", {"N": N, "J": J, "group": group, "x": x, "y": np.round(y, 3)})

    T = 100
    mu, phi, s = -1.0, 0.95, 0.25
    xs = np.empty(T)
    xs[0] = rng.normal(mu, s / np.sqrt(1 - phi**2))
    for t in range(1, T):
        xs[t] = mu + phi * (xs[t - 1] - mu) + s * rng.normal()
    save("sv", {"T": T, "y": np.round(rng.normal(0, np.exp(xs / 2)), 4)})

    N, D = 50, 2
    X = np.round(rng.normal(size=(N, D)), 3)
    save("regression", {"N": N, "D": D, "X": X,
                        "y": np.round(X @ np.array([1.0, -2.0]) + rng.normal(0, 0.5, N), 3)})


if __name__ == "__main__":
    main()
