"""Student-augmentation speed: per-image RandomResizedCrop+flip on a batch, three ways.

Compares (one run, same machine, same thread count) the implementation in
``vldlib.data.transforms`` (separable bilinear matrices, two batched matmuls) with one
``grid_sample`` call for the batch, a per-image loop over
``torchvision.transforms.v2.functional.resized_crop`` and the official once-per-batch draw.
Prints images/s and ratios.

    python benchmarks/transforms.py [--threads 1] [--repeats 20]
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms.v2.functional as TF

from vldlib.data.transforms import StudentTrainTransform, resized_crop_grid, sample_crop_params


def loop_rrc(x: torch.Tensor, crop: int, g: torch.Generator, mean, std) -> torch.Tensor:
    boxes = sample_crop_params(x.shape[0], x.shape[2], x.shape[3], generator=g)
    flips = torch.rand(x.shape[0], generator=g) < 0.5
    out = []
    for img, (i, j, h, w), f in zip(x, boxes.tolist(), flips.tolist()):
        o = TF.resized_crop(img, i, j, h, w, [crop, crop], antialias=True)
        out.append(o.flip(-1) if f else o)
    return TF.normalize(torch.stack(out), mean, std)


def grid_rrc(x: torch.Tensor, crop: int, g: torch.Generator, mean, std) -> torch.Tensor:
    boxes = sample_crop_params(x.shape[0], x.shape[2], x.shape[3], generator=g)
    flips = torch.rand(x.shape[0], generator=g) < 0.5
    return TF.normalize(resized_crop_grid(x, boxes, crop, flips), mean, std)


def bench(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    for label, b, c, s, crop in (("offline Fashion-MNIST", 256, 1, 32, 28),
                                 ("paper ImageNet-size", 128, 3, 256, 224)):
        x = torch.rand(b, c, s, s)
        mean, std = [0.5] * c, [0.25] * c
        g = torch.Generator().manual_seed(0)
        grid = StudentTrainTransform(crop, mean, std, per_image=True)
        batch = StudentTrainTransform(crop, mean, std, per_image=False)
        reps = args.repeats if s < 100 else max(2, args.repeats // 5)
        mm = StudentTrainTransform(crop, mean, std, per_image=True, method="matmul")
        t_auto = bench(lambda: grid(x, generator=g), reps)
        t_mm = bench(lambda: mm(x, generator=g), reps)
        t_grid = bench(lambda: grid_rrc(x, crop, g, mean, std), reps)
        t_loop = bench(lambda: loop_rrc(x, crop, g, mean, std), reps)
        t_batch = bench(lambda: batch(x, generator=g), reps)
        print(f"{label}: batch {b}x{c}x{s}x{s} -> {crop}")
        print(f"  per-image, library    : {b / t_auto:10.0f} img/s  (method=auto)")
        print(f"  per-image matmul      : {b / t_mm:10.0f} img/s")
        print(f"  per-image grid_sample : {b / t_grid:10.0f} img/s")
        print(f"  per-image v2 loop     : {b / t_loop:10.0f} img/s")
        print(f"  once-per-batch draw   : {b / t_batch:10.0f} img/s")
        print(f"  library vs v2 loop: {t_loop / t_auto:.2f}x faster; vs grid_sample: "
              f"{t_grid / t_auto:.2f}x faster; per-image costs {t_auto / t_batch:.2f}x the per-batch time")


if __name__ == "__main__":
    main()
