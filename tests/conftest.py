"""Test-wide settings: the suite never touches the user's own cache (embedding store, models, demo data)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.delenv("FACEVAL_MODELS_DIR", raising=False)
        yield cache
