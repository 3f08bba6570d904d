"""ppl — a probabilistic programming language compiled to JAX.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample("examples/eight_schools.json")
"""
import jax

# Stan users expect double precision; exact evidence checks need it too.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from .api import Model, compile, load  # noqa: E402
from .syntax.errors import PPLError  # noqa: E402

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]
