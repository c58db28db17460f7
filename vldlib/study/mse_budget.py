"""Does L_mse alone leave the teacher's mean with a longer budget? A diagnostic on class splits.

L_mse (paper Eq. 2) alone, trained for each number of ``epochs`` on each class split, with the
profile's recipe otherwise (no 5-shot stage). Each run's X_id accuracy is read as the share of the
teacher's ability above chance, ``(acc_id - chance) / (teacher_acc_id - chance)`` (the paper's
Table 1 gives 0.43 for L_mse). Defaults: the offline profile on the development splits (a
diagnostic, not a recipe choice; chapters report on the test splits)::

    python -m vldlib.study.mse_budget --epochs 10 40 --results /tmp/mse-budget
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vldlib.runs import RunStore
from vldlib.study.grid import DEV_SPLITS
from vldlib.study.stats import above_chance_share, summarize
from vldlib.train.profiles import PROFILES, profile_config

__all__ = ["mse_budget", "summary", "main"]


def mse_budget(results_dir: str | Path, epochs: Sequence[int], *, splits: Sequence[int] = DEV_SPLITS,
               profile: str = "offline", cache_dir: str | None = None) -> pd.DataFrame:
    """One row per (epochs, split): the L_mse student's and the teacher's X_id accuracy (%), the share
    of the teacher's above-chance ability and the final training loss. Runs are kept in (and reused
    from) the run store ``results_dir``."""
    store = RunStore(results_dir, cache_dir=cache_dir)
    last_n = profile_config(profile)["last_n"]
    rows = []
    for n in epochs:
        for split in splits:
            cfg = profile_config(profile, weights={"mse": 1.0}, epochs=int(n), fewshot=None, last_n=min(int(n), last_n),
                                 **{"dataset_options.split_seed": int(split)})
            record = store.run(cfg, progress=False)
            final, chance = record["final"], 100.0 / len(record["dataset"]["seen_classes"])
            rows.append({"epochs": int(n), "split_seed": int(split), "acc_id": final["acc_id"],
                         "teacher_acc_id": final["teacher_acc_id"], "chance": chance,
                         "share": above_chance_share(final["acc_id"], final["teacher_acc_id"], chance),
                         "loss": final["loss"]})
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per budget: the mean share with its 95% t-interval over the class splits (:func:`summarize`;
    one split: NaN bounds), and the mean accuracies and loss."""
    long = summarize(rows, "epochs", ["share", "acc_id", "teacher_acc_id", "loss"])
    means = long.pivot(index="epochs", columns="metric", values="mean")
    share = long[long["metric"] == "share"].set_index("epochs")
    return pd.DataFrame({"epochs": share.index, "splits": share["n"].to_numpy(), "share": share["mean"].to_numpy(),
                         "share_low": share["ci_low"].to_numpy(), "share_high": share["ci_high"].to_numpy(),
                         **{m: means.loc[share.index, m].to_numpy() for m in ("acc_id", "teacher_acc_id", "loss")}})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vldlib.study.mse_budget", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, nargs="+", default=[10, 40], help="budgets to compare (default 10 40)")
    ap.add_argument("--splits", type=int, nargs="+", default=list(DEV_SPLITS),
                    help="class splits (default: the development splits)")
    ap.add_argument("--profile", default="offline", choices=tuple(PROFILES))
    ap.add_argument("--results", required=True, help="run store for these runs (kept, reused)")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.epochs):
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    rows = mse_budget(args.results, args.epochs, splits=args.splits, profile=args.profile, cache_dir=args.cache_dir)
    with pd.option_context("display.width", 200):
        print(rows.round(3).to_string(index=False))
        print(summary(rows).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
