"""The trainer's 5-shot stage (paper §3.6, Table 11's continual variant): support and evaluation
images, the stage's batches (at most half from the support set) and its fresh OneCycle optimiser.
The protocol itself (support selection, half-batches, labels) is :mod:`vldlib.train.fewshot`."""
from __future__ import annotations

from typing import Iterator

import torch

import vldlib.train.distributed as dist
from vldlib.core.losses import losses_needing
from vldlib.train.fewshot import fewshot_batches, fewshot_labels, select_support
from vldlib.train.loop import LossSpec, make_optimizer, make_scheduler

__all__ = ["RunFewshot"]


class RunFewshot:
    """5-shot fine-tuning of a run's student (a part of ``vldlib.train.trainer._Run``)."""

    def _fewshot_setup(self) -> None:
        """Support and evaluation images. Continual mode (Table 11): Y_ood is cut in half in label
        order (Y_ood1 = the first ``n // 2`` unseen classes); the support comes from X_ood1 only;
        X_ood1 (the rest of its images) is scored among Y_ood1, X_ood2 (all its images) among Y_ood2,
        and fine-tuning sees the texts of Y_id and Y_ood1 only."""
        fs = self.resolved["fewshot"]
        ood = self.ds.ood
        n_unseen = len(self.ds.unseen_classes)
        self.n_ood1 = n_unseen // 2 if fs.get("continual") else n_unseen
        if self.n_ood1 < 1:
            raise ValueError(f"fewshot.continual needs at least 2 unseen classes, {self.ds.name!r} has {n_unseen}")
        pool = [i for i, y in enumerate(ood.labels) if y < self.n_ood1]
        sup, ev = select_support([ood.keys[i] for i in pool], [ood.labels[i] for i in pool], self.n_ood1, fs["shots"])
        self.support_idx, self.fs_eval_idx = [pool[i] for i in sup], [pool[i] for i in ev]
        self.support_keys = [ood.keys[i] for i in self.support_idx]
        self.sup_x = self.images["ood"].take(self.support_idx).to(self.device)
        self.sup_t = self.tfeat["ood"][torch.as_tensor(self.support_idx, device=self.device)]
        self.sup_y = self.images["ood"].labels[torch.as_tensor(self.support_idx)].to(self.device)
        self.fs_ood = self.evals["ood"].subset(self.fs_eval_idx)
        if fs.get("continual"):
            ood2 = self.evals["ood"].subset([i for i, y in enumerate(ood.labels) if y >= self.n_ood1])
            self.fs_oods = [("acc_ood1_5shot", self.fs_ood, self.text_unseen[:self.n_ood1], 0),
                            ("acc_ood2_5shot", ood2, self.text_unseen[self.n_ood1:], self.n_ood1)]
        else:
            self.fs_oods = [("acc_ood_5shot", self.fs_ood, self.text_unseen, 0)]

    def _before_fewshot(self) -> dict[str, float]:
        """The fewshot evaluation of the main-stage student (the "before" of Table 11)."""
        out = self._evaluate(self.fs_oods)
        return {k.replace("_5shot", "_zeroshot"): out[k] for k, *_ in self.fs_oods}

    def _fewshot_stage(self, start: int) -> None:
        c, fs = self.cfg, self.resolved["fewshot"]
        self._refresh_prompt_texts()  # the learned context is kept fixed while fine-tuning
        text_all = torch.cat([self.text_seen, self.text_unseen[:self.n_ood1]])
        imgs, t_train = self.images["train"], self.tfeat["train"]
        y_train = imgs.labels.to(self.device)
        n_seen = len(self.ds.seen_classes)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            plan = [(dist.shard_batch(tr), dist.shard_batch(sup)) for tr, sup in
                    fewshot_batches(imgs.n, len(self.support_idx), fs["batch_size"], self.gens["shuffle"])]
            for (tr, sup), x_tr in zip(plan, imgs.batches([p[0] for p in plan])):
                tr_d, sup_d = tr.to(self.device), sup.to(self.device)
                x = torch.cat([x_tr.to(self.device, non_blocking=True), self.sup_x[sup_d]])
                t = torch.cat([t_train[tr_d], self.sup_t[sup_d]])
                yield x, t, fewshot_labels(y_train[tr_d], self.sup_y[sup_d], n_seen)

        # the support images have no captions: the 5-shot stage trains without L_cap
        self._stage("fewshot", start, fs["epochs"], min(c.last_n, fs["epochs"]),
                    LossSpec.of_config(c, text_all).without(*losses_needing("captions")), batches, self.fs_oods, self.fs_history, imgs.n)

    def _fewshot_optimizer(self) -> None:
        fs = self.resolved["fewshot"]
        self.opt = make_optimizer(self.student.parameters(), fs["optimizer"], fs["lr"], fs["weight_decay"],
                              self.cfg.momentum)
        self.sched = make_scheduler(self.opt, "onecycle", fs["epochs"], fs["lr"])
