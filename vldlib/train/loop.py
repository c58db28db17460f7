"""The pieces of a training stage, shared by the main stage and 5-shot fine-tuning.

- :class:`Images`: batches of one split's images (an in-memory tensor indexed per batch, or a
  DataLoader over files); :class:`EvalSet`: an evaluation split with its eval crops precomputed.
- :func:`embed`, :func:`accuracy`: student features and the zero-shot rule
  ŷ = argmax_y cos(S(x), ê_y) (paper §3), scored as mean per-class accuracy
  (:mod:`vldlib.core.metrics`).
- :func:`make_optimizer`, :func:`make_scheduler`: the paper's optimisers and epoch-stepped
  schedules (§5.3).
- :class:`LossSpec`, :func:`train_step`: one optimisation step of ``L = Σ_n w_n L_n``
  (:func:`vldlib.core.losses.combined_loss`).
- :func:`run_epoch`: one outer epoch over an iterator of ``(x, t, y)`` batches, returning the
  sample-weighted mean loss terms. Both stages of :mod:`vldlib.train.trainer` call it.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from vldlib.core.losses import combined_loss
from vldlib.core.metrics import per_class_accuracy, zero_shot_predict
from vldlib.data import FileImageSplit, TensorImageSplit
from vldlib.data.imagestore import (HEADROOM, ImageStore, build_image_store, fits_on_disk, store_nbytes,
                                    to_unit_float)
from vldlib.device import autocast
from vldlib.diskspace import free_bytes, human_bytes
from vldlib.progress import Progress
from vldlib.train.distributed import shard

__all__ = ["Images", "images_of_splits", "EvalSet", "train_index_batches", "embed", "accuracy", "class_accuracies", "mean_accuracy", "make_optimizer",
           "make_scheduler", "LossSpec", "train_step", "Meter", "run_epoch", "PRELOAD_BYTES"]

#: In-memory splits smaller than this are preloaded as one float tensor (indexed per batch).
PRELOAD_BYTES = 2 * 2**30


# ====================================================================== data access
class Images:
    """Batches of loaded images of one split, float in [0, 1], by one of three paths:

    - ``tensor``: an in-memory float tensor indexed per batch (no per-item Python work);
    - ``store``: the split's uint8 memory-mapped store (:mod:`vldlib.data.imagestore`, each image
      decoded once), batches moved to ``device`` as uint8 and turned into floats there;
    - else a DataLoader over the files (decoded every epoch: data that does not fit on disk).
    """

    def __init__(self, labels: torch.Tensor, *, tensor: torch.Tensor | None = None, split=None,
                 num_workers: int = 0, pin: bool = False, store: ImageStore | None = None,
                 rows: torch.Tensor | None = None, device: torch.device | None = None) -> None:
        self.labels = labels
        self.n = len(labels)
        self.tensor = tensor
        self.split = split
        self.num_workers = num_workers
        self.pin = pin
        self.store = store
        self.rows = rows if rows is not None else torch.arange(self.n)
        self.device = device or torch.device("cpu")

    @classmethod
    def of_split(cls, split, num_workers: int, device: torch.device,
                 cache_dir: str | None = None, *, progress: bool | Progress = False,
                 store: bool | None = None) -> "Images":
        """In memory when the split is a small tensor split; from its uint8 store when it is
        file-backed, ``cache_dir`` is given and the store fits on disk (``store``: that decision
        made by the caller, :func:`images_of_splits`); else a DataLoader."""
        labels = torch.as_tensor(split.labels, dtype=torch.long)
        nbytes = len(split) * split.channels * split.load_size ** 2 * 4
        if isinstance(split, TensorImageSplit) and nbytes <= PRELOAD_BYTES:
            tensor = split.get_batch(range(len(split)))[0].contiguous().to(device)
            return cls(labels, tensor=tensor)
        if store is None:
            store = cache_dir is not None and isinstance(split, FileImageSplit) and fits_on_disk(split, cache_dir)
        if store:
            built = build_image_store(split, cache_dir, num_workers=num_workers, progress=progress)
            return cls(labels, store=built, pin=device.type == "cuda", device=device)
        return cls(labels, split=split, num_workers=num_workers, pin=device.type == "cuda")

    def _from_store(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.store.batch(self.rows[idx.cpu()])
        if self.pin:
            x = x.pin_memory()
        return to_unit_float(x.to(self.device, non_blocking=True))

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        if self.tensor is not None:
            for idx in index_batches:
                yield self.tensor[idx.to(self.tensor.device)]
            return
        if self.store is not None:
            for idx in index_batches:
                yield self._from_store(idx)
            return
        loader = torch.utils.data.DataLoader(
            self.split, batch_sampler=[idx.tolist() for idx in index_batches],
            num_workers=self.num_workers, pin_memory=self.pin)
        for images, _ in loader:
            yield images

    def chunks(self, batch_size: int) -> list[torch.Tensor]:
        return [torch.arange(i, min(i + batch_size, self.n)) for i in range(0, self.n, batch_size)]

    def take(self, indices: Sequence[int]) -> torch.Tensor:
        """A few images by index (support sets)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if self.tensor is not None:
            return self.tensor[idx.to(self.tensor.device)]
        if self.store is not None:
            return self._from_store(idx)
        return self.split.get_batch(idx.tolist())[0]

    def subset(self, indices: Sequence[int]) -> "Images":
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if self.tensor is not None:
            return Images(self.labels[idx], tensor=self.tensor[idx.to(self.tensor.device)])
        if self.store is not None:
            return Images(self.labels[idx], store=self.store, rows=self.rows[idx], pin=self.pin,
                          device=self.device)
        return Images(self.labels[idx], split=self.split.subset(idx.tolist()),
                      num_workers=self.num_workers, pin=self.pin)

    def mapped(self, transform: Callable, batch_size: int = 1024) -> "Images":
        """In-memory images with a deterministic ``transform`` applied once (eval crops)."""
        if self.tensor is None:
            raise ValueError("mapped() needs in-memory images; file-backed splits keep their transform")
        out = torch.cat([transform(self.tensor[i]) for i in self.chunks(batch_size)]) if self.n else self.tensor
        return Images(self.labels, tensor=out)


def images_of_splits(splits: Mapping[str, Any], num_workers: int, device: torch.device,
                     cache_dir: str | os.PathLike | None, *, progress: bool | Progress = False,
                     ) -> dict[str, Images]:
    """:meth:`Images.of_split` of every split; the file-backed splits whose uint8 store does not
    fit on the cache's disk are named in one warning (the size they need, the space free, the
    fallback: their files decoded every epoch)."""
    short = [n for n, s in splits.items() if cache_dir is not None and isinstance(s, FileImageSplit)
             and not fits_on_disk(s, cache_dir)]
    if short:
        need, free = sum(store_nbytes(splits[n]) for n in short), free_bytes(cache_dir)
        warnings.warn(f"image store: the decoded images of {', '.join(short)} need {human_bytes(need)} "
                      f"({HEADROOM:g}x kept free: {human_bytes(HEADROOM * need)}) on the disk of {cache_dir}, "
                      f"which has {'unknown space' if free is None else human_bytes(free)} free; these splits are decoded from their JPEG files every "
                      "epoch instead (slower); free space there or set cache_dir ($VLD_CACHE) to a larger disk",
                      RuntimeWarning, stacklevel=2)
    return {n: Images.of_split(s, num_workers, device, None if cache_dir is None else str(cache_dir),
                               progress=progress,
                               store=cache_dir is not None and isinstance(s, FileImageSplit) and n not in short)
            for n, s in splits.items()}


def train_index_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled pass over ``range(n)`` in batches of ``batch_size``; a last batch of a single
    image is dropped (BatchNorm cannot train on one sample). Under torchrun every rank draws the
    same permutation and takes its shard of it (:func:`vldlib.train.distributed.shard`)."""
    return shard(torch.randperm(n, generator=generator), batch_size)


@torch.no_grad()
def embed(student: nn.Module, images: Images, transform: Callable, device: torch.device,
          batch_size: int, amp: bool | str) -> torch.Tensor:
    """Student features ``[N, D]`` (fp32, on ``device``) of a split under ``transform``."""
    was_training = student.training
    student.eval()
    out = []
    for x in images.batches(images.chunks(batch_size)):
        x = transform(x.to(device, non_blocking=True))
        with autocast(device, amp):
            out.append(student(x).float())
    student.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class EvalSet:
    """An evaluation split; its eval-transformed images are precomputed when they are in memory."""

    def __init__(self, images: Images, transform: Callable) -> None:
        if images.tensor is not None:
            images, transform = images.mapped(transform), _identity
        self.images, self.transform, self.labels = images, transform, images.labels

    def embed(self, student: nn.Module, device: torch.device, batch_size: int, amp: bool | str) -> torch.Tensor:
        return embed(student, self.images, self.transform, device, batch_size, amp)

    def subset(self, indices: Sequence[int]) -> "EvalSet":
        out = EvalSet.__new__(EvalSet)
        out.images, out.transform = self.images.subset(indices), self.transform
        out.labels = out.images.labels
        return out


def class_accuracies(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Top-1 accuracy in percent of each class (row of ``text``) of ``argmax_y cos(features, text_y)``;
    NaN for a class without images."""
    pred = zero_shot_predict(features, text.to(features.device)).cpu()
    return (100.0 * per_class_accuracy(pred, labels.cpu(), text.shape[0])).tolist()


def mean_accuracy(per_class: Sequence[float]) -> float:
    """Mean per-class accuracy (paper §3) from :func:`class_accuracies` (classes without images left out)."""
    kept = [v for v in per_class if v == v]
    return sum(kept) / len(kept)


def accuracy(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class top-1 accuracy in percent of ``argmax_y cos(features, text_y)`` (paper §3)."""
    return mean_accuracy(class_accuracies(features, text, labels))


# ====================================================================== optimisation
def make_optimizer(params: Iterable[nn.Parameter], kind: str, lr: float, weight_decay: float,
                   momentum: float) -> torch.optim.Optimizer:
    """``sgd`` (with momentum) or ``adamw`` (paper §5.3)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, kind: str, epochs: int, lr: float):
    """Stepped once per outer epoch, as the official code does (paper §5.3).

    ``step``: x0.1 at round(E/3) and round(2E/3); ``onecycle``: ``OneCycleLR`` over E steps
    (PyTorch defaults: pct_start 0.3, cosine, div_factor 25); ``constant``: none."""
    if kind == "step":
        milestones = sorted({max(1, round(epochs / 3)), max(1, round(2 * epochs / 3))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(epochs, 2))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


class LossSpec:
    """The loss of one stage: positive weights, the class text features, the loss options.

    ``text`` is a ``[C, D]`` tensor, or a function returning it that is called at every step
    (prompt learning: the features come from the current learned context)."""

    def __init__(self, *, weights: Mapping[str, float], text: torch.Tensor | Callable[[], torch.Tensor],
                 tau: float, k: int,
                 filter: bool, im_cst_mode: str, im_cst_filter: bool) -> None:
        self.weights = {n: float(w) for n, w in weights.items() if float(w) > 0}
        self.text = text
        self.kw = dict(tau=float(tau), k=int(k), filter=bool(filter), im_cst_mode=im_cst_mode,
                       im_cst_filter=bool(im_cst_filter))

    @classmethod
    def of_config(cls, config: Any, text: torch.Tensor | Callable[[], torch.Tensor]) -> "LossSpec":
        return cls(weights=config.weights, text=text, tau=config.tau, k=config.k, filter=config.filter,
                   im_cst_mode=config.im_cst_mode, im_cst_filter=config.im_cst_filter)


    def without(self, *names: str) -> "LossSpec":
        """The same loss with the terms ``names`` left out (e.g. L_cap where no captions exist)."""
        out = LossSpec.__new__(LossSpec)
        out.weights = {n: w for n, w in self.weights.items() if n not in names}
        out.text, out.kw = self.text, dict(self.kw)
        return out


def train_step(student: nn.Module, opt: torch.optim.Optimizer, loss: LossSpec, x: torch.Tensor,
               t: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool | str,
               captions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One step: forward, ``L = Σ_n w_n L_n`` on fp32 features, backward, update.
    ``captions``: the batch's caption features (L_cap only). Returns the detached terms
    (``loss_<name>``) and the total (``loss``)."""
    if x.is_cuda and x.dim() == 4:  # NHWC to match a channels_last student
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        s = student(x)
    text = loss.text() if callable(loss.text) else loss.text
    total, terms = combined_loss(loss.weights, student=s.float(), teacher=t, text=text,
                                 labels=y, captions=captions, **loss.kw)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    out = {f"loss_{n}": v.detach() for n, v in terms.items()}
    out["loss"] = total.detach()
    return out


class Meter:
    """Sample-weighted means of the loss terms over an epoch (kept on device, one sync per epoch)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: Mapping[str, torch.Tensor], n: int) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0) + v.float() * n
        self.count += n

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}


def run_epoch(student: nn.Module, opt: torch.optim.Optimizer, loss: LossSpec,
              batches: Iterable[tuple[torch.Tensor, ...]], *,
              augment: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
              amp: bool | str, meter: Meter | None = None) -> dict[str, float]:
    """One pass over ``batches`` of ``(x, t, y)`` or ``(x, t, y, captions)`` (images on
    ``device``, teacher features, labels, caption features): augment, :func:`train_step`,
    accumulate. ``amp``: the precision (``True``/``"bf16"``: bf16 autocast). Returns the
    epoch-mean loss terms. ``meter``: the caller's accumulator, which still holds the terms of
    the steps done when a step raises (the trainer names the terms of a diverging run)."""
    meter = Meter() if meter is None else meter
    student.train()
    for x, t, y, *extra in batches:
        x = augment(x)
        meter.add(train_step(student, opt, loss, x, t, y, device, amp, extra[0] if extra else None), len(y))
    return meter.means()
