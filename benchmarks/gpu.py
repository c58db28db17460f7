"""GPU data path and training throughput on one GPU (issue 13), in under 8 minutes.

Run: ``.venv/bin/python benchmarks/gpu.py [--json FILE] [--images 3000] [--epochs 3]``

1. writes a synthetic CUB-sized dataset in the official split layout
   (``R/{train,val_on_train,val}/<class>/<img>.jpg`` + ``label2text.txt``; ``--images`` X_train
   images over 100 seen classes, sides drawn from 224-500 px, plus X_id and 50 unseen classes);
2. encodes it with a random-init open_clip ViT-L/14 teacher (no weights to download) through
   :func:`vldlib.features.teacher_image_features` (DataLoader workers, batches on the GPU) and with
   a bare loop of the same step (DataLoader -> GPU -> the teacher's own ``encode_image``);
3. trains a ResNet18 student for ``--epochs`` epochs with :func:`vldlib.train.train` (uint8
   image store, augmentation on the GPU, channels_last, bf16 autocast) and with a bare loop of the
   same step (store batch -> GPU -> ``/255`` -> batched RandomResizedCrop + flip -> student ->
   ``combined_loss`` -> SGD step);
4. prints images/s of each against its bare loop and the peak GPU memory; ``--json FILE`` writes
   the figures.

Without a CUDA GPU it prints that it skipped and exits 0 (``--device cpu`` with a small
``--teacher-model`` runs the same code on CPU, to check the script itself).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vldlib.core.losses import combined_loss  # noqa: E402
from vldlib.data import load_dataset, student_train_transform  # noqa: E402
from vldlib.data.imagestore import build_image_store, to_unit_float  # noqa: E402
from vldlib.device import autocast  # noqa: E402
from vldlib.features import teacher_image_features  # noqa: E402
from vldlib.io import write_json_atomic  # noqa: E402
from vldlib.models.students import load_student  # noqa: E402
from vldlib.models.teachers import load_teacher  # noqa: E402
from vldlib.train import train  # noqa: E402
from vldlib.train.loop import train_index_batches  # noqa: E402

N_SEEN, N_UNSEEN = 100, 50


def _write_image(args: tuple[str, int, int]) -> None:
    from PIL import Image

    path, label, seed = args
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(224, 501, size=2))
    colour = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], dtype=np.float32)
    img = np.clip(colour + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def write_dataset(root: Path, n_train: int, workers: int) -> Path:
    """The official split layout with ``n_train`` X_train images (CUB-like sizes)."""
    per_seen = max(2, n_train // N_SEEN)
    jobs, lines = [], []
    for c in range(N_SEEN + N_UNSEEN):
        folder = f"{c:03d}.Class_{c}"
        lines.append(f"{folder} {c + 1} class_{c}")
        splits = {"train": per_seen, "val_on_train": max(1, per_seen // 10)} if c < N_SEEN else {"val": min(10, per_seen)}
        for split, n in splits.items():
            for k in range(n):
                jobs.append((str(root / split / folder / f"img_{k:04d}.jpg"), c, len(jobs)))
    root.mkdir(parents=True, exist_ok=True)
    (root / "label2text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_image, jobs, chunksize=32))
    return root


def bare_teacher(teacher, split, batch_size: int, workers: int, device: torch.device) -> float:
    """Seconds for the hand-written encoding loop over ``split``."""
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            teacher.encode_image(images.to(device, non_blocking=True))
    _sync(device)
    return time.perf_counter() - t0


def bare_train(cfg: dict, ds, store, feats: torch.Tensor, text: torch.Tensor, device: torch.device,
               epochs: int) -> float:
    """Seconds for ``epochs`` hand-written passes of the trainer's step over X_train."""
    torch.manual_seed(cfg["seed"])
    student = load_student(cfg["student"], out_dim=feats.shape[1], in_chans=3).to(device)
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    tf = student_train_transform(ds, per_image=cfg["per_image_aug"])
    labels = torch.as_tensor(ds.train.labels, device=device)
    feats, text = feats.to(device), text.to(device)
    weights = {k: v for k, v in cfg["weights"].items() if v}
    g = torch.Generator().manual_seed(1)
    student.train()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in train_index_batches(len(ds.train), cfg["batch_size"], g):
            x = to_unit_float(store.batch(idx).pin_memory().to(device, non_blocking=True)
                              if device.type == "cuda" else store.batch(idx))
            x = tf(x, generator=g)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            idx_d = idx.to(device)
            with autocast(device, cfg["amp"]):
                s = student(x)
            loss, _ = combined_loss(weights, student=s.float(), teacher=feats[idx_d], text=text,
                                    labels=labels[idx_d], tau=cfg["tau"], k=cfg["k"], filter=cfg["filter"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    p.add_argument("--images", type=int, default=3000, help="X_train images (default 3000, CUB-sized)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    p.add_argument("--teacher-model", default="ViT-L-14")
    p.add_argument("--device", default="cuda", help="cuda (default) | cpu (a check of the script)")
    p.add_argument("--dir", type=Path, help="work folder (default: a temp folder)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/gpu.py: skipped: no CUDA GPU here (torch.cuda.is_available() is False)")
        if args.json:
            write_json_atomic(args.json, {"skipped": True, "reason": "no CUDA GPU"})
        return 0
    device = torch.device(args.device)
    work = args.dir or Path(tempfile.mkdtemp(prefix="vld-bench-gpu-"))
    t_all = time.perf_counter()
    root = work / "data"
    if not (root / "label2text.txt").exists():
        t0 = time.perf_counter()
        write_dataset(root, args.images, max(1, os.cpu_count() or 1))
        print(f"wrote the synthetic dataset in {time.perf_counter() - t0:.1f} s: {root}")
    ds = load_dataset("official", root=str(root))
    print(f"X_train {len(ds.train)}, X_id {len(ds.id)}, X_ood {len(ds.ood)} images; device "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    cache = work / "cache"
    teacher_opts = {"model": args.teacher_model, "pretrained": None, "device": args.device}

    # teacher encoding: the library path against the bare loop (X_train)
    teacher = load_teacher("openclip", **teacher_opts)
    bare_t = bare_teacher(teacher, ds.train, args.batch_size, args.workers, device)
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    feats = teacher_image_features(teacher, ds.train, dataset_id=ds.name, cache_dir=cache, batch_size=args.batch_size,
                                   num_workers=args.workers, progress=False)
    _sync(device)
    lib_t = time.perf_counter() - t0
    peak_teacher = _peak_gib(device)
    for split in (ds.id, ds.ood):
        teacher_image_features(teacher, split, dataset_id=ds.name, cache_dir=cache, batch_size=args.batch_size,
                               num_workers=args.workers, progress=False)
    text = teacher.encode_text([f"a photo of class {i}" for i in range(N_SEEN)])
    del teacher
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # training: the trainer (store, GPU augmentation, channels_last, bf16) against the bare loop
    cfg = {"dataset": "official", "dataset_options": {"root": str(root)}, "teacher": "openclip",
           "teacher_options": teacher_opts, "student": "resnet18", "epochs": args.epochs, "last_n": 1,
           "repeat_epochs": 1, "batch_size": args.batch_size, "eval_batch_size": 256, "device": args.device,
           "amp": True, "num_workers": args.workers, "per_image_aug": True, "fewshot": None,
           "eval_epochs": "last_n", "seed": 0, "weights": {"cls": 1.0, "mse": 1.0, "im_cst": 1.0, "vlprox": 1.0},
           "k": 256, "filter": True, "tau": 0.07}
    store = build_image_store(ds.train, cache, num_workers=args.workers)
    bare_s = bare_train(cfg, ds, store, feats, text, device, args.epochs)
    _reset_peak(device)
    rec = train(cfg, cache_dir=cache, progress=False)
    peak_train = _peak_gib(device)
    n = len(ds.train) * args.epochs
    out = {
        "skipped": False, "device": str(device), "n_train": len(ds.train), "epochs": args.epochs,
        "teacher_model": args.teacher_model,
        "teacher_img_s": len(ds.train) / lib_t, "teacher_bare_img_s": len(ds.train) / bare_t,
        "train_img_s": n / rec["timings"]["train_s"], "train_bare_img_s": n / bare_s,
        "peak_gpu_gib": {"teacher": peak_teacher, "train": peak_train},
        "total_s": time.perf_counter() - t_all,
    }
    out["teacher_ratio"] = out["teacher_img_s"] / out["teacher_bare_img_s"]
    out["train_ratio"] = out["train_img_s"] / out["train_bare_img_s"]
    print(f"teacher encoding ({args.teacher_model}): library {out['teacher_img_s']:8.1f} images/s, bare loop "
          f"{out['teacher_bare_img_s']:8.1f} images/s, ratio {out['teacher_ratio']:.3f}")
    print(f"training (resnet18)       : trainer {out['train_img_s']:8.1f} images/s, bare loop "
          f"{out['train_bare_img_s']:8.1f} images/s, ratio {out['train_ratio']:.3f}")
    if device.type == "cuda":
        print(f"peak GPU memory: teacher {peak_teacher:.2f} GiB, training {peak_train:.2f} GiB")
    print(f"total {out['total_s']:.0f} s")
    if args.json:
        write_json_atomic(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
