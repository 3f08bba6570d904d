"""Pure JAX inference algorithms, independent of the ppl language (like BlackJAX).

Every stage may import from here; nothing here imports a stage.
"""
