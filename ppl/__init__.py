"""ppl — a probabilistic programming language compiled to JAX.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample("examples/eight_schools.json")
"""
# Process-wide JAX settings (float64; XLA flags for parallel chains and faster compiles):
# documented, and optional through PPL_X64=0 / PPL_XLA_FLAGS=0, in ppl/config.py.
from .config import configure_jax

configure_jax()

__version__ = "0.1.0"

from .api import Model, compile, load  # noqa: E402
from .syntax.errors import PPLError  # noqa: E402

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]


def load_ipython_extension(ipython):
    """`%load_ext ppl` in IPython/Jupyter: the `%%ppl NAME` cell magic (ppl/jupyter.py)."""
    from .jupyter import load_ipython_extension as load
    load(ipython)
