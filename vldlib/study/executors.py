"""Where the missing runs of a grid train: the ``local`` and ``ray`` executors of :func:`run_grid`.

- ``local`` (default): this machine. On CPU the runs are trained by a pool of spawned processes,
  one torch thread each (the thread count is what makes a run's numbers independent of the worker
  count); on a GPU one at a time in this process.
- ``ray``: each missing run is one Ray task (``ray.init(address=...)``: a local Ray on this machine
  when ``address`` is None, or an existing cluster, e.g. ``"auto"`` or ``"ray://head:10001"``).
  A run that trains on a GPU reserves ``num_gpus=1`` (an 8-GPU box trains 8 runs at once); a CPU
  run reserves ``num_cpus`` = its thread count (:func:`run_threads`) and trains with that many torch
  threads, so its numbers equal the local executor's. The teacher-feature cache is warmed once per
  dataset before the fan-out, as a task of its own. Results and caches must be on a filesystem
  every node sees; the run store's per-run locks (:mod:`vldlib.runs`) keep two grids (or two
  nodes) from training the same config twice. A cluster that does not answer within
  ``$VLD_RAY_CONNECT_TIMEOUT`` seconds (30) and a run needing more CPUs or GPUs than any node has
  (it would never be scheduled) are errors naming the address or the resource, raised before
  anything is submitted; a local Ray started here dies with this process, SIGKILL included
  (:mod:`vldlib.study.raywatch`).

Both executors report a failed run by name with its error and let the others finish
(:class:`GridRunError` afterwards, listing every failure). Ray is an optional dependency: asking
for ``executor="ray"`` without it installed is an ``ImportError`` naming the extra
(``pip install 'vldbook[ray]'``).
"""
from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vldlib.data import load_dataset, student_train_transform
from vldlib.features import LazyTeacher, proxy_caption_classes, teacher_image_features, teacher_view_features
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress, progress_default, progress_stream
from vldlib.runs import RunStore
from vldlib.study import raywatch
from vldlib.text.captions import PROXY_CAPTION_TOP
from vldlib.train.config import TrainConfig, resolve_workers
from vldlib.train.views import view_spec

__all__ = ["EXECUTORS", "RAY_EXTRA", "Job", "RunFailure", "GridRunError", "run_threads", "data_key",
           "warm_teacher_features", "view_counts", "describe_error", "import_ray", "ray_init", "execute", "check_executor",
           "CONNECT_TIMEOUT_S", "RayUnavailable", "connect_timeout_s", "ray_endpoint", "check_ray_resources"]

EXECUTORS: tuple[str, ...] = ("local", "ray")
#: What to install for the Ray executor.
RAY_EXTRA = "pip install 'vldbook[ray]'"
#: Environment variables handed to the Ray workers of a cluster (a local Ray inherits them).
FORWARDED_ENV: tuple[str, ...] = ("VLD_CACHE", "VLD_RESULTS", "VLD_DATA", "HF_HUB_OFFLINE", "PYTHONPATH")
#: How long to wait for a Ray cluster to answer (``$VLD_RAY_CONNECT_TIMEOUT`` overrides it), seconds.
CONNECT_TIMEOUT_S = 30.0


class RayUnavailable(RuntimeError):
    """Ray could not be started or reached (the message names the address and the fix)."""


@dataclass(frozen=True)
class Job:
    """One run to train: its position in the grid, a display name and its config."""

    index: int
    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class RunFailure:
    """A run that failed: its name, config hash and the error (type and message)."""

    name: str
    hash: str
    error: str


class GridRunError(RuntimeError):
    """Some runs of a grid failed (the others finished and are in the run store)."""

    def __init__(self, failures: Sequence[RunFailure], finished: int) -> None:
        self.failures = list(failures)
        lines = [f"  {f.name} (run {f.hash}): {f.error}" for f in self.failures]
        super().__init__(f"{len(self.failures)} run(s) failed ({finished} finished and are stored); "
                         "fix the cause and run the grid again to train only these:\n" + "\n".join(lines))
        self.finished = finished

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.failures, self.finished)


def check_executor(executor: str) -> str:
    """``executor`` if it is one of :data:`EXECUTORS`, else a ValueError listing them."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    return executor


def run_threads(config: Mapping[str, Any]) -> int:
    """The torch thread count a run trains with (its hashed ``threads`` field, default 1): what
    a Ray CPU task reserves as ``num_cpus`` (the trainer applies it with ``set_num_threads``)."""
    value = config.get("threads")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def data_key(config: Mapping[str, Any]) -> str:
    """The teacher-feature identity of a run (dataset, its options, teacher, its options)."""
    return json.dumps([config["dataset"], config["dataset_options"], config["teacher"],
                       config["teacher_options"]], sort_keys=True, default=str)


def warm_teacher_features(config: Mapping[str, Any], cache_dir: str | os.PathLike | None = None, *,
                          proxy_captions: bool = False, views: Sequence[int] = (), progress: bool = False,
                          teachers: dict[str, LazyTeacher] | None = None) -> None:
    """Compute (or find cached) the teacher image features of every split of ``config``'s dataset,
    exactly as the trainer caches them, so that parallel workers never encode the same images;
    with ``proxy_captions`` also the proxy captioner's classes of X_train (L_cap runs); for each
    count in ``views`` the teacher's embeddings of that many stored views of each X_train image
    (``teacher_views`` runs); ``progress``: lines tagged ``teacher`` (:mod:`vldlib.progress`);
    ``teachers``: the caller's teachers by identity, kept between calls (a teacher is built once for
    the warm-up of several class splits, each of which may hold images not yet encoded)."""
    opts = dict(config["dataset_options"])
    root = opts.pop("root", None)
    ds = load_dataset(config["dataset"], root=root, **opts)
    cache = Path(cache_dir or config.get("cache_dir") or default_cache_dir())
    known = {} if teachers is None else teachers
    who = json.dumps([config["teacher"], config["teacher_options"], str(cache)], sort_keys=True, default=str)
    if who not in known:
        for other in known.values():  # at most one teacher's weights held at a time
            other.release()
        known[who] = LazyTeacher.in_cache(config["teacher"], config["teacher_options"], cache)
    teacher = known[who]
    log = Progress("teacher", progress_stream(progress))
    workers = resolve_workers(config.get("num_workers") or 0)
    for split in ds.splits.values():
        teacher_image_features(teacher, split, dataset_id=ds.name, cache_dir=cache,
                               num_workers=workers, progress=log)
    if proxy_captions:
        proxy_caption_classes(teacher, ds.train, dataset_id=ds.name, top=PROXY_CAPTION_TOP, cache_dir=cache,
                              progress=log)
    transform = student_train_transform(ds, per_image=bool(config.get("per_image_aug", True)))
    for count in views:
        teacher_view_features(teacher, ds.train, view_spec(count, ds.train.load_size, transform), dataset_id=ds.name,
                              cache_dir=cache, progress=log)


def needs_proxy_captions(jobs: Sequence["Job"]) -> bool:
    """Whether any of ``jobs`` trains L_cap with the proxy captioner (its caption cache is warmed too)."""
    return any(TrainConfig.from_dict(j.config).caption_source() == "proxy" for j in jobs)


def view_counts(jobs: Sequence["Job"]) -> tuple[int, ...]:
    """The stored-view counts (``teacher_views`` > 0) that ``jobs`` train with (their teacher
    embeddings are warmed with the features)."""
    return tuple(sorted({int(j.config.get("teacher_views") or 0) for j in jobs} - {0}))


def describe_error(exc: BaseException) -> str:
    """One line for a failed run's error (the task's own exception for a Ray task error)."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's exception
    first = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {first[0] if first else ''}"[:500]


def _train_one(root: str, cache_dir: str | None, config: dict, threads: int = 1, progress: bool = False) -> dict:
    torch.set_num_threads(threads)
    return RunStore(root, cache_dir=cache_dir).run(config, progress=progress)


def _warm_one(config: dict, cache_dir: str | None, threads: int = 1, proxy_captions: bool = False,
              views: Sequence[int] = ()) -> None:
    torch.set_num_threads(threads)
    warm_teacher_features(config, cache_dir, proxy_captions=proxy_captions, views=views)


def _worker_init() -> None:
    torch.set_num_threads(1)


Done = Callable[[Job, dict], None]
Failed = Callable[[Job, BaseException], None]


def execute(executor: str, store: RunStore, jobs: Sequence[Job], *, workers: int | None = None,
            progress: bool = False, ray_address: str | None = None, done: Done, failed: Failed) -> None:
    """Train ``jobs`` with ``executor``, calling ``done(job, record)`` or ``failed(job, error)``
    for each as it finishes (in completion order)."""
    check_executor(executor)
    if not jobs:
        return
    progress = progress_default(progress)  # the book driver's pool: every run's lines in its terminal
    if executor == "ray":
        _execute_ray(store, jobs, ray_address, done, failed)
    else:
        _execute_local(store, jobs, workers, progress, done, failed)


# ---------------------------------------------------------------------- local
def _execute_local(store: RunStore, jobs: Sequence[Job], workers: int | None, progress: bool,
                   done: Done, failed: Failed) -> None:
    cpu = all(j.config.get("device") == "cpu" for j in jobs)
    if workers is None:  # the cores divided by the largest thread count of the runs
        threads = max((run_threads(j.config) for j in jobs), default=1)
        workers = max(1, (os.cpu_count() or 1) // threads) if cpu else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cache_dir = None if store.cache_dir is None else str(store.cache_dir)
    if cpu:
        warmed = _warm_locally(jobs, cache_dir, failed, progress)
        jobs = [j for j in jobs if data_key(j.config) in warmed]
    if cpu and workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(_train_one, str(store.root), cache_dir, j.config, run_threads(j.config),
                                   progress): j
                       for j in jobs}
            for fut in as_completed(futures):
                try:
                    record = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported by name, the others go on
                    failed(futures[fut], exc)
                else:
                    done(futures[fut], record)
        return
    for job in jobs:  # the trainer applies each run's ``threads``
        try:
            record = store.run(job.config, progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported by name, the others go on
            failed(job, exc)
        else:
            done(job, record)


def _warm_locally(jobs: Sequence[Job], cache_dir: str | None, failed: Failed, progress: bool = False) -> set[str]:
    """Warm the feature cache once per data key; the keys that worked (runs of the others fail)."""
    ok: set[str] = set()
    teachers: dict[str, LazyTeacher] = {}  # each teacher built at most once for all the datasets' warm-ups
    for key in dict.fromkeys(data_key(j.config) for j in jobs):
        same = [j for j in jobs if data_key(j.config) == key]
        try:
            warm_teacher_features(same[0].config, cache_dir, proxy_captions=needs_proxy_captions(same),
                                  views=view_counts(same), progress=progress, teachers=teachers)
        except Exception as exc:  # noqa: BLE001
            for j in jobs:
                if data_key(j.config) == key:
                    failed(j, exc)
        else:
            ok.add(key)
    return ok


# ---------------------------------------------------------------------- ray
def import_ray():
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ImportError(f"executor='ray' needs Ray, which is not installed here: {RAY_EXTRA} "
                          "(or use executor='local')") from None


def ray_init(address: str | None = None, connect_timeout: float | None = None):
    """Connect to Ray once per process: a local Ray (``address=None``) or the cluster at
    ``address``; an already initialised Ray is reused. Returns the ``ray`` module.

    A cluster that does not answer within ``connect_timeout`` seconds (default
    ``$VLD_RAY_CONNECT_TIMEOUT`` or :data:`CONNECT_TIMEOUT_S`) is a :class:`RayUnavailable`
    naming the address, not Ray's endless reconnect warnings. A handler for SIGTERM that the
    caller installed is kept (``ray.init`` replaces it with its own)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if address is None:
        # the node's agents can take > 30 s to start on a busy small machine; Ray's default wait
        # then kills the raylet ("timed out waiting for file metrics_agent_port")
        os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
        _start_local_ray(ray)
    else:
        _connect(ray, address, connect_timeout_s() if connect_timeout is None else connect_timeout)
    if previous not in (None, signal.SIG_DFL):
        signal.signal(signal.SIGTERM, previous)
    return ray


def connect_timeout_s() -> float:
    """The Ray connect deadline in seconds: ``$VLD_RAY_CONNECT_TIMEOUT`` or :data:`CONNECT_TIMEOUT_S`."""
    text = os.environ.get("VLD_RAY_CONNECT_TIMEOUT", "")
    try:
        value = float(text) if text else CONNECT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"VLD_RAY_CONNECT_TIMEOUT={text!r} is not a number of seconds (e.g. 30)") from None
    if not value > 0:
        raise ValueError(f"the Ray connect timeout must be > 0 seconds, got {value:g}")
    return value


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """The ``(host, port)`` that ``address`` (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``) names,
    None for an ``auto`` that names no recorded cluster (Ray then reports that itself);
    a ValueError for an address of another form."""
    text = address.split("://", 1)[1] if "://" in address else address
    if text == "local":  # ray.init starts a Ray of its own
        return None
    if text == "auto":
        try:  # RAY_ADDRESS, else the cluster `ray start` recorded on this machine
            from ray._private.services import canonicalize_bootstrap_address

            text = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # noqa: BLE001 - a private helper: if it fails, ray.init reports
            return None
        if not text:
            return None
    host, _, port = text.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto "
                         "(e.g. --ray-address 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def _connect(ray, address: str, timeout: float) -> None:
    """``ray.init(address=address)`` after checking, within ``timeout`` seconds, that something
    listens there (Ray itself retries a dead address for many minutes)."""
    endpoint = ray_endpoint(address)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
        except OSError as exc:
            reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                      else (exc.strerror or type(exc).__name__))
            raise RayUnavailable(
                f"no Ray cluster answers at {address} ({endpoint[0]}:{endpoint[1]}: {reason}); start one there "
                f"(ray start --head --port {endpoint[1]}), fix --ray-address, or leave --ray-address out for a "
                "local Ray") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(address=address, logging_level="WARNING", runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {first}; start one "
                             "(ray start --head), fix --ray-address, or leave it out for a local Ray") from None


def _start_local_ray(ray, attempts: int = 3, **options) -> None:
    """``ray.init()`` of a local Ray, retried: on an overloaded machine its node can miss Ray's
    fixed 30 s start-up deadline ("The current node timed out during startup"). Its processes
    carry a mark and die with this process (:mod:`vldlib.study.raywatch`)."""
    mark = raywatch.new_mark()
    watchdog = raywatch.start(mark)
    for attempt in range(1, attempts + 1):
        os.environ[raywatch.MARK] = mark  # inherited by every process of this Ray, and only them
        try:
            ray.init(include_dashboard=False, logging_level="WARNING", **options)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            raywatch.kill_marked(mark)  # what the failed start left
            if "timed out during startup" not in str(err) or attempt == attempts:
                if watchdog is not None:
                    os.close(watchdog)
                first = (str(err).strip().splitlines() or [""])[0].rstrip(".")
                raise RayUnavailable(f"could not start a local Ray ({attempt} attempt(s)): {first}; the machine "
                                     "may be overloaded - retry, or use --executor local") from None
        finally:
            os.environ.pop(raywatch.MARK, None)


def _gpu_task(ray, config: Mapping[str, Any], cluster_gpus: float) -> bool:
    device = str(config.get("device", "auto"))
    if device == "cpu":
        return False
    if device.startswith("cuda") and cluster_gpus < 1:
        raise ValueError(f"a run asks for device {device!r} but the Ray cluster has no GPU; "
                         "set device='auto' or 'cpu', or connect to a cluster with GPUs (--ray-address)")
    return cluster_gpus >= 1


def check_ray_resources(nodes: Sequence[Mapping[str, Any]], needs: Mapping[str, float], where: str) -> None:
    """A ValueError if no alive node of ``nodes`` (``ray.nodes()``) has the ``num_cpus`` /
    ``num_gpus`` of ``needs`` (such a task would wait for ever), naming the resource and the fix."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        need = float(needs.get(key, 0))
        most = max((float(r.get(resource, 0)) for r in alive), default=0.0)
        if need > most:
            fix = ("train on CPU (--device cpu)" if resource == "GPU"
                   else f"train with --threads {int(most)} (the config's threads) or fewer" if most >= 1
                   else "add CPUs to the cluster")
            raise ValueError(f"a run needs {need:g} {resource}(s) but the largest node of the Ray cluster ({where}) "
                             f"has {most:g}; {fix}, or use a cluster with bigger nodes")


def _execute_ray(store: RunStore, jobs: Sequence[Job], address: str | None, done: Done, failed: Failed) -> None:
    ray = ray_init(address)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    cache_dir = None if store.cache_dir is None else str(store.cache_dir)
    train_task, warm_task = ray.remote(_train_one), ray.remote(_warm_one)

    def resources(config: Mapping[str, Any]) -> dict[str, float]:
        if _gpu_task(ray, config, gpus):
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_gpus": 0, "num_cpus": run_threads(config)}

    nodes = ray.nodes()
    for j in jobs:  # before anything is submitted: a task no node can hold never starts
        check_ray_resources(nodes, resources(j.config), address or "local Ray")
    # 1. the teacher features, once per dataset (one task each, in parallel)
    by_key: dict[str, list[Job]] = {}
    for j in jobs:
        by_key.setdefault(data_key(j.config), []).append(j)
    warms = {warm_task.options(**resources(group[0].config)).remote(group[0].config, cache_dir,
                                                                     run_threads(group[0].config),
                                                                     needs_proxy_captions(group),
                                                                     view_counts(group)): key
             for key, group in by_key.items()}
    ready_keys: list[str] = []
    for ref, key in warms.items():
        try:
            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - every run of this dataset fails with it
            for j in by_key[key]:
                failed(j, exc)
        else:
            ready_keys.append(key)
    # 2. the runs, one task each
    pending = {train_task.options(**resources(j.config)).remote(str(store.root), cache_dir, j.config,
                                                                 run_threads(j.config)): j
               for key in ready_keys for j in by_key[key]}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - reported by name, the others go on
                failed(job, exc)
            else:
                done(job, record)

