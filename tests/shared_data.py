"""Where the shared test data (real faces, model files) is, for tests that need it.

The data lives beside the repository in ``../shared`` (never inside it: the face sets may not be redistributed);
``FACEVAL_SHARED`` points elsewhere. A user's clone has no such folder, so those tests skip, unless
``FACEVAL_REQUIRE_SHARED=1`` (CI with the data) turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from faceval.sources.images import load_rgb

# A few faces YuNet and dlib both find, from three sets: 160 px crops, 112 px aligned crops, a 640x400 photo.
SAMPLE_FACES = (
    "faces/kpop_idols15/irene/2HEvptB.jpg",
    "faces/kpop_idols15/arin/1yELpfx.jpg",
    "faces/kpop_idols15/chaeyong/21ca039.jpg",
    "faces/glint360k_celeb24_sample/Barack_Obama/Barack_Obama_107.png",
    "faces/glint360k_celeb24_sample/Halle_Berry/Halle_Berry_2071.png",
    "faces/glint360k_celeb24_sample/Hugh_Laurie/Hugh_Laurie_3358.png",
    "faces/nogizaka46_shozend/hashimoto_nanami/hashimoto_nanami_000.jpg",
)


def _missing(message: str) -> None:
    if os.environ.get("FACEVAL_REQUIRE_SHARED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def shared_dir() -> Path:
    """The shared data folder, or skip (fail under ``FACEVAL_REQUIRE_SHARED=1``) when it is absent."""
    folder = Path(os.environ.get("FACEVAL_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    if not folder.is_dir():
        _missing(f"shared test data not present: {folder} (../shared beside the repository, or FACEVAL_SHARED)")
    return folder


def shared_file(relative: str) -> Path:
    """A file or folder inside the shared data, or skip/fail as `shared_dir` does when it is missing."""
    path = shared_dir() / relative
    if not path.exists():
        _missing(f"shared test data not present: {path}")
    return path


def sample_faces(count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` of `SAMPLE_FACES` as RGB arrays (all of them by default)."""
    return [load_rgb(shared_file(relative)) for relative in SAMPLE_FACES[:count]]
