"""The distillation trainer (paper §2-§3, App. B-C): the only place that combines losses,
students, data and cached teacher features.

``train(config)`` runs one experiment declared as data (:class:`TrainConfig`) and returns its
result record, a JSON-serialisable dict:

1. load the dataset (X_train, X_id, X_ood) and the teacher image features of the three splits
   from the feature cache (the teacher is built only if something is missing from the cache);
2. class text features: seen classes (training, X_id evaluation) and unseen classes (zero-shot
   X_ood evaluation, OOD texts only), optionally enriched with descriptions (paper §6);
3. train the student (out_dim = teacher dim, in_chans = dataset channels) with
   ``L = Σ_n w_n L_n`` (``vldlib.losses.combined_loss``; Eqs. 1, 2, 3, 6) for ``epochs`` outer
   epochs of ``repeat_epochs`` passes over X_train; after each outer epoch the epoch-mean loss
   terms, the mean per-class accuracy on X_id (|Y_id|-way) and the zero-shot accuracy on X_ood
   (|Y_ood|-way, OOD texts only) in percent; a checkpoint every outer epoch (resumable);
4. optionally the analysis metrics (Table 2, Eqs. 4, 5, 7) of the trained student;
5. optionally 5-shot fine-tuning (§3.6, :mod:`vldlib.fewshot`): support = the first 5 images of
   every unseen class in sorted key order, removed from the evaluation set; labels over
   Y_id ∪ Y_ood; at most half of each batch from the support set; a fresh OneCycle optimiser.

Reported numbers (``record["final"]``) are the means over the last ``last_n`` outer epochs of
each stage (paper App. B): ``acc_id``, ``acc_ood_zeroshot`` and, after fine-tuning,
``acc_ood_5shot`` (|Y_ood|-way on the remaining OOD images) and ``acc_id_5shot``.

Classification rule everywhere: ŷ = argmax_y cos(S(x), T_txt(l(y))) (paper §3).
Same config -> same numbers on CPU: python, numpy and torch are seeded inside an isolated RNG
context; shuffling and augmentation draw from dedicated generators; every random state is part
of the checkpoint, so an interrupted run resumes to exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from vldlib.fewshot import fewshot_batches, fewshot_labels, select_support
from vldlib.trainconfig import LOSS_NAMES, TrainConfig, resolve_optim
from vldlib.trainenv import (CachedTextTeacher, LazyTeacher, git_commit, isolated_rng,
                             library_versions, rng_state, save_atomic, seed_everything,
                             set_rng_state)

__all__ = ["TrainConfig", "train", "main", "Interrupted"]

CHECKPOINT = "checkpoint.pt"
STUDENT = "student.pt"
STUDENT_FEWSHOT = "student_fewshot.pt"
#: In-memory splits smaller than this are preloaded as one float tensor (indexed per batch).
PRELOAD_BYTES = 2 * 2**30
SCHEMA = "vldbook.run/1"


class Interrupted(RuntimeError):
    """Raised by an ``on_epoch_end`` callback to stop a run after its checkpoint (tests, tools)."""


# ====================================================================== data access
class _Images:
    """Batches of loaded images of one split: an in-memory float tensor indexed per batch when
    the split is in memory (no per-item Python work), else a DataLoader over the files."""

    def __init__(self, labels: torch.Tensor, *, tensor: torch.Tensor | None = None, split=None,
                 num_workers: int = 0, pin: bool = False) -> None:
        self.labels = labels
        self.n = len(labels)
        self.tensor = tensor
        self.split = split
        self.num_workers = num_workers
        self.pin = pin

    @classmethod
    def of_split(cls, split, num_workers: int, device: torch.device) -> "_Images":
        from vldlib.data import TensorImageSplit  # noqa: PLC0415

        labels = torch.as_tensor(split.labels, dtype=torch.long)
        nbytes = len(split) * split.channels * split.load_size ** 2 * 4
        if isinstance(split, TensorImageSplit) and nbytes <= PRELOAD_BYTES:
            tensor = split.get_batch(range(len(split)))[0].contiguous().to(device)
            return cls(labels, tensor=tensor)
        return cls(labels, split=split, num_workers=num_workers, pin=device.type == "cuda")

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        if self.tensor is not None:
            for idx in index_batches:
                yield self.tensor[idx.to(self.tensor.device)]
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
        return self.split.get_batch(idx.tolist())[0]

    def subset(self, indices: Sequence[int]) -> "_Images":
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if self.tensor is not None:
            return _Images(self.labels[idx], tensor=self.tensor[idx.to(self.tensor.device)])
        return _Images(self.labels[idx], split=self.split.subset(idx.tolist()),
                       num_workers=self.num_workers, pin=self.pin)

    def mapped(self, transform: Callable, batch_size: int = 1024) -> "_Images":
        """In-memory images with a deterministic ``transform`` applied once (eval crops)."""
        assert self.tensor is not None
        out = torch.cat([transform(self.tensor[i]) for i in self.chunks(batch_size)]) if self.n else self.tensor
        return _Images(self.labels, tensor=out)


def _train_index_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled pass over ``range(n)`` in batches of ``batch_size``; a last batch of a single
    image is dropped (BatchNorm cannot train on one sample)."""
    perm = torch.randperm(n, generator=generator)
    out = list(perm.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()
    return out


@torch.no_grad()
def _embed(student: nn.Module, images: _Images, transform: Callable, device: torch.device,
           batch_size: int, amp: bool) -> torch.Tensor:
    """Student features ``[N, D]`` (fp32, on ``device``) of a split under ``transform``."""
    was_training = student.training
    student.eval()
    out = []
    for x in images.batches(images.chunks(batch_size)):
        x = transform(x.to(device, non_blocking=True))
        with _autocast(device, amp):
            out.append(student(x).float())
    student.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


class _EvalSet:
    """An evaluation split; its eval-transformed images are precomputed when they are in memory."""

    def __init__(self, images: _Images, transform: Callable) -> None:
        if images.tensor is not None:
            images, transform = images.mapped(transform), _identity
        self.images, self.transform, self.labels = images, transform, images.labels

    def embed(self, student: nn.Module, device: torch.device, batch_size: int, amp: bool) -> torch.Tensor:
        return _embed(student, self.images, self.transform, device, batch_size, amp)

    def subset(self, indices: Sequence[int]) -> "_EvalSet":
        out = _EvalSet.__new__(_EvalSet)
        out.images, out.transform = self.images.subset(indices), self.transform
        out.labels = out.images.labels
        return out


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _accuracy(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class top-1 accuracy in percent of ``argmax_y cos(features, text_y)``."""
    from vldlib.metrics import mean_per_class_accuracy, zero_shot_predict  # noqa: PLC0415

    pred = zero_shot_predict(features, text.to(features.device)).cpu()
    return 100.0 * float(mean_per_class_accuracy(pred, labels.cpu()))


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return device


# ====================================================================== optimisation
def _optimizer(params: Iterable[nn.Parameter], kind: str, lr: float, weight_decay: float,
               momentum: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _scheduler(opt: torch.optim.Optimizer, kind: str, epochs: int, lr: float):
    """Stepped once per outer epoch, as the official code does (paper §5.3).

    ``step``: x0.1 at round(E/3) and round(2E/3); ``onecycle``: ``OneCycleLR`` over E steps
    (PyTorch defaults: pct_start 0.3, cosine, div_factor 25); ``constant``: none."""
    if kind == "step":
        milestones = sorted({max(1, round(epochs / 3)), max(1, round(2 * epochs / 3))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(epochs, 2))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


# ====================================================================== the run
class _Stage:
    """What one training stage (main or few-shot) needs per step."""

    def __init__(self, *, weights: Mapping[str, float], text: torch.Tensor, config: TrainConfig) -> None:
        self.weights = {n: float(w) for n, w in weights.items() if float(w) > 0}
        self.text = text
        self.kw = dict(tau=float(config.tau), k=int(config.k), filter=bool(config.filter),
                       im_cst_mode=config.im_cst_mode, im_cst_filter=bool(config.im_cst_filter))


def _step(student: nn.Module, opt: torch.optim.Optimizer, stage: _Stage, x: torch.Tensor,
          t: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> dict[str, torch.Tensor]:
    from vldlib.losses import combined_loss  # noqa: PLC0415

    with _autocast(device, amp):
        s = student(x)
    total, terms = combined_loss(stage.weights, student=s.float(), teacher=t, text=stage.text,
                                 labels=y, **stage.kw)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    out = {f"loss_{n}": v.detach() for n, v in terms.items()}
    out["loss"] = total.detach()
    return out


class _Meter:
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


def train(config: TrainConfig | Mapping[str, Any], *, run_dir: str | os.PathLike | None = None,
          cache_dir: str | os.PathLike | None = None, progress: bool = True,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume) one run and return its result record (see the module docstring).

    ``run_dir``: where checkpoints and the final student weights go (None: nothing is saved and
    nothing resumes). ``cache_dir``: the teacher-feature cache (default: ``config.cache_dir``,
    else ``vldlib.features.default_cache_dir()``). ``on_epoch_end(info)`` is called after each
    outer epoch's checkpoint with ``{"stage", "epoch", "history"}``; raising
    :class:`Interrupted` there stops the run (it resumes from that checkpoint next time).
    Bad configs raise ``ValueError`` before any data is loaded.
    """
    cfg = TrainConfig.from_dict(config).validate()
    if cfg.dataset == "fashion-mnist" and cfg.descriptions == "official":
        raise ValueError("descriptions='official' needs an official dataset with chatgpt.txt; for "
                         "fashion-mnist use one of 'main', 'succinct', 'detailed', 'distinct' or None")
    if cfg.dataset == "official":
        root = Path(cfg.dataset_options["root"])
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {str(root)!r} does not exist; set "
                                    "dataset_options={'root': <folder with train/, val/, val_on_train/>}")
    device = _resolve_device(cfg.device)
    if cache_dir is None:
        cache_dir = cfg.cache_dir
    if cache_dir is None:
        from vldlib.features import default_cache_dir  # noqa: PLC0415

        cache_dir = default_cache_dir()
    threads = torch.get_num_threads()
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        with isolated_rng(deterministic=device.type == "cpu"):
            return _Run(cfg, device, Path(cache_dir), Path(run_dir) if run_dir else None,
                        progress, on_epoch_end).execute()
    finally:
        torch.set_num_threads(threads)


class _Run:
    def __init__(self, cfg: TrainConfig, device: torch.device, cache_dir: Path, run_dir: Path | None,
                 progress: bool, on_epoch_end: Callable | None) -> None:
        self.cfg, self.device, self.cache_dir, self.run_dir = cfg, device, cache_dir, run_dir
        self.progress, self.on_epoch_end = progress, on_epoch_end
        self.timings: dict[str, float] = {"teacher_features_s": 0.0, "train_s": 0.0, "train_cpu_s": 0.0,
                                          "eval_s": 0.0,
                                          "analysis_s": 0.0, "fewshot_train_s": 0.0, "fewshot_eval_s": 0.0}

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from vldlib.data import load_dataset, student_eval_transform, student_train_transform  # noqa: PLC0415
        from vldlib.features import teacher_image_features  # noqa: PLC0415

        cfg = self.cfg
        opts = dict(cfg.dataset_options)
        root = opts.pop("root", None)
        t0 = time.perf_counter()
        ds = load_dataset(cfg.dataset, root=root, **opts)
        self.timings["data_s"] = time.perf_counter() - t0
        self.ds = ds
        self.resolved = resolve_optim(cfg, len(ds.train))

        t0 = time.perf_counter()
        self.teacher = LazyTeacher(cfg.teacher, cfg.teacher_options, self.cache_dir / "teacher-meta")
        self.tfeat = {}
        for name, split in ds.splits.items():
            self.tfeat[name] = teacher_image_features(
                self.teacher, split, dataset_id=ds.name, cache_dir=self.cache_dir,
                num_workers=cfg.num_workers, progress=self.progress).float().to(self.device)
        self.text_seen, self.text_unseen = self._texts(cfg.descriptions)
        self.timings["teacher_features_s"] = time.perf_counter() - t0

        self.train_tf = student_train_transform(ds, per_image=cfg.per_image_aug)
        self.eval_tf = student_eval_transform(ds)
        self.images = {n: _Images.of_split(s, cfg.num_workers, self.device) for n, s in ds.splits.items()}
        self.evals = {n: _EvalSet(self.images[n], self.eval_tf) for n in ("id", "ood")}

    def _texts(self, descriptions: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        from vldlib.descriptions import class_text_features  # noqa: PLC0415

        desc = self._descriptions(descriptions)
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        kw = dict(mode=self.cfg.text_mode, template=self.cfg.template,
                  enriched_template=self.cfg.enriched_template)
        seen = class_text_features(enc, self.ds.seen_classes, desc, **kw)
        unseen = class_text_features(enc, self.ds.unseen_classes, desc, **kw)
        return seen.float().to(self.device), unseen.float().to(self.device)

    def _descriptions(self, which: str | None) -> dict[str, list[str]] | None:
        if which is None:
            return None
        if which == "official":
            if not self.ds.descriptions:
                raise ValueError(f"descriptions='official' but dataset {self.ds.name!r} has no "
                                 "chatgpt.txt; add it to the data root or choose a description variant")
            return self.ds.descriptions
        from vldlib.descriptions import load_descriptions  # noqa: PLC0415

        if self.cfg.dataset == "fashion-mnist":
            key = "fashion-mnist"
        else:
            key = self.cfg.dataset_options.get("name") or Path(self.cfg.dataset_options["root"]).name
        return load_descriptions(key, which)

    def _build_student(self) -> nn.Module:
        from vldlib.students import load_student  # noqa: PLC0415

        seed_everything(self.cfg.seed)
        student = load_student(self.cfg.student, out_dim=self.teacher.embed_dim,
                               in_chans=self.ds.channels, **self.cfg.student_options)
        return student.to(self.device)

    # ------------------------------------------------------------------ checkpoints
    def _save(self, stage: str, epoch: int) -> None:
        if self.run_dir is None:
            return
        state = {
            "hash": self.hash, "stage": stage, "epoch": epoch,
            "student": self.student.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "history": self.history,
            "fewshot_history": self.fs_history, "analysis": self.analysis,
            "rng": rng_state(self.gens), "timings": self.timings,
        }
        save_atomic(state, self.run_dir / CHECKPOINT)

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
            return None
        state = torch.load(self.run_dir / CHECKPOINT, map_location=self.device, weights_only=False)
        if state.get("hash") != self.hash:
            raise ValueError(f"{self.run_dir / CHECKPOINT} belongs to another config (hash "
                             f"{state.get('hash')}, this run {self.hash}); use a fresh run_dir or delete it")
        return state

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.fs_history = list(state["fewshot_history"])
        self.analysis = state["analysis"]
        set_rng_state(state["rng"], self.gens)
        for k, v in state["timings"].items():
            if k not in ("data_s", "teacher_features_s"):  # this session's setup times stay
                self.timings[k] = v

    def _epoch_done(self, stage: str, epoch: int) -> None:
        self._save(stage, epoch)
        if self.on_epoch_end is not None:
            self.on_epoch_end({"stage": stage, "epoch": epoch,
                               "history": self.history if stage == "main" else self.fs_history})

    # ------------------------------------------------------------------ stages
    def _evaluate(self, ood: "_EvalSet", ood_key: str) -> dict[str, float]:
        c = self.cfg
        f_id = self.evals["id"].embed(self.student, self.device, c.eval_batch_size, c.amp)
        f_ood = ood.embed(self.student, self.device, c.eval_batch_size, c.amp)
        return {"acc_id": _accuracy(f_id, self.text_seen, self.evals["id"].labels),
                ood_key: _accuracy(f_ood, self.text_unseen, ood.labels)}

    def _wants_eval(self, epoch: int, epochs: int, last_n: int) -> bool:
        return self.cfg.eval_epochs == "all" or epoch > epochs - last_n

    def _main_stage(self, start: int, bar) -> None:
        c, r = self.cfg, self.resolved
        stage = _Stage(weights=c.weights, text=self.text_seen, config=c)
        imgs, t_train = self.images["train"], self.tfeat["train"]
        y_all = imgs.labels.to(self.device)
        for epoch in range(start + 1, c.epochs + 1):
            lr = self.opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            c0 = time.process_time()
            meter = _Meter()
            self.student.train()
            for _ in range(r["repeat_epochs"]):
                batches = _train_index_batches(imgs.n, c.batch_size, self.gens["shuffle"])
                for idx, x in zip(batches, imgs.batches(batches)):
                    idx_d = idx.to(self.device)
                    x = self.train_tf(x.to(self.device, non_blocking=True), generator=self.gens["aug"])
                    terms = _step(self.student, self.opt, stage, x, t_train[idx_d], y_all[idx_d],
                                  self.device, c.amp)
                    meter.add(terms, len(idx))
            self.sched.step()
            entry: dict[str, Any] = {"epoch": epoch, "lr": lr, **meter.means()}
            dt = time.perf_counter() - t0
            self.timings["train_s"] += dt
            self.timings["train_cpu_s"] = self.timings.get("train_cpu_s", 0.0) + time.process_time() - c0
            entry["train_s"] = dt
            entry["acc_id"] = entry["acc_ood_zeroshot"] = None
            if self._wants_eval(epoch, c.epochs, c.last_n):
                t0 = time.perf_counter()
                entry.update(self._evaluate(self.evals["ood"], "acc_ood_zeroshot"))
                self.timings["eval_s"] += time.perf_counter() - t0
            self.history.append(entry)
            bar.update(1)
            bar.set_postfix(_postfix(entry))
            self._epoch_done("main", epoch)

    def _fewshot_setup(self) -> None:
        fs = self.resolved["fewshot"]
        ood = self.ds.ood
        self.support_idx, self.fs_eval_idx = select_support(ood.keys, ood.labels,
                                                            len(self.ds.unseen_classes), fs["shots"])
        self.support_keys = [ood.keys[i] for i in self.support_idx]
        self.sup_x = self.images["ood"].take(self.support_idx).to(self.device)
        self.sup_t = self.tfeat["ood"][torch.as_tensor(self.support_idx, device=self.device)]
        self.sup_y = self.images["ood"].labels[torch.as_tensor(self.support_idx)].to(self.device)
        self.fs_ood = self.evals["ood"].subset(self.fs_eval_idx)

    def _fewshot_stage(self, start: int, bar) -> None:
        c, fs = self.cfg, self.resolved["fewshot"]
        text_all = torch.cat([self.text_seen, self.text_unseen])
        stage = _Stage(weights=c.weights, text=text_all, config=c)
        imgs, t_train = self.images["train"], self.tfeat["train"]
        y_train = imgs.labels.to(self.device)
        n_seen = len(self.ds.seen_classes)
        last_n = min(c.last_n, fs["epochs"])
        for epoch in range(start + 1, fs["epochs"] + 1):
            lr = self.opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            meter = _Meter()
            self.student.train()
            plan = list(fewshot_batches(imgs.n, len(self.support_idx), fs["batch_size"], self.gens["shuffle"]))
            for (tr, sup), x_tr in zip(plan, imgs.batches([p[0] for p in plan])):
                tr_d, sup_d = tr.to(self.device), sup.to(self.device)
                x = torch.cat([x_tr.to(self.device, non_blocking=True), self.sup_x[sup_d]])
                t = torch.cat([t_train[tr_d], self.sup_t[sup_d]])
                y = fewshot_labels(y_train[tr_d], self.sup_y[sup_d], n_seen)
                x = self.train_tf(x, generator=self.gens["aug"])
                meter.add(_step(self.student, self.opt, stage, x, t, y, self.device, c.amp), len(y))
            self.sched.step()
            dt = time.perf_counter() - t0
            self.timings["fewshot_train_s"] += dt
            entry: dict[str, Any] = {"epoch": epoch, "lr": lr, **meter.means(), "train_s": dt,
                                     "acc_id": None, "acc_ood_5shot": None}
            if self._wants_eval(epoch, fs["epochs"], last_n):
                t0 = time.perf_counter()
                entry.update(self._evaluate(self.fs_ood, "acc_ood_5shot"))
                self.timings["fewshot_eval_s"] += time.perf_counter() - t0
            self.fs_history.append(entry)
            bar.update(1)
            bar.set_postfix(_postfix(entry))
            self._epoch_done("fewshot", epoch)

    def _fewshot_optimizer(self) -> None:
        fs = self.resolved["fewshot"]
        self.opt = _optimizer(self.student.parameters(), fs["optimizer"], fs["lr"], fs["weight_decay"],
                              self.cfg.momentum)
        self.sched = _scheduler(self.opt, "onecycle", fs["epochs"], fs["lr"])

    # ------------------------------------------------------------------ analysis
    def _analysis(self) -> dict[str, Any]:
        from vldlib.metrics import feature_error, m_neigh, m_rel, m_vlalign  # noqa: PLC0415

        t0 = time.perf_counter()
        seen_plain, unseen_plain = self._plain_texts()
        c = self.cfg
        out: dict[str, Any] = {"text": "plain template; Y_id texts on X_train/X_id, Y_ood on X_ood",
                               "student_transform": "eval (centre crop)"}
        for split, label, text in (("train", "X_train", seen_plain), ("id", "X_id", seen_plain),
                                   ("ood", "X_ood", unseen_plain)):
            s = _embed(self.student, self.images[split], self.eval_tf, self.device, c.eval_batch_size, c.amp)
            t = self.tfeat[split]
            mse, angle = feature_error(s, t)
            n = s.shape[0]
            neigh_k = [k for k in (3, 5, 10) if k < n]
            align_k = [k for k in (2, 3, 5) if k <= text.shape[0]]
            out[label] = {
                "mse": mse, "angle": angle, "m_rel": m_rel(s, t),
                "m_neigh": {str(k): v for k, v in m_neigh(s, t, neigh_k).items()} if neigh_k else {},
                "m_vlalign": {str(k): v for k, v in m_vlalign(s, t, text, align_k).items()} if align_k else {},
            }
        self.timings["analysis_s"] += time.perf_counter() - t0
        return out

    def _plain_texts(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.descriptions is None and self.cfg.text_mode == "first":
            return self.text_seen, self.text_unseen
        from vldlib.descriptions import class_text_features  # noqa: PLC0415

        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        kw = dict(mode="first", template=self.cfg.template)
        return (class_text_features(enc, self.ds.seen_classes, None, **kw).float().to(self.device),
                class_text_features(enc, self.ds.unseen_classes, None, **kw).float().to(self.device))

    # ------------------------------------------------------------------ main
    def execute(self) -> dict[str, Any]:
        from tqdm.auto import tqdm  # noqa: PLC0415

        from vldlib.runs import config_hash  # noqa: PLC0415

        t_start = time.perf_counter()
        cfg = self.cfg
        self.hash = config_hash(cfg)
        self._setup()
        self.student = self._build_student()
        self.gens = {"shuffle": torch.Generator().manual_seed(cfg.seed * 2 + 1),
                     "aug": torch.Generator().manual_seed(cfg.seed * 2 + 2)}
        r = self.resolved
        self.opt = _optimizer(self.student.parameters(), r["optimizer"], r["lr"], r["weight_decay"], cfg.momentum)
        self.sched = _scheduler(self.opt, r["schedule"], cfg.epochs, r["lr"])
        self.history: list[dict[str, Any]] = []
        self.fs_history: list[dict[str, Any]] = []
        self.analysis: dict[str, Any] | None = None

        state = self._load_checkpoint()
        resumed = None
        stage, done = "main", 0
        if state is not None:
            stage, done = state["stage"], int(state["epoch"])
            resumed = {"stage": stage, "epoch": done}
            if stage == "fewshot":
                self._fewshot_optimizer()
            self._restore(state)

        fs = r.get("fewshot")
        total = cfg.epochs + (fs["epochs"] if fs else 0)
        with tqdm(total=total, disable=not self.progress, desc=f"train {self.hash[:8]}",
                  initial=done + (cfg.epochs if stage == "fewshot" else 0), leave=False) as bar:
            if stage == "main":
                self._main_stage(done, bar)
                if cfg.analysis:
                    self.analysis = self._analysis()
                if self.run_dir is not None:
                    save_atomic(self.student.state_dict(), self.run_dir / STUDENT)
            fewshot_info = None
            if fs:
                self._fewshot_setup()
                if stage == "main":
                    self._fewshot_optimizer()
                    done = 0
                self._fewshot_stage(done, bar)
                if self.run_dir is not None:
                    save_atomic(self.student.state_dict(), self.run_dir / STUDENT_FEWSHOT)
                fewshot_info = {"support_size": len(self.support_idx), "eval_size": len(self.fs_eval_idx),
                                "support_keys": self.support_keys, "history": self.fs_history}
        self.timings["total_s"] = time.perf_counter() - t_start
        return self._record(fewshot_info, resumed)

    def _record(self, fewshot_info: dict[str, Any] | None, resumed: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.cfg
        final = {"acc_id": _last_mean(self.history, "acc_id", cfg.last_n),
                 "acc_ood_zeroshot": _last_mean(self.history, "acc_ood_zeroshot", cfg.last_n),
                 "loss": self.history[-1]["loss"] if self.history else None}
        if fewshot_info is not None:
            n = min(cfg.last_n, self.resolved["fewshot"]["epochs"])
            final["acc_ood_5shot"] = _last_mean(self.fs_history, "acc_ood_5shot", n)
            final["acc_id_5shot"] = _last_mean(self.fs_history, "acc_id", n)
        ds = self.ds
        return {
            "schema": SCHEMA,
            "hash": self.hash,
            "config": cfg.to_dict(),
            "resolved": self.resolved,
            "final": final,
            "history": self.history,
            "fewshot": fewshot_info,
            "analysis": self.analysis,
            "dataset": {"name": ds.name, **ds.summary(), "seen_classes": list(ds.seen_classes),
                        "unseen_classes": list(ds.unseen_classes)},
            "teacher": {"identifier": self.teacher.identifier, "embed_dim": self.teacher.embed_dim,
                        "loaded": self.teacher.loaded},
            "student": {"name": cfg.student, "parameters": sum(p.numel() for p in self.student.parameters())},
            "teacher_forward_passes": self.teacher.image_calls + self.teacher.text_calls,
            "teacher_forward_detail": self.teacher.forward_passes(),
            "timings": dict(self.timings),
            "throughput_img_s": _throughput(self.history, len(ds.train) * self.resolved["repeat_epochs"]),
            "versions": library_versions(),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "git_commit": git_commit(),
            "resumed_from": resumed,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


def _last_mean(history: Sequence[Mapping[str, Any]], key: str, n: int) -> float | None:
    vals = [h[key] for h in history[-n:] if h.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def _throughput(history: Sequence[Mapping[str, Any]], images_per_epoch: int) -> float | None:
    t = sum(h.get("train_s", 0.0) for h in history)
    return images_per_epoch * len(history) / t if t > 0 else None


def _postfix(entry: Mapping[str, Any]) -> dict[str, str]:
    out = {"loss": f"{entry['loss']:.3f}"}
    for k in ("acc_id", "acc_ood_zeroshot", "acc_ood_5shot"):
        if entry.get(k) is not None:
            out[k] = f"{entry[k]:.1f}"
    return out


# ====================================================================== command line
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
    p.add_argument("--dataset", help="fashion-mnist | official")
    p.add_argument("--data-root", help="dataset root (official: folder with train/ val/ val_on_train/)")
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
    p.add_argument("--threads", type=int, help="torch CPU threads for the run (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--print-config", action="store_true", help="print the config and its hash, train nothing")
    return p


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from vldlib.profiles import profile_config  # noqa: PLC0415

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
    if args.cache_dir:
        over["cache_dir"] = args.cache_dir
    if args.threads is not None:
        over["num_threads"] = args.threads
    return profile_config(args.profile, **over)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vldlib train``: train one run into the run store and print a summary."""
    from vldlib.runs import RunStore, config_hash  # noqa: PLC0415

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = config_from_args(args)
        TrainConfig.from_dict(config).validate()
    except ValueError as exc:
        print(f"vldlib train: {exc}", file=sys.stderr)
        return 2
    h = config_hash(config)
    if args.print_config:
        print(json.dumps({"hash": h, "config": config}, indent=1))
        return 0
    store = RunStore(args.out)
    try:
        record = store.run(config, force=args.force, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"vldlib train: {exc}", file=sys.stderr)
        return 2
    print(summary(record, store.run_dir(config)))
    return 0


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
