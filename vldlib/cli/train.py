"""``python -m vldlib train``: train one run into the run store and print a summary.

``--profile`` picks the base config (:mod:`vldlib.train.profiles`); named flags and ``--set
KEY=VALUE`` override fields; the run goes through :class:`vldlib.runs.RunStore`, so a finished
config is read back, an interrupted one resumes.

Under ``torchrun --nproc-per-node N -m vldlib train ...`` the N processes train the one run with
DistributedDataParallel (:mod:`vldlib.train.distributed`): ``world_size=N`` joins the config (and
its hash), rank 0 writes the checkpoints and the record and prints the summary. With
``--executor ray`` the run is trained as a Ray task (a local Ray, or the cluster at
``--ray-address``), like one run of a grid.

Ctrl-C (exit 130) and SIGTERM (exit 143) stop the run with one line; it resumes from its last
checkpoint when run again. Bad input is one line naming the value and the fix, exit 2.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping, Sequence

from vldlib.core.losses import LOSS_NAMES
from vldlib.diskspace import DiskFullError
from vldlib.runs import RunStore
from vldlib.study.executors import EXECUTORS, RayUnavailable
from vldlib.study.grid import GridRunError, run_grid
import vldlib.train.distributed as dist
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.preflight import preflight
from vldlib.train.profiles import PROFILES, profile_config

__all__ = ["build_parser", "config_from_args", "main", "summary", "Terminated", "one_line_errors"]

#: Exit status after SIGTERM (128 + 15, as a shell reports a process killed by it).
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the trainer stops as on Ctrl-C (the run resumes from its last checkpoint)."""


@contextlib.contextmanager
def sigterm_stops() -> Iterator[list[int]]:
    """While inside: SIGTERM raises :class:`Terminated` in the main thread (the caller's handler
    is restored after). Yields a list that holds the signal once it arrived: Ray's ``ray.wait``
    turns any exception raised by a signal handler into a plain KeyboardInterrupt."""
    arrived: list[int] = []

    def handler(signum: int, frame: object) -> None:
        arrived.append(signum)
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield arrived
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line_errors(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """``parser`` whose usage errors are one line on stderr (``name: message; see --help``), exit 2,
    instead of argparse's usage block."""
    def error(message: str) -> None:
        print(f"{name}: {message}; see {parser.prog} --help", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    return parser


def _parse_value(text: str) -> Any:
    """JSON first (``true``, ``null``, ``{"a": 1}``), then a Python literal, else the string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return text


def _parse_weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq:
            value = "1"
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--weights: {part!r} is not NAME=NUMBER (e.g. cls=1,im_cst=1); "
                             f"names: {', '.join(LOSS_NAMES)}") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vldlib train",
        description="Train a student by distillation (a run of the run store) and print its result.")
    p.add_argument("--profile", default="offline", help="offline (default) | paper | smoke")
    p.add_argument("--dataset", help="fashion-mnist | official | folder (your images: DIR/<class>/<images>)")
    p.add_argument("--data-root", help="dataset root (official: folder with train/ val/ val_on_train/; "
                   "folder: DIR/<class>/<images>)")
    p.add_argument("--teacher", help="conse | openclip")
    p.add_argument("--student", help="small | resnet18 | resnet50 | vit_b_32")
    p.add_argument("--weights", help="loss weights, e.g. cls=1,mse=1,im_cst=1,vlprox=1")
    p.add_argument("--k", type=int, help="L_vlprox top-k (1 = off)")
    p.add_argument("--no-filter", action="store_true", help="switch off L_vlprox's teacher-correct filter")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda")
    fs = p.add_mutually_exclusive_group()
    fs.add_argument("--fewshot", nargs="?", type=int, const=5, metavar="SHOTS",
                    help="run 5-shot fine-tuning after training (optionally SHOTS per class)")
    fs.add_argument("--no-fewshot", action="store_true", help="skip few-shot fine-tuning")
    p.add_argument("--analysis", action="store_true", help="compute the analysis metrics at the end")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field (dotted for nested: dataset_options.per_class=300); "
                        "VALUE is JSON or a Python literal, else a string")
    p.add_argument("--out", help="results directory of the run store (default $VLD_RESULTS or ./results)")
    p.add_argument("--cache-dir", help="teacher-feature cache (default $VLD_CACHE or the user cache dir)")
    p.add_argument("--force", action="store_true", help="retrain even if a finished record exists")
    p.add_argument("--threads", type=int, help="torch CPU threads of the run (default 1); part of the run's "
                   "identity, since the thread count changes the numbers")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--print-config", action="store_true", help="print the config and its hash, train nothing")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default: this process) or ray (a Ray task; pip install 'vldbook[ray]')")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --executor ray: the cluster (e.g. auto); default: a local Ray. It must answer "
                        "within $VLD_RAY_CONNECT_TIMEOUT seconds (default 30)")
    return one_line_errors(p, "vldlib train")


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for key, attr in (("dataset", "dataset"), ("teacher", "teacher"), ("student", "student"),
                      ("k", "k"), ("epochs", "epochs"), ("batch_size", "batch_size"),
                      ("seed", "seed"), ("device", "device")):
        value = getattr(args, attr)
        if value is not None:
            over[key] = value
    if args.data_root:
        over["dataset_options.root"] = args.data_root
    if args.weights:
        over["weights"] = _parse_weights(args.weights)
    if args.no_filter:
        over["filter"] = False
    if args.analysis:
        over["analysis"] = True
    if args.no_fewshot:
        over["fewshot"] = None
    elif args.fewshot is not None:
        over["fewshot.shots"] = args.fewshot
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        over[key.strip()] = _parse_value(value)
    if args.epochs is not None and "last_n" not in over:  # as the book's epochs parameter (make_grid)
        over["last_n"] = min(PROFILES.get(args.profile, {}).get("last_n", TrainConfig.last_n), args.epochs)
    if args.cache_dir:
        over["cache_dir"] = args.cache_dir
    if args.threads is not None:
        over["threads"] = args.threads
    if dist.env_world_size() > 1:  # launched by torchrun: the process count is part of the run
        over["world_size"] = dist.env_world_size()
    config = profile_config(args.profile, **over)
    root = (config.get("dataset_options") or {}).get("root")
    if root is not None and not isinstance(root, str):
        raise ValueError(f"dataset_options.root must be a folder path (a string), got {root!r}; "
                         "pass --data-root FOLDER")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vldlib train``: train one run into the run store and print a summary."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = config_from_args(args)
        TrainConfig.from_dict(config).validate()
    except ValueError as exc:
        print(f"vldlib train: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:  # a --set value of the wrong kind that validation did not name (template=5)
        print(f"vldlib train: a config value has the wrong type ({exc}); check the --set values", file=sys.stderr)
        return 2
    h = config_hash(config)
    if args.print_config:
        print(json.dumps({"hash": h, "config": config}, indent=1))
        return 0
    store = RunStore(args.out)
    if args.ray_address is not None and args.executor != "ray":
        print("vldlib train: --ray-address needs --executor ray", file=sys.stderr)
        return 2
    if args.executor == "ray" and (args.force or dist.env_world_size() > 1):
        print("vldlib train: --executor ray trains one process per run without --force; "
              "use the local executor for --force or torchrun", file=sys.stderr)
        return 2
    terminated: list[int] = []
    try:
        # once, before anything trains: weights a run would fail on minutes in
        preflight([config], syntax="cli", finished=None if args.force else store.get)
        with sigterm_stops() as terminated:
            record = _train(args, store, config)
        main_rank = dist.is_main()
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or terminated:
            print("vldlib train: terminated (SIGTERM); run again to resume", file=sys.stderr)
            return EXIT_TERMINATED
        print("vldlib train: interrupted; run again to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError, RayUnavailable) as exc:
        print(f"vldlib train: {exc}", file=sys.stderr)
        return 2
    except GridRunError as exc:
        print(f"vldlib train: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # read-only folder, a file where a folder should be, disk full, ...
        print(f"vldlib train: {_os_error(exc)}", file=sys.stderr)
        return 2
    finally:
        dist.shutdown()
    if main_rank:
        print(summary(record, store.run_dir(config)))
    return 0


def _train(args: argparse.Namespace, store: RunStore, config: dict[str, Any]) -> dict[str, Any]:
    """Train (or read back) the run of ``config`` with the executor of ``args``."""
    if args.executor == "ray":
        record = run_grid(store, [({}, config)], executor="ray", ray_address=args.ray_address,
                          log=not args.quiet).iloc[0].to_dict()
        return store.get(config) or record
    dist.init_from_env(str(config.get("device", "auto")))
    return store.run(config, force=args.force, progress=not args.quiet and dist.is_main())


def _os_error(exc: OSError) -> str:
    """One line for an OSError: the path, the reason and the fix (a full disk says its own)."""
    if isinstance(exc, DiskFullError):
        return str(exc)
    if exc.filename is None:
        return f"{exc}; check --out (results) and --cache-dir (teacher features)"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason += " (a file stands where a folder is needed)"
    return (f"cannot write {exc.filename}: {reason}; choose a writable --out (results) or "
            "--cache-dir (teacher features), or fix that path")


def summary(record: Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> str:
    """A few human-readable lines about a result record."""
    cfg, fin = record["config"], record["final"]
    weights = "+".join(n for n, w in cfg["weights"].items() if w) or "-"
    lines = [f"run {record.get('hash')}  {cfg['dataset']} | teacher {cfg['teacher']} | "
             f"student {cfg['student']} | losses {weights} | seed {cfg['seed']}"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines.append(f"  X_id acc {fmt(fin.get('acc_id'))}%   X_ood zero-shot {fmt(fin.get('acc_ood_zeroshot'))}%"
                 + (f"   X_ood 5-shot {fmt(fin.get('acc_ood_5shot'))}%" if "acc_ood_5shot" in fin else "")
                 + f"   (mean of the last {cfg['last_n']} epochs)")
    t = record.get("timings", {})
    lines.append(f"  time {t.get('total_s', float('nan')):.1f}s (train {t.get('train_s', 0):.1f}s, "
                 f"eval {t.get('eval_s', 0):.1f}s, teacher features {t.get('teacher_features_s', 0):.1f}s); "
                 f"teacher forward passes {record.get('teacher_forward_passes')}; device {record.get('device')}")
    if run_dir is not None:
        lines.append(f"  record: {Path(run_dir) / 'record.json'}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
