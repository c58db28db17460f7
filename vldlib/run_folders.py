"""Which entries of a results folder are the run store's own (:mod:`vldlib.runs`).

The store renames or deletes only what it can prove it made: a run's side folder
``.<hash>.old`` / ``.<hash>.new`` (``<hash>``: 16 hex digits, :data:`SIDE_FOLDER`) holding a
``config.json`` or ``record.json`` that names that hash (:func:`names_run`), and, in such a run
folder, the temp files of interrupted atomic writes (:data:`vldlib.io.TEMP_FILE`). A folder that
is a symbolic link is unlinked, never deleted through (:func:`discard`).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from vldlib.io import temp_target, try_read_json
from vldlib.train.config import HASH_LEN
from vldlib.train.trainer import RECORD_FILE

__all__ = ["CONFIG", "SIDE_FOLDER", "names_run", "only_temp_files", "discard", "prepare_run_dir"]

#: A run folder's config, written when the run starts: ``{"hash": ..., "config": ...}``.
CONFIG = "config.json"
#: ``.<hash>.old`` / ``.<hash>.new``: the side folders of a run's folder swap (group 1: the hash).
SIDE_FOLDER = re.compile(rf"\.([0-9a-f]{{{HASH_LEN}}})(\.old|\.new)")


def names_run(folder: Path, h: str) -> bool:
    """Whether ``folder`` provably is a folder of run ``h`` that the store made: it holds a
    ``config.json`` (written when the run starts) or a ``record.json`` whose ``hash`` is ``h``."""
    for name in (CONFIG, RECORD_FILE):
        found = try_read_json(folder / name)
        if isinstance(found, Mapping) and found.get("hash") == h:
            return True
    return False


def only_temp_files(folder: Path) -> bool:
    """Whether ``folder`` is a real folder holding nothing but temp files of interrupted writes
    (a fresh run interrupted before its ``config.json`` was written)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(temp_target(p.name) is not None and p.is_file() for p in folder.iterdir())


def discard(path: Path) -> None:
    """Delete a folder the store proved its own; a link is unlinked, its target never touched."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


def prepare_run_dir(run_dir: Path, h: str) -> None:
    """Before run ``h`` writes in ``run_dir`` (under its lock): a link to nowhere is a one-line
    error; temp files that interrupted writes left in the run's own folder are removed."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise FileNotFoundError(f"run folder {run_dir} is a link to {os.readlink(run_dir)}, which does not "
                                "exist; restore its target or remove the link, then run again")
    if not names_run(run_dir, h):
        return
    for entry in run_dir.iterdir():
        if temp_target(entry.name) is not None and not entry.is_symlink() and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
