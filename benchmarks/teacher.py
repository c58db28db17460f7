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

``--json FILE`` runs the engine comparison instead (issue 9): the new default image encoder
(``backend="openvino"``, the offline profile's) against today's shipped path (``backend="torch"``:
channels_last + BatchNorm folded), both at ``--threads`` threads and 224 px, and writes

- ``speedup_vs_shipped``: images/s of the new default / the shipped path on the same
  ``--n-throughput`` images, round-robin, best of ``--rounds`` (target >= 2.5);
  ``cpu_speedup_vs_shipped``: the same from process CPU time (robust on a shared machine);
- ``accuracy_delta_points``: 10-way zero-shot accuracy on all 10,000 test images, new minus
  shipped (target >= -0.5), with both accuracies and the 5-way unseen ones;
- ``mean_cosine`` (and the minimum) between the two paths' features of the 10,000 images
  (target >= 0.99).
The reference features of the 10,000 images come from ``--reference`` (default ``torch``, the
shipped path); ``openvino-f32`` computes the same fp32 network through OpenVINO (~10x faster on a
loaded machine) and the run then checks it against the torch path on ``--check`` images
(``reference_check``: max |feature difference| and min cosine).
The 10,000-image encodes run at ``--accuracy-threads`` (default: ``--threads``) in batches of
``--accuracy-batch``; neither changes the features beyond float rounding.
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
    ap.add_argument("--json", type=Path, default=None, help="run the engine comparison and write its figures here")
    ap.add_argument("--accuracy-threads", type=int, default=None)
    ap.add_argument("--reference", choices=("torch", "openvino-f32"), default="torch")
    ap.add_argument("--check", type=int, default=64, help="images for the openvino-f32 vs torch check")
    ap.add_argument("--accuracy-batch", type=int, default=64,
                    help="encoder batch of the 10,000-image encodes (features do not depend on it)")
    args = ap.parse_args(argv)
    if args.json is not None:
        return engine(args)

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


def timed(teacher: ConSEProxyTeacher, x: torch.Tensor, threads: int, batch: int) -> tuple[float, float]:
    """(images/s wall, images/s of process CPU time) of one ``encode_image`` pass, after a warm-up."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        teacher.batch_size = batch
        teacher.encode_image(x[:batch])  # warm-up (allocator, oneDNN primitives, OpenVINO compile)
        t0, c0 = time.perf_counter(), time.process_time()
        teacher.encode_image(x)
        return len(x) / (time.perf_counter() - t0), len(x) / (time.process_time() - c0)
    finally:
        torch.set_num_threads(old)


def engine(args: argparse.Namespace) -> int:
    """The new default (OpenVINO) image encoder against the shipped torch path (module docstring)."""
    x, y = load_test_set(args.root, args.limit)
    shipped = ConSEProxyTeacher(backbone=args.backbone, backend="torch")
    fast = ConSEProxyTeacher(backbone=args.backbone, backend="openvino")
    fast._class_text = shipped.class_text_embeddings  # same text side, computed once
    record: dict = {"benchmark": "conse-proxy-teacher-engine", "backbone": args.backbone, "torch": torch.__version__,
                    "threads": args.threads, "image_size": shipped.image_size,
                    "shipped": shipped.preprocess_id, "fast": fast.preprocess_id}
    g = torch.Generator().manual_seed(0)
    tx = x[torch.randperm(len(x), generator=g)[: args.n_throughput]]
    runs: dict[str, list[tuple[float, float]]] = {"shipped": [], "fast": []}
    for r in range(args.rounds):
        for name, teacher in (("shipped", shipped), ("fast", fast)):
            runs[name].append(timed(teacher, tx, args.threads, 64))
            print(f"round {r}: {name:8s} {runs[name][-1][0]:7.1f} img/s ({runs[name][-1][1]:.1f} per CPU s)",
                  file=sys.stderr, flush=True)
    best = {k: max(v[0] for v in runs[k]) for k in runs}
    best_cpu = {k: max(v[1] for v in runs[k]) for k in runs}
    record.update({"images_per_s": best, "images_per_cpu_s": best_cpu, "rounds": runs,
                   "n_throughput": len(tx), "load_avg_1min": os.getloadavg()[0],
                   "speedup_vs_shipped": best["fast"] / best["shipped"],
                   "cpu_speedup_vs_shipped": best_cpu["fast"] / best_cpu["shipped"]})
    print(f"shipped {best['shipped']:.1f} img/s, openvino {best['fast']:.1f} img/s: "
          f"speedup_vs_shipped {record['speedup_vs_shipped']:.2f} (target >= 2.5; CPU-time "
          f"{record['cpu_speedup_vs_shipped']:.2f})", flush=True)
    write(record, args.json)

    torch.set_num_threads(args.accuracy_threads or args.threads)
    reference = shipped
    if args.reference != "torch":
        reference = ConSEProxyTeacher(backbone=args.backbone, backend=args.reference)
        reference._class_text = shipped.class_text_embeddings
        cx = x[torch.randperm(len(x), generator=g)[: args.check]]
        a, b = reference.encode_image(cx), shipped.encode_image(cx)
        record["reference_check"] = {
            "reference": reference.preprocess_id, "n_images": len(cx),
            "max_abs_feature_diff": float((a - b).abs().max()),
            "min_cosine": float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())}
        print(f"reference check: {record['reference_check']}", flush=True)
    record["reference"] = reference.preprocess_id
    feats = {}
    for name, teacher in (("fast", fast), ("shipped", reference)):
        teacher.batch_size = args.accuracy_batch
        feats[name], seconds = encode(teacher, x)
        record[f"zero_shot_{name}"] = zero_shot(teacher, feats[name], y, seconds)
        write(record, args.json)
    cos = torch.nn.functional.cosine_similarity(feats["fast"], feats["shipped"], dim=-1)
    record.update({
        "accuracy_delta_points": record["zero_shot_fast"]["acc_10way"] - record["zero_shot_shipped"]["acc_10way"],
        "accuracy_delta_5way_unseen_points": (record["zero_shot_fast"]["acc_5way_unseen"]
                                              - record["zero_shot_shipped"]["acc_5way_unseen"]),
        "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "n_accuracy_images": len(x)})
    print(f"accuracy_delta_points {record['accuracy_delta_points']:+.2f} (10-way, {len(x)} images; "
          f"target >= -0.5), mean_cosine {record['mean_cosine']:.5f} (min {record['min_cosine']:.4f}; target >= 0.99)")
    write(record, args.json)
    return 0


def write(record: dict, out: Path | None) -> None:
    """Write the record atomically (:func:`vldlib.io.write_json_atomic`)."""
    if out is not None:
        write_json_atomic(out, record, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
