"""torchsde anchor for the OU latent-SDE benchmark (runs in the ``torchsde`` venv: CPU torch).

Spoken to over JSON lines by ``run_latent_sde.py`` (see ``_common.serve``):

* ``setup``  — build the model and optimiser from a config (the same problem, network and
  features as ppl's engine: ``ou_gaussian.json``, prior dX = θ(μ − X)dt + σ dW, posterior drift
  θ(μ − X) + σ u(t, X), u an MLP with a zero-initialised last layer fed with time features,
  next-observation features and X; q(X0) Gaussian; Adam).
* ``steps``  — n ELBO gradient steps; returns the time of each.
* ``elbo``   — the ELBO on ``paths`` fresh paths (no gradient), mean and se.
* ``train_to`` — steps until the ELBO, evaluated every ``eval_every`` steps on ``eval_paths``
  paths (evaluation time excluded), reaches ``target`` or ``max_seconds`` of training pass.

The ELBO is torchsde's own: ``sdeint(sde, x0, ts, dt=dt, method=..., logqp=True)`` over
ts = (0, observation times, T), so the state at an observation time is torchsde's linear
interpolation between its fixed steps of ``dt``; log p(y | X) − KL(q(X0) ‖ p(X0)) − Σ log-ratio.
Everything in float64 like ppl.
"""
from __future__ import annotations

import time

T_START_WALL = time.time()

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import serve  # noqa: E402

import torch  # noqa: E402
import torchsde  # noqa: E402
from torch import nn  # noqa: E402

torch.set_default_dtype(torch.float64)

_state: dict = {}


class OULatentSDE(torchsde.SDEIto):
    def __init__(self, data: dict, cfg: dict):
        super().__init__(noise_type="diagonal")
        self.theta, self.mu, self.sigma = data["theta"], data["mu"], data["sigma"]
        self.T = data["t_end"]
        self.obs_t = torch.tensor(data["t"])
        self.obs_y = torch.tensor(data["y"])
        self.fourier = cfg["fourier"]
        self.scales = torch.tensor(cfg["scales"])
        n_in = 1 + 2 * self.fourier + len(cfg["scales"]) + 2 + 1
        layers, width = [], n_in
        for h in cfg["hidden"]:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        last = nn.Linear(width, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.p0_mean, self.p0_sd = data["x0_mean"], data["x0_sd"]
        self.q0_mean = nn.Parameter(torch.tensor([[data["x0_mean"]]]))
        self.q0_logsd = nn.Parameter(torch.tensor([[math.log(data["x0_sd"])]]))

    def features(self, t):
        """Time features t/T, sin/cos(2πk t/T); next observation: e^{−τ/s}, has-next, its y."""
        tt = t / self.T
        f = [tt.reshape(1)]
        for k in range(1, self.fourier + 1):
            f += [torch.sin(2 * math.pi * k * tt).reshape(1), torch.cos(2 * math.pi * k * tt).reshape(1)]
        i = torch.searchsorted(self.obs_t, t.reshape(1) + 1e-12, right=True)
        has = i < len(self.obs_t)
        j = torch.clamp(i, max=len(self.obs_t) - 1)
        tau = self.obs_t[j] - t
        f.append(torch.where(has, torch.exp(-tau / self.scales), torch.zeros_like(self.scales)))
        f.append(has.to(t.dtype))
        f.append(torch.where(has, self.obs_y[j], torch.zeros(1)))
        return torch.cat(f)

    def u(self, t, y):
        feats = self.features(t).expand(y.shape[0], -1)
        return self.net(torch.cat([feats, y], dim=1))

    def f(self, t, y):  # posterior drift
        return self.theta * (self.mu - y) + self.sigma * self.u(t, y)

    def h(self, t, y):  # prior drift
        return self.theta * (self.mu - y)

    def g(self, t, y):  # shared diffusion
        return torch.full_like(y, self.sigma)


def _elbo_terms(sde: OULatentSDE, paths: int, data: dict, cfg: dict):
    eps = torch.randn(paths, 1)
    qsd = torch.exp(sde.q0_logsd)
    x0 = sde.q0_mean + qsd * eps
    kl0 = (math.log(sde.p0_sd) - sde.q0_logsd + (qsd ** 2 + (sde.q0_mean - sde.p0_mean) ** 2)
           / (2 * sde.p0_sd ** 2) - 0.5).sum(dim=1)
    ts = torch.tensor([0.0] + list(data["t"]) + ([data["t_end"]] if data["t"][-1] < data["t_end"] else []))
    xs, log_ratio = torchsde.sdeint(sde, x0, ts, dt=cfg["dt"], method=cfg["method"], logqp=True)
    x_obs = xs[1:1 + len(data["t"]), :, 0]  # (n, paths)
    s = data["obs_sd"]
    loglik = (-0.5 * ((sde.obs_y[:, None] - x_obs) / s) ** 2 - math.log(s)
              - 0.5 * math.log(2 * math.pi)).sum(dim=0)
    kl = kl0 + log_ratio.sum(dim=0)
    return loglik - kl


def setup(req: dict) -> dict:
    data = json.loads(Path(req["data_path"]).read_text())
    cfg = req["config"]
    torch.manual_seed(cfg.get("seed", 0))
    torch.set_num_threads(cfg.get("threads", torch.get_num_threads()))
    sde = OULatentSDE(data, cfg)
    opt = torch.optim.Adam(sde.parameters(), lr=cfg["lr"])
    _state.update(sde=sde, opt=opt, data=data, cfg=cfg, steps=0)
    return {"ok": True, "torch": torch.__version__, "torchsde": torchsde.__version__,
            "threads": torch.get_num_threads(), "startup_s": time.time() - T_START_WALL}


def _one_step() -> float:
    sde, opt, data, cfg = _state["sde"], _state["opt"], _state["data"], _state["cfg"]
    opt.zero_grad()
    elbo = _elbo_terms(sde, cfg["paths"], data, cfg)
    loss = -elbo.mean()
    loss.backward()
    opt.step()
    _state["steps"] += 1
    return float(elbo.mean().detach())


def steps(req: dict) -> dict:
    times, elbos = [], []
    for _ in range(req["n"]):
        t = time.perf_counter()
        elbos.append(_one_step())
        times.append(time.perf_counter() - t)
    return {"times": times, "elbos": elbos}


def _evaluate(paths: int, batch: int = 1024) -> tuple[float, float]:
    sde, data, cfg = _state["sde"], _state["data"], _state["cfg"]
    vals = []
    with torch.no_grad():
        done = 0
        while done < paths:
            nb = min(batch, paths - done)
            vals.append(_elbo_terms(sde, nb, data, cfg))
            done += nb
    v = torch.cat(vals)
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def elbo(req: dict) -> dict:
    m, se = _evaluate(req["paths"])
    return {"elbo": m, "se": se}


def train_to(req: dict) -> dict:
    train_s, trace = 0.0, []
    reached = None
    while train_s < req["max_seconds"]:
        t = time.perf_counter()
        for _ in range(req["eval_every"]):
            _one_step()
        train_s += time.perf_counter() - t
        m, se = _evaluate(req["eval_paths"])
        trace.append({"steps": _state["steps"], "train_s": train_s, "elbo": m, "se": se})
        if m >= req["target"]:
            reached = trace[-1]
            break
    return {"reached": reached, "trace": trace, "train_s": train_s, "steps": _state["steps"]}


HANDLERS = {"setup": setup, "steps": steps, "elbo": elbo, "train_to": train_to}


if __name__ == "__main__":
    serve(lambda req: HANDLERS[req["cmd"]](req))
