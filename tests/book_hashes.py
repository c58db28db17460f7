"""The run hashes of every config the default book trains, for the pin in ``tests/data/book_hashes.json``.

Every chapter of :data:`vldlib.study.chapters.CHAPTERS` is opened under the ``offline``, ``smoke``
and ``paper`` profiles with its default parameters and each config of its grid hashed with
:func:`vldlib.train.config.config_hash`. The ``paper`` profile needs an official data root: a tiny
one is written, and its configs are hashed with ``inputs={}`` (their canonical config alone, the
data's location left out), so the pin does not depend on that folder. The fixture maps each hash to
the identity it was computed over, so a changed hash can be traced to the field that moved.

Regenerate (only on purpose, it is the guard that no user's run store is invalidated)::

    PYTHONPATH=. python tests/book_hashes.py
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from vldlib.models.teachers import MissingWeightsError
from vldlib.study.chapters import CHAPTERS, open_chapter
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.inputs import LOCATION_OPTIONS

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import write_tiny_official_root  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "book_hashes.json"
PROFILES: tuple[str, ...] = ("offline", "smoke", "paper")


@contextlib.contextmanager
def bf16_machine() -> Iterator[None]:
    """Build configs as on a CPU that computes bf16 natively (``precision="auto"`` -> ``"bf16"``)."""
    with mock.patch("vldlib.device.cpu_bf16_native", return_value=True):
        yield


def book_configs(workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """``{profile: [config, ...]}``: every config the book's chapters run under each profile."""
    root = write_tiny_official_root(workdir / "official", per_class=8, size=8)
    out: dict[str, list[dict[str, Any]]] = {}
    for profile in PROFILES:
        params: dict[str, Any] = {"profile": profile, "results_dir": str(workdir / "results")}
        if profile == "paper":
            params["dataset_root"] = str(root)
        configs = []
        for name in CHAPTERS:
            try:
                with contextlib.redirect_stdout(io.StringIO()), bf16_machine():
                    ch = open_chapter(name, **params)
            except MissingWeightsError:  # a chapter that reads the teacher itself and trains no run
                continue
            configs.extend(cfg for _, cfg in ch.grid.configs)
        out[profile] = configs
    return out


def book_hashes() -> dict[str, dict[str, Any]]:
    """``{profile: {hash: the canonical config it was hashed from}}`` (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        configs = book_configs(Path(tmp))
    out: dict[str, dict[str, Any]] = {}
    for profile, cfgs in configs.items():
        hashes: dict[str, Any] = {}
        for cfg in cfgs:
            inputs = {} if profile == "paper" else None
            canon = TrainConfig.from_dict(cfg).canonical()
            canon["dataset_options"] = {k: v for k, v in canon["dataset_options"].items()
                                        if k not in LOCATION_OPTIONS}
            hashes[config_hash(cfg, inputs)] = canon
        out[profile] = dict(sorted(hashes.items()))
    return out


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(book_hashes(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
