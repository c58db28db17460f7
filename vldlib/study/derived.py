"""Values derived from a finished run's files (a student's R² against its teacher, its few-shot
retrieval accuracies), memoised beside the run so that a second reader (the summary page, a
re-executed chapter) does not load the student and encode the images again.

A memo is ``<run>/derived/<name>-<key>.json`` with a sha256 sidecar (:func:`vldlib.io.write_json_checked`).
Its key hashes the analysis's name and version, its parameters and the run's record, so a retrained
run, other parameters or a new version of the analysis compute afresh; a damaged memo is recomputed.
The run folder is the store's own, and a retrained run's folder is replaced as a whole (with its memos).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from vldlib.io import json_sha256, read_bytes_checked, write_json_checked
from vldlib.runs import RunStore

__all__ = ["DERIVED", "memoised"]

#: The folder of a run's memos.
DERIVED = "derived"


def memoised(store: RunStore, config: Mapping[str, Any], name: str, version: int,
             compute: Callable[[], Mapping[str, float]], params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``compute()`` (float values by name) for the finished run of ``config``, read from its memo
    when one matches, else computed and stored. ``version``: bump it when ``compute`` changes its
    numbers. A run not yet finished is computed without a memo (``compute`` trains it, if it does)."""
    record = store.get(config)
    if record is None:
        return dict(compute())
    key = json_sha256({"name": name, "version": version, "params": dict(params or {}), "record": json_sha256(record)})
    path = store.run_dir(config) / DERIVED / f"{name}-{key[:16]}.json"
    try:
        memo = json.loads(read_bytes_checked(path).decode("utf-8"))
        if isinstance(memo, dict) and memo.get("key") == key and isinstance(memo.get("values"), dict):
            return {k: math.nan if v is None else float(v) for k, v in memo["values"].items()}
    except (OSError, ValueError):  # missing, damaged (fails its sidecar) or not JSON: computed afresh
        pass
    values = {k: float(v) for k, v in compute().items()}
    try:
        write_json_checked(path, {"key": key, "name": name, "version": version, "params": dict(params or {}),
                                  "values": values})
    except OSError:  # a read-only or full run store: the values stand, unmemoised
        pass
    return values
