"""Reference SDE problems with exact answers (../shared/data/sde/*.json, see its README).

``load(name)`` returns the file's contents, or skips the calling test with a clear reason when
the shared data is absent. ``PPL_SHARED_DATA`` overrides where ``shared/data`` is looked for
(default: ``shared/data`` beside the project root, as the ``shared_data`` fixture does).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root() -> Path:
    return Path(os.environ.get("PPL_SHARED_DATA", _DEFAULT_ROOT))


def load(name: str) -> dict:
    path = data_root() / "sde" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"reference data {path} not found (../shared is absent; PPL_SHARED_DATA "
                    f"points elsewhere)")
    return json.loads(path.read_text())
