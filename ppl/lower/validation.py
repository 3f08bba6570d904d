"""The one comparison every translation validation makes."""
from __future__ import annotations

import numpy as np

from ..syntax.errors import PPLInternalError


def check_agreement(ours: float, reference: float, what: str, rtol: float = 1e-6,
                    atol: float = 1e-8) -> float:
    """|ours - reference| (0 when both are -inf); a PPLInternalError when they disagree.

    `what` names the two quantities, e.g. "the lowered log density against numpyro's"."""
    ours, reference = float(ours), float(reference)
    if not (np.isfinite(ours) and np.isfinite(reference)):
        if np.isfinite(ours) != np.isfinite(reference) or (np.isnan(ours) or np.isnan(reference)):
            raise PPLInternalError(f"translation validation failed: {what}: {ours!r} against "
                                   f"{reference!r} at a random point")
        return 0.0
    diff = abs(ours - reference)
    if diff > rtol * max(1.0, abs(reference)) + atol:
        raise PPLInternalError(f"translation validation failed: {what}: {ours!r} against {reference!r} "
                               f"at a random point (difference {ours - reference:.3g})")
    return diff
