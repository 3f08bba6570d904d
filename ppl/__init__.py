"""ppl — a probabilistic programming language compiled to JAX."""
import jax

# Stan users expect double precision; exact evidence checks need it too.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
