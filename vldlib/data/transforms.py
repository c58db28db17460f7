"""Student transforms on batch tensors (paper §4.5 / reference §4.5).

Images arrive loaded and resized to ``load_size`` (``[B, C, S, S]`` in [0, 1]). Then:

- training: ``RandomResizedCrop(crop_size, scale=(0.08, 1), ratio=(3/4, 4/3))``, horizontal flip
  with p = 0.5, normalisation ``(x - mean) / std``;
- evaluation: ``CenterCrop(crop_size)`` and the same normalisation.

``per_image=True`` (default) draws crop and flip independently for every image; ``per_image=False``
reproduces the official code, which applies torchvision transforms to the 4-D batch so that one draw
is shared by the whole batch (reference §8 quirk 8).

Crop parameters follow ``torchvision.transforms.RandomResizedCrop.get_params``: up to 10 attempts of
area ``A·U(scale)`` and log-uniform aspect ratio, keep the first crop that fits, else a centre crop
clamped to ``ratio``. Crops are resampled for the whole batch at once by two batched matmuls with
per-image bilinear matrices (:func:`resized_crop`), which equals ``F.interpolate`` of each sliced
crop (bilinear, ``align_corners=False``, no antialias - torchvision's tensor default when the
official code was written; the RRC scale factor is at most 256/224, so aliasing is negligible).
For large images on CPU a per-image ``F.interpolate`` loop on the sliced crops gives the same
numbers faster (``method="auto"`` picks; see ``benchmarks/transforms.py``).
Randomness comes from the
``generator`` passed at call time, else the one given at construction, else torch's global RNG
(seeded by the trainer), so a seed fixes every draw.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .splits import DatasetSplits


def _normalizer(mean: Sequence[float], std: Sequence[float]):
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    if (s <= 0).any():
        raise ValueError(f"std must be positive, got {tuple(std)}")

    def normalize(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != m.shape[1]:
            raise ValueError(f"batch has {x.shape[1]} channels but the dataset normalisation has "
                             f"{m.shape[1]}; pass images of this dataset ([B, {m.shape[1]}, S, S])")
        return (x - m.to(x.device, x.dtype)) / s.to(x.device, x.dtype)

    return normalize


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"expected an image batch [B, C, H, W] (or one image [C, H, W]), got shape "
                         f"{tuple(x.shape)}")
    return x, False


def sample_crop_params(n: int, height: int, width: int, *, scale: tuple[float, float] = (0.08, 1.0),
                       ratio: tuple[float, float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None,
                       attempts: int = 10) -> torch.Tensor:
    """``n`` RandomResizedCrop boxes ``[n, 4]`` = (top i, left j, height h, width w), int64.

    The torchvision algorithm, vectorised: ``attempts`` tries of area ``H·W·U(scale)`` and aspect
    ``exp(U(log r0, log r1))``, ``w = round(sqrt(area·aspect))``, ``h = round(sqrt(area/aspect))``;
    the first try with ``0 < w ≤ W, 0 < h ≤ H`` is kept with ``i ~ U{0..H-h}``, ``j ~ U{0..W-w}``;
    otherwise the centre crop clamped to the ratio range (:func:`crop_params_from_uniforms`).
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, attempts, 2, generator=generator, dtype=torch.float64, device=dev).cpu()
    pos = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=dev).cpu()
    return crop_params_from_uniforms(u, pos, height, width, scale=scale, ratio=ratio)


def crop_params_from_uniforms(u: torch.Tensor, pos: torch.Tensor, height: int, width: int, *,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """The boxes of :func:`sample_crop_params` from its uniform draws: ``u`` ``[n, attempts, 2]``
    (area and log-aspect of each try) and ``pos`` ``[n, 2]`` (the box's position), float64 in [0, 1)."""
    n = u.shape[0]
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.int(), dim=1)
    any_ok = ok.any(dim=1)
    rows = torch.arange(n)
    h_sel, w_sel = h[rows, first], w[rows, first]
    # fallback: whole image clamped to the ratio range, centred
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h_sel = torch.where(any_ok, h_sel, torch.full_like(h_sel, fh))
    w_sel = torch.where(any_ok, w_sel, torch.full_like(w_sel, fw))
    i = torch.floor(pos[:, 0] * (height - h_sel + 1)).long().clamp_(max=height - h_sel)
    j = torch.floor(pos[:, 1] * (width - w_sel + 1)).long().clamp_(max=width - w_sel)
    i = torch.where(any_ok, i, (height - h_sel) // 2)
    j = torch.where(any_ok, j, (width - w_sel) // 2)
    return torch.stack([i, j, h_sel, w_sel], dim=1)


def _axis_weights(start: torch.Tensor, length: torch.Tensor, size: int, full: int,
                  dtype: torch.dtype) -> torch.Tensor:
    """Bilinear resampling matrices ``[B, size, full]`` for crops ``[start, start + length)``.

    Output ``u`` samples ``p = start + (u + 1/2)·length/size − 1/2`` clamped to the crop, with
    weights ``1 − frac`` at ``floor(p)`` and ``frac`` at ``min(floor(p) + 1, start + length − 1)``:
    exactly ``F.interpolate(crop, mode="bilinear", align_corners=False)`` (no antialias).
    """
    b = start.shape[0]
    start = start.to(torch.float64).view(b, 1)
    length = length.to(torch.float64).view(b, 1)
    u = torch.arange(size, dtype=torch.float64, device=start.device).view(1, size)
    p = start + (u + 0.5) * length / size - 0.5
    p = torch.maximum(torch.minimum(p, start + length - 1), start)
    i0 = torch.floor(p)
    frac = (p - i0).to(dtype)
    i1 = torch.minimum(i0 + 1, start + length - 1).long()
    w = torch.zeros(b, size, full, dtype=dtype, device=start.device)
    w.scatter_add_(2, i0.long().unsqueeze(2), (1 - frac).unsqueeze(2))
    w.scatter_add_(2, i1.unsqueeze(2), frac.unsqueeze(2))
    return w


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop ``boxes[b] = (i, j, h, w)`` of each image of ``x`` ``[B, C, H, W]`` and resize it to
    ``size x size`` (bilinear, ``align_corners=False``, no antialias), mirrored horizontally where
    ``flip[b]``. Separable: ``out_b = R_y(b) · x_b · R_x(b)ᵀ`` with the matrices of
    :func:`_axis_weights`, two batched matmuls for the whole batch (one box broadcasts to all)."""
    b, _, height, width = x.shape
    boxes = boxes.to(x.device).expand(b, 4) if boxes.shape[0] == 1 else boxes.to(x.device)
    i, j, h, w = boxes.unbind(1)
    ry = _axis_weights(i, h, size, height, x.dtype)           # [B, size, H]
    rx = _axis_weights(j, w, size, width, x.dtype)            # [B, size, W]
    if flip is not None:
        flip = flip.to(x.device).expand(b) if flip.numel() == 1 else flip.to(x.device)
        rx = torch.where(flip.view(b, 1, 1), rx.flip(1), rx)
    return torch.matmul(torch.matmul(ry.unsqueeze(1), x), rx.transpose(1, 2).unsqueeze(1))


def resized_crop_loop(x: torch.Tensor, boxes: torch.Tensor, size: int,
                      flip: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`resized_crop` as a per-image loop of ``F.interpolate`` on the sliced crops (the
    faster choice for large images on CPU, where the matmuls touch every pixel)."""
    b = x.shape[0]
    if boxes.shape[0] == 1 and (flip is None or flip.numel() == 1):  # one draw for the batch
        i, j, h, w = boxes[0].tolist()
        out = F.interpolate(x[:, :, i:i + h, j:j + w], size=(size, size), mode="bilinear",
                            align_corners=False)
        return out.flip(-1) if flip is not None and bool(flip.flatten()[0]) else out
    boxes = boxes.expand(b, 4) if boxes.shape[0] == 1 else boxes
    flips = [False] * b if flip is None else (flip.expand(b) if flip.numel() == 1 else flip).tolist()
    out = torch.empty(b, x.shape[1], size, size, dtype=x.dtype, device=x.device)
    for k, ((i, j, h, w), f) in enumerate(zip(boxes.tolist(), flips)):
        o = F.interpolate(x[k:k + 1, :, i:i + h, j:j + w], size=(size, size), mode="bilinear",
                          align_corners=False)
        out[k] = o[0].flip(-1) if f else o[0]
    return out


def resized_crop_grid(x: torch.Tensor, boxes: torch.Tensor, size: int,
                      flip: torch.Tensor | None = None) -> torch.Tensor:
    """Same crops with one ``grid_sample`` call (kept for the benchmark): equal to
    :func:`resized_crop` except that an upsampled crop's outermost ring also blends in the pixels
    just outside the crop."""
    b, _, height, width = x.shape
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    i, j, h, w = boxes.unbind(1)
    sx, sy = w / width, h / height
    cx, cy = (2 * j + w) / width - 1, (2 * i + h) / height - 1
    if flip is not None:
        sx = torch.where(flip.to(x.device), -sx, sx)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_crops(x: torch.Tensor, boxes: torch.Tensor, size: int, flips: torch.Tensor | None = None,
                 method: str = "auto") -> torch.Tensor:
    """:func:`resized_crop` (``"matmul"``) or :func:`resized_crop_loop` (``"loop"``) of ``x`` as
    float; ``"auto"`` picks the matmuls on CUDA or for images of at most 128 x 128 pixels, else the
    loop (measured by ``benchmarks/transforms.py``)."""
    if method == "auto":
        method = "matmul" if x.is_cuda or x.shape[2] * x.shape[3] <= 128 * 128 else "loop"
    resize = resized_crop if method == "matmul" else resized_crop_loop
    return resize(x.float(), boxes, size, flips)


class StudentTrainTransform:
    """RandomResizedCrop + horizontal flip + normalisation on a batch (see module docstring).

    ``t(x, generator=None)``: ``x`` is ``[B, C, S, S]`` (or ``[C, S, S]``) in [0, 1]; returns
    ``[B, C, crop, crop]`` normalised.
    """

    def __init__(self, crop_size: int, mean: Sequence[float], std: Sequence[float], *,
                 per_image: bool = True, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                 generator: torch.Generator | None = None, method: str = "auto") -> None:
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got "
                             f"scale={scale}, ratio={ratio}")
        self.crop_size, self.per_image, self.flip = int(crop_size), bool(per_image), bool(flip)
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.generator = generator
        if method not in ("auto", "matmul", "loop"):
            raise ValueError(f"method must be 'auto', 'matmul' or 'loop', got {method!r}")
        self.method = method
        self.normalize = _normalizer(mean, std)

    def __repr__(self) -> str:
        return (f"StudentTrainTransform(crop_size={self.crop_size}, per_image={self.per_image}, "
                f"scale={self.scale}, ratio={self.ratio}, flip={self.flip})")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x, single = _as_batch(x)
        g = generator if generator is not None else self.generator
        n = x.shape[0] if self.per_image else 1
        boxes = sample_crop_params(n, x.shape[2], x.shape[3], scale=self.scale, ratio=self.ratio,
                                   generator=g)
        dev = g.device if g is not None else torch.device("cpu")
        flips = ((torch.rand(n, generator=g, device=dev) < 0.5).cpu() if self.flip
                 else torch.zeros(n, dtype=torch.bool))
        out = self.replay(x, boxes, flips)
        return out[0] if single else out

    def replay(self, x: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
               size: int | None = None, normalize: bool = True) -> torch.Tensor:
        """Crops ``boxes`` ``[B or 1, 4]`` of a batch ``[B, C, S, S]``, mirrored where ``flips``,
        resized to ``size`` (default ``crop_size``) and normalised (unless ``normalize=False``): the
        draw of :meth:`__call__` applied as given (stored teacher views replay it)."""
        out = resize_crops(x, boxes, self.crop_size if size is None else int(size), flips, self.method)
        return self.normalize(out) if normalize else out


class StudentEvalTransform:
    """Centre crop ``crop_size`` (torchvision's rounding) + normalisation on a batch."""

    def __init__(self, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size = int(crop_size)
        self.normalize = _normalizer(mean, std)

    def __repr__(self) -> str:
        return f"StudentEvalTransform(crop_size={self.crop_size})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, single = _as_batch(x)
        height, width = x.shape[-2:]
        if height < self.crop_size or width < self.crop_size:
            raise ValueError(f"images of {height}x{width} are smaller than crop_size={self.crop_size}")
        top = int(round((height - self.crop_size) / 2.0))
        left = int(round((width - self.crop_size) / 2.0))
        out = self.normalize(x[:, :, top:top + self.crop_size, left:left + self.crop_size].float())
        return out[0] if single else out


def student_train_transform(ds: DatasetSplits, per_image: bool = True, **options) -> StudentTrainTransform:
    """The paper's student training augmentation for ``ds`` (options: scale, ratio, flip, generator)."""
    return StudentTrainTransform(ds.crop_size, ds.mean, ds.std, per_image=per_image, **options)


def student_eval_transform(ds: DatasetSplits) -> StudentEvalTransform:
    """Centre crop ``ds.crop_size`` and normalise by ``ds.mean`` / ``ds.std``."""
    return StudentEvalTransform(ds.crop_size, ds.mean, ds.std)
