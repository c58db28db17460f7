"""The chapter contract (issue 20): every chapter declared once, the same API for all of them.

The guard: every chapter builds the same configs as before the contract (the set of its runs'
config hashes with their row labels, under the offline and smoke profiles, pinned in
``tests/chapter_configs.json``), so no run store is invalidated and every table reads the same runs."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from vldlib.study import chapters
from vldlib.train.config import config_hash

PINNED = Path(__file__).with_name("chapter_configs.json")
PROFILES = ("offline", "smoke")


def chapter_configs(name: str, profile: str) -> list[list]:
    """Every run of chapter ``name``'s grid under ``profile``: [row label, seed, split seed, hash], sorted."""
    with contextlib.redirect_stdout(io.StringIO()):
        ch = chapters.open_chapter(name, profile=profile, results_dir="/tmp/unused")
    column = ch.chapter.column
    return sorted([str(labels.get(column)), labels.get("seed"), labels.get("split_seed"), config_hash(cfg)]
                  for labels, cfg in ch.grid.configs)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_chapter_builds_the_pinned_configs(profile):
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert set(chapters.CHAPTERS) == set(pinned)
    for name in chapters.CHAPTERS:
        assert chapter_configs(name, profile) == pinned[name][profile], name


if __name__ == "__main__":  # regenerate the pin (only when a change of configs is intended)
    PINNED.write_text(json.dumps({n: {p: chapter_configs(n, p) for p in PROFILES} for n in chapters.CHAPTERS},
                                 indent=1) + "\n", encoding="utf-8")
