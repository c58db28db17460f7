"""The run store: one directory per training run, keyed by the hash of its full config.

``root/<hash>/`` holds ``config.json`` (written when the run starts), the trainer's per-epoch
checkpoints (so an interrupted run resumes where it stopped), the final student weights and
``record.json``, the result record (CLIP_benchmark style: one JSON record per run), written
atomically when the run finishes. A notebook asks the store for the runs it needs; finished ones
are read back, missing ones are trained, so re-executing the book costs only the changed runs.

Concurrency: records and CSVs are written atomically (:mod:`vldlib.io`), and each run
directory has a lock file held with ``fcntl.flock`` while the run
trains, so two papermill processes never train the same run at once (the second waits, then
reads the first one's record) and processes training different runs never touch each other.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from vldlib.core.losses import LOSS_NAMES
from vldlib.io import canonical_json, finite_json, replace_file, write_json_atomic, write_text_atomic
from vldlib.paths import default_results_root
import vldlib.train.distributed as dist
from vldlib.train.config import HASH_LEN, TrainConfig, config_hash
from vldlib.train.trainer import train_validated

__all__ = ["RunStore", "config_hash", "canonical_json", "record_row", "default_root", "HASH_LEN",
           "RECORD", "CONFIG"]

RECORD = "record.json"
CONFIG = "config.json"
LOCK = ".lock"


def default_root() -> Path:
    """The run store's default root: ``$VLD_RESULTS`` if set, else ``./results``."""
    return default_results_root()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released when the process dies, too)."""
    import fcntl  # noqa: PLC0415 - POSIX only; imported here so the module imports anywhere

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class RunStore:
    """Result records keyed by config hash under ``root`` (default: :func:`default_root`)."""

    def __init__(self, root: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.cache_dir = cache_dir

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def run_dir(self, config: Mapping[str, Any] | TrainConfig) -> Path:
        return self.root / config_hash(config)

    def get(self, config: Mapping[str, Any] | TrainConfig) -> dict[str, Any] | None:
        """The finished record of ``config``, or None if it has not been trained.

        A record that is malformed, belongs to another config (its ``hash`` or canonical config
        differs) or was trained with another thread count than the config's ``threads`` (its
        ``torch_threads``) counts as missing; the reason is said once on stderr."""
        cfg = TrainConfig.from_dict(config)
        return _read_record(self.root / config_hash(cfg) / RECORD, expect=cfg, say=True)

    def run(self, config: Mapping[str, Any] | TrainConfig, force: bool = False, *,
            progress: bool = True) -> dict[str, Any]:
        """Return the record of ``config``, training it first if it is not finished.

        A finished record is reused unless ``force=True``. With ``force`` the run trains from
        scratch in a fresh folder next to the run folder (``root/.<hash>.new/``); the finished
        record and weights stay in place until the new run completes, then its files are moved
        in (weights first, ``record.json`` last, each an atomic replace). An interrupt at any
        point leaves the old result readable. An unfinished run (checkpoints but no record,
        e.g. after an interruption) resumes from its last checkpoint.
        """
        cfg = TrainConfig.from_dict(config).validate()
        h = config_hash(cfg)
        run_dir = self.root / h
        if dist.active():
            return self._run_ranks(cfg, h, force, progress)
        if not force:
            found = _read_record(run_dir / RECORD, expect=cfg, say=True)
            if found is not None:
                return found
        with _locked(self.root / h / LOCK):
            if not force:
                found = _read_record(run_dir / RECORD, expect=cfg)  # another process may have finished it
                if found is not None:
                    return found
                work = run_dir
            else:
                work = self.root / f".{h}.new"
                if work.exists():  # an earlier forced run that did not finish: start it afresh
                    shutil.rmtree(work)
            write_json_atomic(work / CONFIG, {"hash": h, "config": cfg.to_dict()})
            cache_dir = self.cache_dir if self.cache_dir is not None else cfg.cache_dir
            record = train_validated(cfg, h, run_dir=work, cache_dir=cache_dir, progress=progress)
            record = finite_json({**record, "hash": h})  # returned exactly as stored
            write_json_atomic(work / RECORD, record)
            if work != run_dir:
                _swap_in(work, run_dir)
        return record

    def _run_ranks(self, cfg: TrainConfig, h: str, force: bool, progress: bool) -> dict[str, Any]:
        """:meth:`run` as one rank of a torchrun group: rank 0 takes the run's lock, decides
        (finished record or train), tells the others, and alone writes the config and the record;
        every rank trains (DDP), the others reading the checkpoint of ``root/<hash>`` to resume."""
        if not dist.is_main():
            decision = dist.broadcast_object()
            if decision["found"]:
                return _read_record(self.root / h / RECORD, expect=cfg) or decision["found"]
            cache_dir = self.cache_dir if self.cache_dir is not None else cfg.cache_dir
            record = train_validated(cfg, h, run_dir=Path(decision["work"]), cache_dir=cache_dir,
                                     progress=False)
            dist.barrier()  # rank 0 has written the record
            return finite_json({**record, "hash": h})
        run_dir = self.root / h
        with _locked(run_dir / LOCK):
            found = None if force else _read_record(run_dir / RECORD, expect=cfg, say=True)
            work = run_dir if not force else self.root / f".{h}.new"
            if found is None and force and work.exists():
                shutil.rmtree(work)
            if found is None:
                write_json_atomic(work / CONFIG, {"hash": h, "config": cfg.to_dict()})
            dist.broadcast_object({"found": found is not None and {"hash": h}, "work": str(work)})
            if found is not None:
                return found
            cache_dir = self.cache_dir if self.cache_dir is not None else cfg.cache_dir
            record = train_validated(cfg, h, run_dir=work, cache_dir=cache_dir, progress=progress)
            record = finite_json({**record, "hash": h})
            write_json_atomic(work / RECORD, record)
            if work != run_dir:
                _swap_in(work, run_dir)
        dist.barrier()
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every finished record under ``root``, in hash order."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.glob(f"*/{RECORD}")):
            if path.parent.name.startswith("."):  # unfinished forced runs
                continue
            rec = _read_record(path, say=True)
            if rec is not None:
                out.append(rec)
        return out

    def to_frame(self):
        """One row per finished run: ``hash``, the flattened config (``dataset_options.split_seed``,
        ``weights.cls``, ... with a weight column for every loss, 0 when off), the final metrics (``acc_id``, ``acc_ood_zeroshot``,
        ``acc_ood_5shot``, ...), ``analysis.*`` when computed, and timing columns."""
        rows = [record_row(rec) for rec in self.records()]
        return pd.DataFrame(rows)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_frame` as CSV atomically; returns the path."""
        path = Path(path)
        write_text_atomic(path, self.to_frame().to_csv(index=False))
        return path


def record_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one result record into a DataFrame row (see :meth:`RunStore.to_frame`)."""
    row: dict[str, Any] = {"hash": record.get("hash")}
    config = dict(record.get("config", {}))
    if isinstance(config.get("weights"), Mapping):  # every loss gets a column (0 = off)
        config["weights"] = {n: float(config["weights"].get(n, 0.0)) for n in LOSS_NAMES}
    row.update(_flatten(config))
    row.update(record.get("final", {}))
    if record.get("analysis"):
        row.update(_flatten(record["analysis"], "analysis."))
    per_class = record.get("per_class") or {}
    for metric, values in per_class.items():  # one column per (metric, unseen class)
        if metric != "classes" and values is not None:
            row.update({f"per_class.{metric}.{c}": v for c, v in zip(per_class["classes"], values)})
    for key, value in (record.get("timings") or {}).items():
        row[f"time.{key}"] = value
    row["device_used"] = record.get("device")
    row["teacher_forward_passes"] = record.get("teacher_forward_passes")
    return row


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, name + "."))
        elif isinstance(value, Mapping):
            continue
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


_SAID: set[tuple[str, str]] = set()


def _say_once(path: Path, reason: str) -> None:
    """Warn (a RuntimeWarning, shown on stderr) once per process, file and reason that a record is skipped."""
    key = (str(path), reason)
    if key in _SAID:
        return
    _SAID.add(key)
    message = f"vldlib: skipping run record {path}: {reason}; it counts as not trained (delete it or retrain)"
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _read_record(path: Path, *, expect: TrainConfig | None = None, say: bool = False) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing, malformed or (``expect`` given) of
    another config. ``say``: report a present-but-unusable record once on stderr."""
    try:
        with open(path, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):  # not trained (or the root is a file: said later)
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        if say:
            _say_once(path, f"unreadable or not valid JSON ({type(err).__name__}: {err})")
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("final"), Mapping):
        if say:
            _say_once(path, "not a result record (no 'final' metrics)")
        return None
    want = path.parent.name if expect is None else config_hash(expect)
    if rec.get("hash") != want or path.parent.name != want:
        if say:
            _say_once(path, f"its hash {rec.get('hash')!r} is not the folder's / requested {want!r}")
        return None
    if not isinstance(rec.get("config"), Mapping):
        if say:
            _say_once(path, "it holds no config")
        return None
    try:
        stored = config_hash(rec["config"])
        threads = TrainConfig.from_dict(rec["config"]).threads
    except (ValueError, TypeError, KeyError) as err:
        if say:
            _say_once(path, f"its config is invalid ({err})")
        return None
    if stored != want:
        if say:
            _say_once(path, f"its config hashes to {stored}, not {want}")
        return None
    if rec.get("torch_threads") != threads:  # trained before `threads` was part of the identity
        if say:
            _say_once(path, f"it was trained with {rec.get('torch_threads')!r} torch threads, the config "
                      f"asks for {threads} (the thread count changes the numbers)")
        return None
    return rec


def _swap_in(work: Path, run_dir: Path) -> None:
    """Move the files of a finished forced run from ``work`` into ``run_dir``.

    Everything but the record goes first (each an atomic replace), then ``record.json`` last, so
    that until the new record lands, the old one is served; stale files of the old run that the
    new one did not write (e.g. an old checkpoint) are removed after the record is in place."""
    run_dir.mkdir(parents=True, exist_ok=True)
    new_names = {p.name for p in work.iterdir()}
    for child in sorted(work.iterdir()):
        if child.name in (RECORD, LOCK):
            continue
        target = run_dir / child.name
        if child.is_dir():
            if target.exists():
                shutil.rmtree(target)
        replace_file(child, target)
    replace_file(work / RECORD, run_dir / RECORD)
    for child in run_dir.iterdir():
        if child.name not in new_names and child.name != LOCK:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.rmtree(work, ignore_errors=True)
