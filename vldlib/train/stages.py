"""The trainer's stage loop (main and 5-shot stages share it), evaluation, the health check of
each epoch, and the analysis metrics of the trained student (Table 2, Eqs. 4, 5, 7)."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from vldlib.core.metrics import feature_error, m_neigh, m_rel, m_vlalign
from vldlib.features import image_feature_file, text_feature_folder
from vldlib.models.students import load_student
import vldlib.train.distributed as dist
from vldlib.train.health import check_outputs, check_run
from vldlib.train.loop import (EvalSet, LossSpec, Meter, accuracy, class_accuracies, embed, mean_accuracy,
                               run_epoch, train_index_batches)
from vldlib.train.state import seed_everything

__all__ = ["RunStages"]


class RunStages:
    """The student, its stages and their evaluation (a part of ``vldlib.train.trainer._Run``)."""

    def _build_student(self) -> nn.Module:
        seed_everything(self.cfg.seed)
        student = load_student(self.cfg.student, out_dim=self.teacher.embed_dim,
                               in_chans=self.ds.channels, **self.cfg.student_options)
        if self.device.type == "cuda":  # NHWC convolutions (tensor cores); inputs follow in train_step
            student = student.to(memory_format=torch.channels_last)
        return student.to(self.device)

    def _parallel(self) -> nn.Module:
        """The module that trains: the student, wrapped in DistributedDataParallel under torchrun."""
        if not dist.active():
            return self.student
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.student, device_ids=ids)

    def _evaluate(self, oods: Sequence[tuple[str, EvalSet, torch.Tensor | None, int]]) -> dict[str, float]:
        """X_id accuracy and, for each ``(key, eval set, class texts, label offset)``, the accuracy
        of the eval set among those classes (labels minus the offset index the texts)."""
        c = self.cfg
        self._refresh_prompt_texts()
        f_id = check_outputs(self.evals["id"].embed(self.student, self.device, c.eval_batch_size, self.precision), "X_id")
        out = {"acc_id": accuracy(f_id, self.text_seen, self.evals["id"].labels)}
        for key, ood, text, offset in oods:
            f_ood = check_outputs(ood.embed(self.student, self.device, c.eval_batch_size, self.precision), key)
            per_class = class_accuracies(f_ood, self.text_unseen if text is None else text, ood.labels - offset)
            out[key], out[f"per_class_{key}"] = mean_accuracy(per_class), per_class
        return out

    def _check(self, stage: str, epoch: int, means: Mapping[str, float], cause: BaseException | None = None) -> None:
        """:func:`vldlib.train.health.check_run` on this run: a diverged run is said as such, and
        only features that hold NaN/inf are blamed on the cache (with its file named)."""
        ds, cache = self.ds, self.cache_dir
        inputs: dict[str, tuple[torch.Tensor | None, Callable[[], object]]] = {
            f"the teacher image features of {ds.name}/{split.name}":
                (self.tfeat[key], lambda s=split: image_feature_file(self.teacher, s, dataset_id=ds.name, cache_dir=cache))
            for key, split in ds.splits.items()}
        if self.views is not None:
            inputs[f"the teacher's embeddings of the stored views of {ds.name}/train"] = (
                self.views.features, lambda: self.views.cache_file)
        texts = lambda: text_feature_folder(self.teacher, cache)  # noqa: E731
        if self.prompt is None:  # learned prompts' texts are outputs of the run, not inputs
            inputs["the teacher text features of the seen classes"] = (self.text_seen, texts)
            inputs["the teacher text features of the unseen classes"] = (self.text_unseen, texts)
        inputs["the teacher text features of the captions"] = (self.caption_feats, texts)
        lr = ("fewshot.lr", self.resolved["fewshot"]["lr"]) if stage == "fewshot" else ("lr", self.resolved["lr"])
        check_run(self.hash, stage, epoch, means, [self.student, self.prompt], lr=lr, tau=self.cfg.tau,
                  inputs=inputs, cause=cause)

    def _wants_eval(self, epoch: int, epochs: int, last_n: int) -> bool:
        return self.cfg.eval_epochs == "all" or epoch > epochs - last_n

    def _stage(self, name: str, start: int, epochs: int, last_n: int, loss: LossSpec,
               batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]],
               oods: Sequence[tuple[str, EvalSet, torch.Tensor, int]], history: list[dict[str, Any]],
               images: int, augmented: bool = False) -> None:
        """The one stage loop (main and few-shot): for each outer epoch, train on ``batches()``
        (:func:`vldlib.train.loop.run_epoch`), step the schedule, evaluate where reported,
        append the epoch to ``history``, report it (:mod:`vldlib.train.reporting`; ``images``:
        the training images of one outer epoch), checkpoint. ``augmented``: the batches hold the
        student's crops already (stored teacher views), else the student's augmentation is drawn here."""
        prefix = "" if name == "main" else "fewshot_"

        def augment(x: torch.Tensor) -> torch.Tensor:
            return x if augmented else self.train_tf(x, generator=self.gens["aug"])

        for epoch in range(start + 1, epochs + 1):
            lr = self.opt.param_groups[0]["lr"]
            t0, c0 = time.perf_counter(), time.process_time()
            wall0 = t0
            meter = Meter()
            try:
                means = dist.mean_over_ranks(run_epoch(self.model, self.opt, loss, batches(), augment=augment,
                                                       device=self.device, amp=self.precision, meter=meter))
            except ValueError as err:
                self._check(name, epoch, meter.means(), err)
                raise
            self._check(name, epoch, means)  # before the checkpoint: a diverged epoch is not saved
            dist.sync_buffers(self.student)  # every rank evaluates rank 0's model
            self.sched.step()
            dt = time.perf_counter() - t0
            self.timings[f"{prefix}train_s"] += dt
            if name == "main":
                self.timings["train_cpu_s"] = self.timings.get("train_cpu_s", 0.0) + time.process_time() - c0
            entry: dict[str, Any] = {"epoch": epoch, "lr": lr, **means, "train_s": dt,
                                     "acc_id": None, **{o[0]: None for o in oods}}
            if self._wants_eval(epoch, epochs, last_n):
                t0 = time.perf_counter()
                try:
                    entry.update(self._evaluate(oods))
                except ValueError as err:
                    self._check(name, epoch, means, err)
                    raise
                self.timings[f"{prefix}eval_s"] += time.perf_counter() - t0
            history.append(entry)
            self.reporter.epoch(name, entry, epochs, images=images, wall_s=time.perf_counter() - wall0,
                                first=epoch == start + 1)
            self._epoch_done(name, epoch)

    def _main_stage(self, start: int) -> None:
        c, r = self.cfg, self.resolved
        imgs, t_train = self.images["train"], self.tfeat["train"]
        y_all = imgs.labels.to(self.device)

        caps, views = self.caption_feats, self.views

        def batches() -> Iterator[tuple[torch.Tensor, ...]]:
            for _ in range(r["repeat_epochs"]):
                index = train_index_batches(imgs.n, c.batch_size, self.gens["shuffle"])
                for idx, x in zip(index, imgs.batches(index)):
                    idx_d = idx.to(self.device)
                    x = x.to(self.device, non_blocking=True)
                    # stored views: the student's crop of one view per image and the teacher's embedding of it
                    x, t = views.batch(idx, x, self.gens["aug"]) if views is not None else (x, t_train[idx_d])
                    batch = (x, t, y_all[idx_d])
                    yield batch if caps is None else (*batch, caps[idx_d])

        text = self.text_seen if self.prompt is None else (lambda: self._prompt_text("seen"))
        # the unseen texts (None) are read at evaluation time: prompt learning refreshes them
        self._stage("main", start, c.epochs, c.last_n, LossSpec.of_config(c, text), batches,
                    [("acc_ood_zeroshot", self.evals["ood"], None, 0)], self.history, imgs.n * r["repeat_epochs"],
                    augmented=views is not None)

    def _analysis(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        seen_plain, unseen_plain = self.plain_texts or self._plain_texts()
        c = self.cfg
        out: dict[str, Any] = {"text": "plain template; Y_id texts on X_train/X_id, Y_ood on X_ood",
                               "student_transform": "eval (centre crop)"}
        for split, label, text in (("train", "X_train", seen_plain), ("id", "X_id", seen_plain),
                                   ("ood", "X_ood", unseen_plain)):
            s = embed(self.student, self.images[split], self.eval_tf, self.device, c.eval_batch_size, self.precision)
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
