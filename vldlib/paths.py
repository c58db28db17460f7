"""Default locations: the cache root (teacher features, descriptions, exported models) and the
run store root, the folder of downloadable tables. Environment variables win: ``VLD_CACHE``,
``VLD_RESULTS``, ``VLD_DOWNLOADS``."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "default_results_root", "default_downloads_dir"]


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


def default_downloads_dir(results_dir: str | os.PathLike) -> Path:
    """Where chapters write their tables as CSV: ``$VLD_DOWNLOADS`` if set (the book driver sets it
    to the folder that lands in the built HTML), else ``<results_dir>/downloads``."""
    env = os.environ.get("VLD_DOWNLOADS")
    return Path(env).expanduser() if env else Path(results_dir) / "downloads"
