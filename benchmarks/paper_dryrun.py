"""A realistic dry run of the paper profile: every stage a researcher's first run goes through,
on a fake official dataset, with the throughput of each stage, the peak memory and the disk use.

Run: ``.venv/bin/python benchmarks/paper_dryrun.py [--classes 10] [--per-class 12] [--load-size 256]
[--width 500 --height 375] [--arch ViT-B-32] [--device auto] [--batch-size 32] [--workers auto]
[--keep DIR] [--json FILE]``

1. a fake dataset in the official layout (``R/{train,val_on_train,val}/<class>/<img>.jpg`` with
   ``label2text.txt``, ``chatgpt.txt`` and the three ``*_data.txt`` lists; class names and
   sentences are made up, nothing is copied from the official lists): ``--classes`` classes, half
   seen (70 % X_train / 30 % X_id) and half unseen (X_ood), ``--per-class`` JPEGs each at a real
   photo size (500 x 375 by default, smooth colour fields + noise, quality 90);
2. the paper profile (:func:`vldlib.train.profiles.profile_config`) on it, shrunk only in length:
   one outer epoch (x ``repeat_epochs="auto"`` = 5 passes on a small dataset, as the paper) and one
   5-shot epoch. The teacher is open_clip ``--arch`` with **random weights** (``pretrained=None``:
   nothing to download; the paper's ViT-L-14 costs the same per image as a trained one), by default
   ViT-B-32 so that the default size runs on 2 CPU cores in a few minutes; ``--arch ViT-L-14`` on a GPU.
   Student ResNet18, 224 crops of 256 loads, bf16 autocast on CUDA (the profile's ``amp``).

Stages, each timed on its own in this process before the run (the run then finds their caches,
exactly as a real first run would have built them): ``decode`` (PIL decode + resize to 256 of
every image, one process), ``store`` (the uint8 image store, :mod:`vldlib.data.imagestore`),
``teacher`` (teacher image features of the three splits; building the model: ``teacher_load_s``),
then ``train`` and ``eval`` from the run's record (images/s of its training steps and of its
evaluations). Also the peak resident
memory of the process (``ru_maxrss``) and of its loader workers, the seconds of the whole run,
and the disk use per image (JPEG, store, teacher features). ``--json FILE`` writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vldlib.data import load_dataset  # noqa: E402
from vldlib.data.imagestore import build_image_store  # noqa: E402
from vldlib.features import LazyTeacher, teacher_image_features  # noqa: E402
from vldlib.train import train  # noqa: E402
from vldlib.train.config import resolve_workers  # noqa: E402
from vldlib.train.profiles import profile_config  # noqa: E402

#: The keys of the JSON figures (a test checks them).
KEYS = ("arch", "device", "images", "classes", "image_size", "load_size", "decode_img_s", "store_img_s",
        "teacher_load_s", "teacher_img_s",
        "train_img_s", "eval_img_s", "run_s", "total_s", "peak_rss_mb", "peak_rss_workers_mb",
        "disk_jpeg_kb_per_image", "disk_store_kb_per_image", "disk_features_kb_per_image", "acc_id",
        "acc_ood_zeroshot", "num_workers", "torch_threads")


def write_fake_official(root: Path, classes: int, per_class: int, size: tuple[int, int], seed: int = 0) -> Path:
    """The official split layout with made-up classes (see the module docstring)."""
    from PIL import Image

    if classes < 2 or per_class < 7:
        raise ValueError("--classes must be >= 2 and --per-class >= 7 (5 support images + 2 to evaluate per unseen class)")
    rng = np.random.default_rng(seed)
    w, h = size
    lists: dict[str, list[str]] = {"train": [], "val_on_train": [], "val": []}
    labels, sentences = [], []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for c in range(classes):
        folder = f"{c + 1:03d}.Fake_class_{c:03d}"
        labels.append(f"{folder} {c + 1} fake_class_{c:03d}")
        sentences.append(f"A fake class {c} object has a smooth colour field number {c} with fine grain.")
        seen = c % 2 == 0
        n_id = max(1, round(0.3 * per_class))
        for j in range(per_class):
            split = ("val_on_train" if j < n_id else "train") if seen else "val"
            base = rng.uniform(40, 215, size=3)
            fx, fy = rng.uniform(0.002, 0.02, size=2)
            field = (np.sin(xx * fx + c) + np.cos(yy * fy + j))[..., None] * 30
            img = np.clip(base + field + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
            rel = f"{split}/{folder}/img_{j:04d}.jpg"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=90)
            lists[split].append(rel)
    (root / "label2text.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (root / "chatgpt.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    for split, rels in lists.items():
        (root / f"{split}_data.txt").write_text("\n".join(rels) + "\n", encoding="utf-8")
    return root


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def _dir_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    t_all = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vld-dryrun-"))
    try:
        root, cache, results = work / "data" / "FakeBirds", work / "cache", work / "results"
        if not (root / "label2text.txt").is_file():
            write_fake_official(root, args.classes, args.per_class, (args.width, args.height))
        cfg = profile_config(
            "paper", dataset_options={"root": str(root), "load_size": args.load_size,
                                      "crop_size": args.load_size * 7 // 8},
            teacher_options={"model": args.arch, "pretrained": None, "device": args.device},
            device=args.device, epochs=1, last_n=1, batch_size=args.batch_size, eval_batch_size=args.batch_size,
            num_workers=args.workers, cache_dir=str(cache), **{"fewshot.epochs": 1})
        workers = resolve_workers(cfg["num_workers"])
        ds = load_dataset("official", root=str(root), load_size=args.load_size, crop_size=args.load_size * 7 // 8)
        n = sum(len(s) for s in ds.splits.values())

        def decode() -> None:
            for split in ds.splits.values():
                for i in range(len(split)):
                    split[i]

        decode_s = _timed(decode)
        store_s = _timed(lambda: [build_image_store(s, cache, num_workers=workers) for s in ds.splits.values()])
        t0 = time.perf_counter()
        teacher = LazyTeacher.in_cache(cfg["teacher"], cfg["teacher_options"], cache)  # builds it
        teacher_load_s = time.perf_counter() - t0
        teacher_s = _timed(lambda: [teacher_image_features(teacher, s, dataset_id=ds.name, cache_dir=cache,
                                                           num_workers=workers, progress=False)
                                    for s in ds.splits.values()])
        del teacher
        t0 = time.perf_counter()
        record = train(cfg, run_dir=results / "run", progress=not args.quiet)
        run_s = time.perf_counter() - t0
        t = record["timings"]
        evaluated = sum(1 for h in record["history"] if h.get("acc_id") is not None)
        fs_evaluated = sum(1 for h in (record["fewshot"] or {}).get("history", []) if h.get("acc_id") is not None)
        eval_images = evaluated * (len(ds.id) + len(ds.ood))
        if record["fewshot"]:
            eval_images += fs_evaluated * (len(ds.id) + record["fewshot"]["eval_size"])
        eval_s = t.get("eval_s", 0.0) + t.get("fewshot_eval_s", 0.0)
        jpeg = sum(Path(p).stat().st_size for s in ds.splits.values() for p in s.paths)
        out = {
            "arch": args.arch, "device": record["device"], "images": n, "classes": args.classes,
            "image_size": [args.width, args.height], "load_size": args.load_size,
            "decode_img_s": round(n / decode_s, 1), "store_img_s": round(n / store_s, 1),
            "teacher_load_s": round(teacher_load_s, 1), "teacher_img_s": round(n / teacher_s, 1),
            "train_img_s": round(record["throughput_img_s"] or 0.0, 1),
            "eval_img_s": round(eval_images / eval_s, 1) if eval_s > 0 else None,
            "run_s": round(run_s, 1), "total_s": None,
            "peak_rss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            "peak_rss_workers_mb": _mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
            "disk_jpeg_kb_per_image": round(jpeg / n / 1024, 1),
            "disk_store_kb_per_image": round(_dir_bytes(cache / "images", "*.u8") / n / 1024, 1),
            "disk_features_kb_per_image": round(_dir_bytes(cache / "teacher-features") / n / 1024, 2),
            "acc_id": record["final"]["acc_id"], "acc_ood_zeroshot": record["final"]["acc_ood_zeroshot"],
            "num_workers": workers, "torch_threads": torch.get_num_threads(),
        }
        out["total_s"] = round(time.perf_counter() - t_all, 1)
        return out
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=10, help="classes (half seen, half unseen); default 10")
    p.add_argument("--per-class", type=int, default=12, help="JPEGs per class; default 12")
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--load-size", type=int, default=256, help="images load at this size, students crop 7/8 "
                   "of it (the paper: 256 / 224; smaller only for tests)")
    p.add_argument("--arch", default="ViT-B-32", help="open_clip teacher, random weights (ViT-L-14 on a GPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=32, help="main and eval batch (the paper: 128 / 64)")
    p.add_argument("--workers", default="auto", help="DataLoader workers: auto (min(8, cores - 1)) or a number")
    p.add_argument("--keep", help="work folder to keep (data, caches, run); default a temp folder, removed")
    p.add_argument("--quiet", action="store_true", help="no progress lines from the run")
    p.add_argument("--json", help="write the figures to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers != "auto":
        args.workers = int(args.workers)
    out = run(args)
    for key in KEYS:
        print(f"{key:28s} {out[key]}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
