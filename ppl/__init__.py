"""ppl — a probabilistic programming language compiled to JAX.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample("examples/eight_schools.json")
"""
# Process-wide JAX settings (float64; XLA flags for parallel chains and faster compiles):
# documented, and optional through PPL_X64=0 / PPL_XLA_FLAGS=0, in ppl/config.py. They are made
# without importing JAX, which is imported on first use of ppl.Model, ppl.compile or ppl.load:
# `import ppl` stays light, so the `ppl` command installs its signal handlers and checks its
# arguments before the second or so that importing JAX takes.
from .config import configure_jax

configure_jax()

__version__ = "0.1.0"

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]


def __getattr__(name):
    # loaded on first use: the API imports JAX, and even the error classes cost a tenth of a
    # second that the `ppl` command spends before its signal handlers are in place
    if name in ("Model", "compile", "load"):
        from . import api
        return getattr(api, name)
    if name == "PPLError":
        from .syntax.errors import PPLError
        return PPLError
    raise AttributeError(f"module 'ppl' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext ppl` in IPython/Jupyter: the `%%ppl NAME` cell magic (ppl/jupyter.py)."""
    from .jupyter import load_ipython_extension as load
    load(ipython)
