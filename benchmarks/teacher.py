"""Benchmark the ConSE proxy teacher (offline profile): zero-shot accuracy and throughput.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/teacher.py [--limit N] [--n-throughput 192]

1. Zero-shot accuracy on the Fashion-MNIST test set (10k images; ``--limit`` N per class for a
   quick look): 10-way over all classes, and 5-way on the default unseen half (split_seed=0:
   perm = torch.randperm(10, generator=torch.Generator().manual_seed(0)), unseen = sorted(perm[5:])).
   Text for class c: the teacher's template, "a photo of a {c}".
2. Feature-extraction throughput (images/s) of ``encode_image`` on the same ``--n-throughput``
   images, measured in this one run, from the naive setting to the shipped one, one change at a
   time: batch 16 / 1 thread / NCHW / BatchNorm unfused -> batch 64 -> channels_last ->
   BatchNorm folded into the convolutions -> ``--threads`` threads; then the same at a lower
   input resolution.  The settings are run round-robin ``--rounds`` times and the best is
   reported (a shared machine's load hits them alike).  Ratios are relative to the naive setting.

3. Zero-shot accuracy at the lower resolution on ``--low-res-accuracy`` images per class, with the
   default resolution's accuracy on the same images.

Prints one JSON record (CLIP_benchmark style) and writes it atomically to ``--out`` if given
(after each section, so a long run leaves its finished parts).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vldlib.data.fashion_mnist import CLASS_NAMES, class_split, read_idx  # noqa: E402
from vldlib.core.metrics import zero_shot_predict  # noqa: E402
from vldlib.io import write_json_atomic  # noqa: E402
from vldlib.models.teachers import ConSEProxyTeacher  # noqa: E402


def find(root: Path, stem: str) -> Path:
    for cand in (root / f"{stem}.gz", root / stem):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"{stem}(.gz) not in {root}: pass --root or set $VLD_DATA")


def load_test_set(root: Path, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(find(root, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(root, "t10k-labels-idx1-ubyte")).astype(np.int64)
    if limit:
        idx = np.concatenate([np.flatnonzero(labels == c)[:limit] for c in range(10)])
        images, labels = images[idx], labels[idx]
    return torch.from_numpy(images.copy()).float().div(255).unsqueeze(1), torch.from_numpy(labels.copy())


def encode(teacher: ConSEProxyTeacher, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    feats = []
    for i in range(0, len(x), batch):
        feats.append(teacher.encode_image(x[i: i + batch]))
        print(f"  encoded {min(i + batch, len(x))}/{len(x)}", file=sys.stderr, flush=True)
    return torch.cat(feats), time.perf_counter() - t0


def zero_shot(teacher: ConSEProxyTeacher, feats: torch.Tensor, y: torch.Tensor, seconds: float) -> dict:
    txt = teacher.encode_text([teacher.template.format(c=c) for c in CLASS_NAMES])
    acc10 = (zero_shot_predict(feats, txt) == y).float().mean().item()
    _, unseen = class_split(0)
    mask = torch.isin(y, torch.tensor(unseen))
    pred5 = torch.tensor(unseen)[zero_shot_predict(feats[mask], txt[unseen])]
    acc5 = (pred5 == y[mask]).float().mean().item()
    return {
        "n_images": len(feats), "acc_10way": 100 * acc10, "n_unseen_images": int(mask.sum()),
        "unseen_classes": [CLASS_NAMES[i] for i in unseen], "acc_5way_unseen": 100 * acc5,
        "encode_seconds": seconds,
    }


def throughput(teacher: ConSEProxyTeacher, x: torch.Tensor, threads: int, batch: int) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        teacher.batch_size = batch
        teacher.encode_image(x[:batch])  # warm-up (allocator, oneDNN primitives)
        t0 = time.perf_counter()
        teacher.encode_image(x)
        return len(x) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(os.environ.get("VLD_DATA", "/usr/share/datasets/fashion-mnist")))
    ap.add_argument("--backbone", default="lite0", choices=["lite0", "lite2"])
    ap.add_argument("--limit", type=int, default=None, help="images per class for accuracy (default: all 1000)")
    ap.add_argument("--n-throughput", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="round-robin repetitions; best is reported")
    ap.add_argument("--low-res", type=int, default=160)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--low-res-accuracy", type=int, default=100, help="images per class for the low-res accuracy")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    x, y = load_test_set(args.root, args.limit)
    record: dict = {
        "benchmark": "conse-proxy-teacher", "backbone": args.backbone, "torch": torch.__version__,
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
    }

    # --- accuracy on the test set (shipped default settings)
    fast = ConSEProxyTeacher(backbone=args.backbone)
    if not args.skip_accuracy:
        torch.set_num_threads(args.threads)
        feats, seconds = encode(fast, x)
        record["zero_shot"] = {"teacher": fast.identifier, "preprocess": fast.preprocess_id,
                               **zero_shot(fast, feats, y, seconds)}
        write(record, args.out)

    # --- throughput: one change at a time, same images, same run
    g = torch.Generator().manual_seed(0)
    tx = x[torch.randperm(len(x), generator=g)[: args.n_throughput]]
    naive = ConSEProxyTeacher(backbone=args.backbone, fuse_bn=False, channels_last=False)
    naive._class_text = fast.class_text_embeddings  # text side computed once, outside the timings
    cl = ConSEProxyTeacher(backbone=args.backbone, fuse_bn=False, channels_last=True)
    cl._class_text = fast.class_text_embeddings
    low = ConSEProxyTeacher(backbone=args.backbone, image_size=args.low_res)
    low._class_text = fast.class_text_embeddings
    steps = [
        ("naive: batch 16, 1 thread, NCHW, BN unfused, 224 px", naive, 1, 16),
        ("+ batch 64", naive, 1, 64),
        ("+ channels_last", cl, 1, 64),
        ("+ BN folded into convs", fast, 1, 64),
        (f"+ {args.threads} threads (shipped default)", fast, args.threads, 64),
        (f"+ {args.low_res} px input (option image_size)", low, args.threads, 64),
    ]
    # round-robin over the settings, best of --rounds: a shared machine's load hits all settings alike
    runs: list[list[float]] = [[] for _ in steps]
    for r in range(args.rounds):
        for i, (label, teacher, threads, batch) in enumerate(steps):
            runs[i].append(throughput(teacher, tx, threads, batch))
            print(f"round {r}: {label:55s} {runs[i][-1]:7.1f} img/s", file=sys.stderr, flush=True)
    rows = [{"setting": label, "images_per_s_best": max(v), "images_per_s_median": float(np.median(v)),
             "images_per_s_all": v} for (label, *_), v in zip(steps, runs)]
    base = rows[0]["images_per_s_best"]
    for row in rows:
        row["ratio_vs_naive"] = row["images_per_s_best"] / base
    record["throughput"] = {"n_images": len(tx), "rounds": args.rounds, "load_avg_1min": os.getloadavg()[0],
                            "steps": rows}
    same = torch.allclose(naive.encode_image(tx[:8]), fast.encode_image(tx[:8]), atol=1e-4)
    record["throughput"]["fast_equals_naive_features"] = bool(same)

    write(record, args.out)
    if args.low_res and args.low_res_accuracy:
        low.batch_size = 64
        sel = torch.cat([torch.nonzero(y == c).flatten()[: args.low_res_accuracy] for c in range(10)])
        low_feats, seconds = encode(low, x[sel])
        record["zero_shot_low_res"] = {"teacher": low.identifier, "preprocess": low.preprocess_id,
                                       **zero_shot(low, low_feats, y[sel], seconds)}
        if not args.skip_accuracy:  # the default resolution on the same images, from the features above
            record["zero_shot_low_res"]["same_images_at_default_res"] = zero_shot(fast, feats[sel], y[sel], 0.0)
        write(record, args.out)

    print(json.dumps(record, indent=2))
    return 0


def write(record: dict, out: Path | None) -> None:
    """Write the record atomically (:func:`vldlib.io.write_json_atomic`)."""
    if out is not None:
        write_json_atomic(out, record, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
