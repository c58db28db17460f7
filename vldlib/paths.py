"""Default locations: the cache root (teacher features, descriptions, exported models) and the
run store root. Environment variables win: ``VLD_CACHE``, ``VLD_RESULTS``."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "default_results_root"]


def default_cache_dir() -> Path:
    """``$VLD_CACHE`` if set, else the user cache dir (platformdirs) / "vldbook"."""
    env = os.environ.get("VLD_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir()) / "vldbook"


def default_results_root() -> Path:
    """``$VLD_RESULTS`` if set, else ``./results``."""
    return Path(os.environ.get("VLD_RESULTS") or "results")
