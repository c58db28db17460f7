"""The run store: one directory per training run, keyed by the hash of its full config.

``root/<hash>/`` holds ``config.json`` (written when the run starts), the trainer's per-epoch
checkpoints (so an interrupted run resumes where it stopped), the final student weights and
``record.json``, the result record (CLIP_benchmark style: one JSON record per run), written
atomically when the run finishes. A notebook asks the store for the runs it needs; finished ones
are read back, missing ones are trained, so re-executing the book costs only the changed runs.

Concurrency: records and CSVs are written atomically (:mod:`vldlib.io`), and each run has a
lock file ``root/.<hash>.lock`` held with ``fcntl.flock`` while the run trains, so two
papermill processes never train the same run at once (the second waits, then reads the first
one's record) and processes training different runs never touch each other.

A fresh run of a finished (``force``) or rejected record trains in ``root/.<hash>.new/`` and is
swapped in as a whole folder when it is complete (:func:`_swap_in`); ``root/.<hash>.old/`` left
by an interrupt is resolved at the next access.

Touching only its own (:mod:`vldlib.run_folders`): a side folder ``.<hash>.old`` / ``.<hash>.new``
is renamed or deleted only where ``<hash>`` is a run hash and the folder holds a ``config.json``
or ``record.json`` naming it; anything else in the root is left as it is. A run folder that is a
symbolic link is never deleted through: the link is removed, its target left untouched. Under a
run's lock, temp files of interrupted writes in its own folder are cleared.

Verified on read: each record has a sha256 sidecar ``record.json.sha256``
(:func:`vldlib.io.write_json_checked`); a record that does not match it (edited or damaged after
it was written) is said once and counts as not trained. Records written before the sidecars
(none beside them) are read as they are.
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
from vldlib.io import (SHA256_SUFFIX, canonical_json, finite_json, read_bytes_checked, replace_file,
                       write_json_atomic, write_json_checked, write_text_atomic)
from vldlib.paths import default_results_root
from vldlib.run_folders import CONFIG, SIDE_FOLDER, discard, names_run, only_temp_files, prepare_run_dir
import vldlib.train.distributed as dist
from vldlib.train.config import HASH_LEN, TrainConfig, config_hash, record_hash
from vldlib.train.trainer import CHECKPOINT, RECORD_FILE, damaged_weights, train_validated

__all__ = ["RunStore", "config_hash", "canonical_json", "record_row", "default_root", "HASH_LEN",
           "RECORD", "CONFIG"]

RECORD = RECORD_FILE  # "record.json", named once where the trainer reads it back beside the weights
LOCK = ".lock"
NEW = ".new"
OLD = ".old"


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
        h = config_hash(cfg)
        self._settle(h)
        found = _read_record(self.root / h / RECORD, expect=cfg, say=True)
        if found is None and (self.root / f".{h}{OLD}").exists():  # read during another process's swap
            self._settle(h)
            found = _read_record(self.root / h / RECORD, expect=cfg, say=True)
        return found

    def run(self, config: Mapping[str, Any] | TrainConfig, force: bool = False, *,
            progress: bool = True) -> dict[str, Any]:
        """Return the record of ``config``, training it first if it is not finished.

        A finished record is reused unless ``force=True``. With ``force``, and also when a record
        is present but rejected (malformed, of another config, trained under another thread
        count: :meth:`get`), the run trains from scratch in a fresh folder next to the run folder
        (``root/.<hash>.new/``), so that no checkpoint of the old run is resumed; the old folder
        stays in place until the new run completes, then the folders are swapped
        (:func:`_swap_in`). An interrupt at any point leaves the old result or the new one
        readable, never a mix. An unfinished run (checkpoints but no record, e.g. after an
        interruption) resumes from its last checkpoint.
        """
        cfg = TrainConfig.from_dict(config).validate()
        h = config_hash(cfg)
        run_dir = self.root / h
        if dist.active():
            return self._run_ranks(cfg, h, force, progress)
        self._settle(h)
        if not force:
            found = _read_record(run_dir / RECORD, expect=cfg, say=True)
            if found is not None:
                return found
        with _locked(self._lock(h)):
            _settle_locked(self.root, h)
            if not force:
                found = _read_record(run_dir / RECORD, expect=cfg)  # another process may have finished it
                if found is not None:
                    return found
            prepare_run_dir(run_dir, h)
            rejected = not force and _present(run_dir / RECORD)  # present, but not served above
            work = self._work_dir(h, fresh=force or rejected, say=rejected)
            write_json_atomic(work / CONFIG, {"hash": h, "config": cfg.to_dict()})
            cache_dir = self.cache_dir if self.cache_dir is not None else cfg.cache_dir
            record = train_validated(cfg, h, run_dir=work, cache_dir=cache_dir, progress=progress)
            record = _final_record(record, h, run_dir)  # returned exactly as stored
            write_json_checked(work / RECORD, record)
            if work != run_dir:
                _swap_in(work, run_dir)
        return record

    def verified_run_dir(self, config: Mapping[str, Any] | TrainConfig, *, progress: bool = True) -> Path:
        """The folder of the finished run of ``config`` (trained first if missing), its weight files
        checked against the sha256 its record holds: a damaged file is said (a warning naming it)
        and the run is retrained. For readers of the weights, e.g. the few-shot retrieval chapter.
        Records written before the digests are accepted as they are."""
        cfg = TrainConfig.from_dict(config).validate()
        run_dir = self.run_dir(cfg)
        record = self.run(cfg, progress=progress)
        bad = damaged_weights(record, run_dir)
        if bad:
            warnings.warn(f"vldlib: {', '.join(str(run_dir / n) for n in bad)} does not match the sha256 in "
                          f"{run_dir / RECORD} (the file is damaged); retraining the run", RuntimeWarning,
                          stacklevel=2)
            record = self.run(cfg, force=True, progress=progress)
            bad = damaged_weights(record, run_dir)
            if bad:
                raise ValueError(f"{run_dir / bad[0]} still does not match its record's sha256 after "
                                 "retraining; check the disk or the results folder")
        return run_dir

    def _lock(self, h: str) -> Path:
        """The lock file of run ``h``: next to its folder, so that it survives the folder swap."""
        return self.root / f".{h}{LOCK}"

    def _work_dir(self, h: str, *, fresh: bool, say: bool = False) -> Path:
        """Where run ``h`` trains: its folder, or (``fresh``) an emptied side folder ``.<hash>.new``;
        ``say``: warn that the checkpoint of the run's (rejected) folder is not resumed."""
        if not fresh:
            return self.root / h
        work = self.root / f".{h}{NEW}"
        if os.path.lexists(work):  # an earlier fresh run that did not finish: start it afresh
            if not (names_run(work, h) or only_temp_files(work)):
                raise FileExistsError(f"{work} is in the way of run {h} (it is not a folder of that run); "
                                      "move it out of the results folder, then run again")
            discard(work)
        stale = self.root / h / CHECKPOINT
        if say and stale.exists():
            warnings.warn(f"vldlib: not resuming {stale} (its run's record is rejected); training afresh "
                          f"in {work}, swapped in when finished", RuntimeWarning, stacklevel=3)
        return work

    def _settle(self, h: str) -> None:
        """Resolve, under the run's lock, a folder swap of run ``h`` that an interrupt stopped
        (only one that provably is the store's: :func:`_settle_locked`)."""
        if names_run(self.root / f".{h}{OLD}", h):
            with _locked(self._lock(h)):
                _settle_locked(self.root, h)

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
            return _final_record(record, h, self.root / h)
        run_dir = self.root / h
        with _locked(self._lock(h)):
            _settle_locked(self.root, h)
            found = None if force else _read_record(run_dir / RECORD, expect=cfg, say=True)
            work = run_dir
            if found is None:
                prepare_run_dir(run_dir, h)
                rejected = not force and _present(run_dir / RECORD)  # present, but not served above
                work = self._work_dir(h, fresh=force or rejected, say=rejected)
                write_json_atomic(work / CONFIG, {"hash": h, "config": cfg.to_dict()})
            dist.broadcast_object({"found": found is not None and {"hash": h}, "work": str(work)})
            if found is not None:
                return found
            cache_dir = self.cache_dir if self.cache_dir is not None else cfg.cache_dir
            record = train_validated(cfg, h, run_dir=work, cache_dir=cache_dir, progress=progress)
            record = _final_record(record, h, run_dir)
            write_json_checked(work / RECORD, record)
            if work != run_dir:
                _swap_in(work, run_dir)
        dist.barrier()
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every finished record under ``root``, in hash order."""
        if not self.root.is_dir():
            return []
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(self.root.glob(f"*/{RECORD}")):
            if path.parent.name.startswith("."):  # unfinished forced runs
                continue
            rec = _read_record(path, say=True)
            if rec is not None:
                out[path.parent.name] = rec
        for old in self.root.glob(f".*{OLD}"):  # a swap an interrupt stopped, or one begun while we listed
            side = SIDE_FOLDER.fullmatch(old.name)
            if side is None:  # not a run's side folder (e.g. a user's .photos.old): not ours
                continue
            h = side.group(1)
            self._settle(h)
            rec = None if h in out else _read_record(self.root / h / RECORD, say=True)
            if rec is not None:
                out[h] = rec
        return [out[h] for h in sorted(out)]

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
    dataset = record.get("dataset") or {}
    for key, classes in (("n_seen", "seen_classes"), ("n_unseen", "unseen_classes")):
        if isinstance(dataset.get(classes), list):  # the chance level of X_id / X_ood (1 / classes)
            row[key] = len(dataset[classes])
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
    """The record at ``path``, or None when it is missing, malformed, does not match its sha256
    sidecar (edited or damaged since it was written) or (``expect`` given) is of another config.
    A record without a sidecar (written before records had one) is read as it is.
    ``say``: report a present-but-unusable record once on stderr."""
    try:
        data = read_bytes_checked(path)
    except (FileNotFoundError, NotADirectoryError):  # not trained (or the root is a file: said later)
        return None
    except OSError as err:
        if say:
            _say_once(path, f"unreadable ({type(err).__name__}: {err})")
        return None
    except ValueError:
        if say:
            _say_once(path, f"it does not match the sha256 in {path.name}{SHA256_SUFFIX} (edited or damaged "
                      "after it was written)")
        return None
    try:
        rec = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
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
        stored = record_hash(rec)  # its config and the inputs it recorded (no file is read)
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


def _present(path: Path) -> bool:
    """Whether a file is at ``path`` (a folder in the way, or an unreadable parent, counts as no)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _final_record(record: Mapping[str, Any], h: str, run_dir: Path) -> dict[str, Any]:
    """The record as stored: strict JSON, the run's hash, and ``run_dir`` naming the final folder
    (not the side folder ``.<hash>.new`` a fresh run trained in)."""
    out = {**record, "hash": h}
    if "run_dir" in out:
        out["run_dir"] = str(run_dir)
    return finite_json(out)


def _swap_in(work: Path, run_dir: Path) -> None:
    """Put the finished fresh run in ``work`` (``.<hash>.new``, its record written last) in place
    of ``run_dir``: rename ``run_dir`` to ``.<hash>.old``, ``work`` to ``run_dir``, then delete
    ``.<hash>.old``. Each rename is atomic; an interrupt between them is resolved at the next
    access by :func:`_settle_locked` (the complete new run wins, else the old one is put back).
    A ``run_dir`` that is a link is replaced (the link removed, its target left as it is); a
    ``.<hash>.old`` that is not the run's (:func:`names_run`) is a one-line error, not deleted."""
    h = run_dir.name
    old = run_dir.parent / f".{h}{OLD}"
    if os.path.lexists(old):
        if not names_run(old, h):
            raise FileExistsError(f"{old} is in the way of run {h}'s folder swap (it is not a folder of "
                                  "that run); move it out of the results folder, then run again")
        discard(old)
    if run_dir.is_symlink():
        warnings.warn(f"vldlib: run folder {run_dir} is a link to {os.readlink(run_dir)}; the fresh run "
                      "replaces the link, the link's target is left as it is", RuntimeWarning, stacklevel=3)
    if os.path.lexists(run_dir):
        replace_file(run_dir, old)
    replace_file(work, run_dir)
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def _settle_locked(root: Path, h: str) -> None:
    """Finish a folder swap of run ``h`` that an interrupt stopped (the caller holds its lock).

    ``.<hash>.old`` present (and provably run ``h``'s: :func:`names_run`) means :func:`_swap_in`
    did not finish: with the run folder missing, the new run (``.<hash>.new`` of run ``h``, with
    its record) is moved in, or, if it is incomplete, the old folder is moved back; with the run
    folder present, only ``.<hash>.old`` is left to delete (a link: unlinked, never its target)."""
    run_dir, new, old = root / h, root / f".{h}{NEW}", root / f".{h}{OLD}"
    if not names_run(old, h):
        return
    if not os.path.lexists(run_dir):
        replace_file(new if _present(new / RECORD) and names_run(new, h) else old, run_dir)
    if old.is_symlink():
        old.unlink()
    elif os.path.lexists(old):
        shutil.rmtree(old, ignore_errors=True)
