"""Independently known answers that tests compare inference results against.

- `oracles.posteriordb` — posteriordb reference posteriors from ../shared/data/posteriordb and
  the comparison rule posteriordb suggests.
- `oracles.conjugate` — closed-form posteriors and exact log evidence for conjugate models.
"""
