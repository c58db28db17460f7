"""Evidence, not selection: an L_mse-only student of today's proxy teacher and of the teacher search's winner.

For each teacher (the offline default and ``vldlib/resources/teacher_search.json``'s winner) and each
of the first ``--splits`` test class splits, trains the offline profile's student with L_mse alone
(no 5-shot stage) and prints the student's X_id zero-shot accuracy, the teacher's, and the student's
share of the teacher's above-chance ability, (student - chance) / (teacher - chance), chance = 100/5 %,
and the R² of its X_id features against the teacher's (held-out images, same space).

    PYTHONPATH=. python benchmarks/teacher_students.py --splits 3 --json /tmp/teacher_students.json
"""
from __future__ import annotations

import argparse
import json
import time

import tempfile
from pathlib import Path

import torch

from vldlib.core.geometry import explained_variance
from vldlib.paths import default_cache_dir
from vldlib.study.grid import TEST_SPLITS
from vldlib.study.teacher_search import load_result
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.profiles import profile_config
from vldlib.train.trainer import STUDENT, _Run, train

CHANCE = 20.0


def _held_out_r2(config: dict, run_dir: Path, cache_dir: str | None) -> float:
    """R² of the trained student's features against the teacher's on X_id (held out: not trained on),
    directly in the teacher's space (:func:`vldlib.core.geometry.explained_variance`, ``fit=None``)."""
    cfg = TrainConfig.from_dict(config).validate()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    run = _Run(cfg, config_hash(cfg), torch.device("cpu"), cache, None, False, None)
    run._setup()
    run.student = run._build_student()
    run.student.load_state_dict(torch.load(run_dir / STUDENT, map_location="cpu", weights_only=True))
    run.student.eval()
    with torch.no_grad():
        student = run.evals["id"].embed(run.student, run.device, cfg.eval_batch_size, False)
    return explained_variance(student, run.tfeat["id"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=3, help="how many test splits (the first n)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    result = load_result()
    teachers = {"default": {}, "winner": result["winner_teacher_options"]}
    rows = []
    for name, options in teachers.items():
        for split in TEST_SPLITS[:args.splits]:
            over = {"weights": {"mse": 1.0}, "fewshot": None, "dataset_options.split_seed": split}
            if options:
                over["teacher_options"] = options
            cfg = profile_config("offline", **over)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as run_dir:
                final = train(cfg, run_dir=run_dir, cache_dir=args.cache_dir, progress=False)["final"]
                r2 = _held_out_r2(cfg, Path(run_dir), args.cache_dir)
            row = {"teacher": name, "split_seed": split, "acc_id": final["acc_id"],
                   "acc_ood_zeroshot": final["acc_ood_zeroshot"], "teacher_acc_id": final["teacher_acc_id"],
                   "teacher_acc_ood_zeroshot": final["teacher_acc_ood_zeroshot"],
                   "share_id": (final["acc_id"] - CHANCE) / (final["teacher_acc_id"] - CHANCE),
                   "r2_id": r2,
                   "wall_s": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in teachers:
        own = [r for r in rows if r["teacher"] == name]
        mean = {k: sum(r[k] for r in own) / len(own) for k in ("acc_id", "teacher_acc_id", "share_id", "r2_id",
                                                                  "acc_ood_zeroshot", "teacher_acc_ood_zeroshot")}
        print(name, {k: round(v, 3) for k, v in mean.items()})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
