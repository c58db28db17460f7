"""Checks made once before any run of a command starts: what would otherwise fail every run
separately, minutes in (the command line and the book driver's up-front training call it).

:func:`preflight` runs each check below on the configs of the runs to train.
:func:`check_report_to` (:mod:`vldlib.train.reporting`): the package ``report_to`` needs is
installed. :func:`check_teacher_weights`: the open_clip weights of every distinct teacher the runs need are
on this machine (downloaded here once when online); missing ones are one ``ValueError`` whose
message ends with the whole fix, the local-checkpoint override in the caller's syntax included
(:data:`CHECKPOINT_FIXES`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vldlib.features import TEACHER_META, teacher_meta_path
from vldlib.models.specs import teacher_spec
from vldlib.models.teachers import (PYTHON_CHECKPOINT_FIX, MissingWeightsError, ensure_openclip_weights,
                                    openclip_needs_weights)
from vldlib.paths import default_cache_dir
from vldlib.train.config import TrainConfig
from vldlib.train.reporting import check_report_to

__all__ = ["CHECKPOINT_FIXES", "check_teacher_weights", "preflight"]

#: How each caller sets a local open_clip checkpoint instead of a pretrained tag.
CHECKPOINT_FIXES: dict[str, str] = {
    "python": PYTHON_CHECKPOINT_FIX,
    "cli": "--set teacher_options.pretrained=/path/to/checkpoint.pt",
    "book": "-p overrides '{\"teacher_options\": {\"pretrained\": \"/path/to/checkpoint.pt\"}}'",
}
#: open_clip's defaults in :class:`vldlib.models.teachers.OpenCLIPTeacher`.
_DEFAULT_MODEL, _DEFAULT_TAG = "ViT-L-14", "openai"


def check_teacher_weights(configs: Iterable[Mapping[str, Any] | TrainConfig], *,
                          cache_dir: str | os.PathLike | None = None, syntax: str = "python",
                          finished: Callable[[Mapping[str, Any] | TrainConfig], bool] | None = None) -> None:
    """Raise one ``ValueError`` (the whole fix, ``syntax`` one of :data:`CHECKPOINT_FIXES`) when an
    open_clip teacher of ``configs`` needs registered weights that are not on this machine.

    Skipped for runs that cannot need the weights: ``finished(config)`` true (a stored record), or
    the teacher already loaded once with this feature cache (``cache_dir``, else the config's, else
    the default; its features may all be cached, and then the teacher is never built)."""
    if syntax not in CHECKPOINT_FIXES:
        raise ValueError(f"unknown syntax {syntax!r}; valid: {', '.join(CHECKPOINT_FIXES)}")
    checked: set[tuple[str, str, str | None]] = set()
    for config in configs:
        cfg = TrainConfig.from_dict(config)
        if not teacher_spec(cfg.teacher).downloads_weights:
            continue
        opts = cfg.teacher_options
        model, tag = str(opts.get("model", _DEFAULT_MODEL)), opts.get("pretrained", _DEFAULT_TAG)
        if not openclip_needs_weights(model, tag):
            continue
        key = (model, str(tag), opts.get("cache_dir"))
        if key in checked:
            continue
        cache = Path(cache_dir or cfg.cache_dir or default_cache_dir())
        if teacher_meta_path(cfg.teacher, opts, cache / TEACHER_META).is_file():
            continue
        if finished is not None and finished(config):
            continue
        checked.add(key)
        try:
            ensure_openclip_weights(model, str(tag), opts.get("cache_dir"))
        except MissingWeightsError as err:
            raise ValueError(err.with_fix(CHECKPOINT_FIXES[syntax])) from None


def preflight(configs: Iterable[Mapping[str, Any] | TrainConfig], *, cache_dir: str | os.PathLike | None = None,
              syntax: str = "python", finished: Callable[[Mapping[str, Any] | TrainConfig], bool] | None = None) -> None:
    """Every check of this module on ``configs`` (arguments as :func:`check_teacher_weights`);
    the first problem is one ``ValueError`` / ``ImportError`` whose message ends with its fix."""
    configs = list(configs)
    for report_to in dict.fromkeys(TrainConfig.from_dict(c).report_to for c in configs):
        try:
            check_report_to(report_to)
        except ImportError as err:  # said like every other setting the user can fix
            raise ValueError(str(err)) from None
    check_teacher_weights(configs, cache_dir=cache_dir, syntax=syntax, finished=finished)
