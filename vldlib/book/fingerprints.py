"""The fingerprint cache: what each executed notebook was made from (its source, its parameters,
the library's sources, the run store as it was when the notebook's turn came), kept in
``<executed>/.fingerprints.json``, so that a build re-executes only the notebooks whose inputs
changed and a warm ``make book`` takes seconds."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vldlib.book.contents import ROOT
from vldlib.book.planning import NotebookSource
from vldlib.io import write_json_atomic

FINGERPRINTS = ".fingerprints.json"  # executed_dir: what each executed notebook was made from


def library_digest(root: Path = ROOT) -> str:
    """sha256 of the library's sources and resources (anything that can change a notebook's output)."""
    h = hashlib.sha256()
    pkg = root / "vldlib"
    for path in sorted(p for p in pkg.rglob("*") if p.is_file() and p.suffix in (".py", ".json")
                       and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def store_digest(results_dir: str | Path) -> str:
    """sha256 of the run store's state: every finished record's folder, size and modification time."""
    h = hashlib.sha256()
    root = Path(results_dir) if Path(results_dir).is_absolute() else ROOT / results_dir
    for record in sorted(root.glob("*/record.json")) if root.is_dir() else []:
        st = record.stat()
        h.update(f"{record.parent.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def fingerprint(src: NotebookSource, params: Mapping[str, Any], library: str, store: str) -> str:
    """What an executed notebook depends on: its source, its parameters, the library, the run store."""
    text = src.path.read_text(encoding="utf-8")
    blob = json.dumps({"source": text, "params": dict(params), "library": library, "store": store},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def unchanged(src: NotebookSource, params: Mapping[str, Any], executed_dir: Path, known: Mapping[str, str],
              library: str, store: str) -> bool:
    """True when ``executed_dir/<name>.ipynb`` was made from exactly these inputs (nothing to re-execute)."""
    return ((executed_dir / f"{src.name}.ipynb").is_file()
            and known.get(src.name) == fingerprint(src, params, library, store))


def save_fingerprint(executed_dir: Path, known: Mapping[str, str], src: NotebookSource,
                     params: Mapping[str, Any], library: str, store: str) -> dict[str, str]:
    """Record (atomically) what notebook ``src`` was just executed from: ``store`` is the run store's
    digest taken *before* it executed (runs that arrived while it ran, from another process's
    training or its own, may be missing from its pages: the next build executes it again).
    Called after every notebook, so that an interrupt keeps the finished ones."""
    known = {**known, src.name: fingerprint(src, params, library, store)}
    write_json_atomic(executed_dir / FINGERPRINTS, known)
    return known
