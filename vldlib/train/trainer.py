"""The distillation trainer (paper §2-§3, App. B-C): the only place that combines losses,
students, data and cached teacher features.

``train(config)`` runs one experiment declared as data (:class:`TrainConfig`) and returns its
result record, a JSON-serialisable dict:

1. load the dataset (X_train, X_id, X_ood) and the teacher image features of the three splits
   from the feature cache (the teacher is built only if something is missing from the cache);
2. class text features: seen classes (training, X_id evaluation) and unseen classes (zero-shot
   X_ood evaluation, OOD texts only), optionally enriched with descriptions (paper §6);
3. train the student (out_dim = teacher dim, in_chans = dataset channels) with
   ``L = Σ_n w_n L_n`` (:func:`vldlib.core.losses.combined_loss`; Eqs. 1, 2, 3, 6) for ``epochs`` outer
   epochs of ``repeat_epochs`` passes over X_train; after each outer epoch the epoch-mean loss
   terms, the mean per-class accuracy on X_id (|Y_id|-way) and the zero-shot accuracy on X_ood
   (|Y_ood|-way, OOD texts only) in percent; a checkpoint every outer epoch (resumable);
4. optionally the analysis metrics (Table 2, Eqs. 4, 5, 7) of the trained student;
5. optionally 5-shot fine-tuning (§3.6, :mod:`vldlib.train.fewshot`): support = the first 5 images of
   every unseen class in sorted key order, removed from the evaluation set; labels over
   Y_id ∪ Y_ood; at most half of each batch from the support set; a fresh OneCycle optimiser.

Reported numbers (``record["final"]``) are the means over the last ``last_n`` outer epochs of
each stage (paper App. B): ``acc_id``, ``acc_ood_zeroshot`` and, after fine-tuning,
``acc_ood_5shot`` (|Y_ood|-way on the remaining OOD images) and ``acc_id_5shot``.

Classification rule everywhere: ŷ = argmax_y cos(S(x), T_txt(l(y))) (paper §3).
Same config -> same numbers on CPU: the run trains with ``config.threads`` torch threads (a
hashed field: float reductions depend on the thread count); python, numpy and torch are seeded
inside an isolated RNG context; shuffling and augmentation draw from dedicated generators; every random state is part
of the checkpoint, so an interrupted run resumes to exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from vldlib.core.metrics import mean_per_class_accuracy
from vldlib.data import load_dataset, student_eval_transform, student_train_transform
from vldlib.data.specs import dataset_spec
from vldlib.device import resolve_device, resolve_precision
from vldlib.diskspace import tensor_bytes
from vldlib.features import LazyTeacher, teacher_image_features
from vldlib.io import save_torch_atomic, sha256_file, try_read_json
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress, progress_stream
import vldlib.train.distributed as dist
from vldlib.train.checkpoints import (CHECKPOINT, RECORD_FILE, STUDENT, STUDENT_FEWSHOT, WEIGHTS,
                                      RunCheckpoints)
from vldlib.train.config import TrainConfig, config_hash, input_identity, resolve_optim, resolve_workers
from vldlib.train.fewshot import RETRIEVAL_ALPHA, RETRIEVAL_BETA, check_support, retrieval_logits
from vldlib.train.fewshot_stage import RunFewshot
from vldlib.train.health import Diverged, NonFiniteFeatures
from vldlib.train.loop import EvalSet, accuracy, images_of_splits, make_optimizer, make_scheduler
from vldlib.train.record import SCHEMA, RunRecord
from vldlib.train.reporting import RunReporter, check_report_to
from vldlib.train.stages import RunStages
from vldlib.train.state import isolated_rng
from vldlib.train.texts import RunTexts
from vldlib.train.views import TrainViews

__all__ = ["TrainConfig", "train", "train_validated", "Interrupted", "SCHEMA", "retrieval_accuracy", "held_out_features",
           "damaged_weights", "Diverged", "NonFiniteFeatures", "CHECKPOINT", "STUDENT", "STUDENT_FEWSHOT",
           "WEIGHTS", "RECORD_FILE"]


class Interrupted(RuntimeError):
    """Raised by an ``on_epoch_end`` callback to stop a run after its checkpoint (tests, tools)."""


def train(config: TrainConfig | Mapping[str, Any], *, run_dir: str | os.PathLike | None = None,
          cache_dir: str | os.PathLike | None = None, progress: bool = True,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume) one run and return its result record (see the module docstring).

    ``run_dir``: where checkpoints and the final student weights go (None: nothing is saved and
    nothing resumes). ``cache_dir``: the teacher-feature cache (default: ``config.cache_dir``,
    else :func:`vldlib.paths.default_cache_dir`). ``on_epoch_end(info)`` is called after each
    outer epoch's checkpoint with ``{"stage", "epoch", "history"}``; raising
    :class:`Interrupted` there stops the run (it resumes from that checkpoint next time).
    Bad configs raise ``ValueError`` before any data is loaded.
    """
    cfg = TrainConfig.from_dict(config).validate()
    return train_validated(cfg, config_hash(cfg), run_dir=run_dir, cache_dir=cache_dir,
                           progress=progress, on_epoch_end=on_epoch_end)


def train_validated(cfg: TrainConfig, run_hash: str, *, run_dir: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: bool = True,
                    on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """:func:`train` for a caller that has validated ``cfg`` and computed its hash already
    (the run store), so that neither is done twice."""
    spec = dataset_spec(cfg.dataset)
    if cfg.descriptions == "official" and not (spec.official_descriptions or spec.own_descriptions_file):
        raise ValueError(f"descriptions='official' needs an official dataset with chatgpt.txt; for "
                         f"{cfg.dataset} use one of 'main', 'succinct', 'detailed', 'distinct' or None")
    if spec.official_descriptions and spec.rooted:
        root = Path(cfg.dataset_options["root"])
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {str(root)!r} does not exist; set "
                                    f"dataset_options={{'root': <{spec.root_hint}>}}")
    check_report_to(cfg.report_to)
    device = resolve_device(cfg.device)
    if cfg.world_size != dist.world_size():
        raise ValueError(f"the config says world_size={cfg.world_size} but {dist.world_size()} process(es) "
                         f"run it; launch it with torchrun --nproc-per-node {cfg.world_size} -m vldlib train "
                         "(world_size is set from torchrun's environment by the CLI)")
    if dist.active() and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank())  # one GPU per rank
    if cache_dir is None:
        cache_dir = cfg.cache_dir if cfg.cache_dir is not None else default_cache_dir()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cfg.threads)  # part of the run's identity (TrainConfig docstring)
        with isolated_rng(deterministic=device.type == "cpu"):
            return _Run(cfg, run_hash, device, Path(cache_dir), Path(run_dir) if run_dir else None,
                        progress, on_epoch_end).execute()
    finally:
        torch.set_num_threads(threads)


def damaged_weights(record: Mapping[str, Any], run_dir: str | os.PathLike) -> list[str]:
    """The weight files of ``run_dir`` whose sha256 differs from the one ``record`` holds
    (``weights_sha256``); a record written before the digests (none held) checks nothing."""
    digests = record.get("weights_sha256")
    if not isinstance(digests, Mapping):
        return []
    bad = []
    for name, digest in digests.items():
        path = Path(run_dir) / str(name)
        try:
            if sha256_file(path) != digest:
                bad.append(str(name))
        except OSError:
            bad.append(str(name))
    return bad


def retrieval_accuracy(config: TrainConfig | Mapping[str, Any], run_dir: str | os.PathLike, *,
                       cache_dir: str | os.PathLike | None = None, alpha: float = RETRIEVAL_ALPHA,
                       beta: float = RETRIEVAL_BETA) -> dict[str, float]:
    """Table 10: the few-shot retrieval cache (:func:`vldlib.train.fewshot.retrieval_logits`) on the
    *main-stage* student of a finished run (``run_dir/student.pt``), with the same support images
    and the same evaluation images as the run's 5-shot fine-tuning (``config.fewshot`` must be set).

    Returns mean per-class accuracies (%) on those evaluation images: ``acc_ood_zeroshot_fs_eval``
    (the cache off, alpha = 0), ``acc_ood_retrieval_teacher_keys`` (keys = the teacher's image features
    of the support images, as the official code) and ``acc_ood_retrieval_student_keys`` (keys = the
    student's, as the paper's App. E). One view per support image (the official code adds 9
    RandAugment views). Nothing is trained; the teacher features come from the feature cache."""
    cfg = TrainConfig.from_dict(config).validate()
    if cfg.fewshot is None:
        raise ValueError("retrieval_accuracy needs a config with fewshot set (its support and evaluation images)")
    run = _stored_student(cfg, run_dir, cache_dir)
    run._fewshot_setup()
    c = run.cfg
    query = run.fs_ood.embed(run.student, run.device, c.eval_batch_size, False)
    support = run.evals["ood"].subset(run.support_idx)
    keys = {"teacher": run.sup_t, "student": support.embed(run.student, run.device, c.eval_batch_size, False)}
    labels = run.fs_ood.labels
    out = {"acc_ood_zeroshot_fs_eval": accuracy(query, run.text_unseen, labels)}
    for name, k in keys.items():
        logits = retrieval_logits(query, k, run.sup_y, run.text_unseen, alpha=alpha, beta=beta)
        out[f"acc_ood_retrieval_{name}_keys"] = 100.0 * float(mean_per_class_accuracy(logits.argmax(1), labels))
    return out


def _stored_student(cfg: TrainConfig, run_dir: str | os.PathLike,
                    cache_dir: str | os.PathLike | None) -> "_Run":
    """A finished run set up on the CPU (data, teacher features, class texts) with its saved
    main-stage student loaded (its sha256 checked against the run's record); nothing trained."""
    weights = Path(run_dir) / STUDENT
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: train the run first (RunStore.run) so that its student is saved")
    record = try_read_json(Path(run_dir) / RECORD_FILE)
    if isinstance(record, Mapping) and STUDENT in damaged_weights(record, run_dir):
        raise ValueError(f"{weights} does not match the sha256 its run's record holds (the file is damaged); "
                         "retrain the run: RunStore.run(config, force=True) or python -m vldlib train --force")
    cache = Path(cache_dir if cache_dir is not None else cfg.cache_dir or default_cache_dir())
    run = _Run(cfg, config_hash(cfg), torch.device("cpu"), cache, None, False, None)
    run._setup()
    run.student = run._build_student()
    run.student.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return run


def held_out_features(config: TrainConfig | Mapping[str, Any], run_dir: str | os.PathLike, *,
                      cache_dir: str | os.PathLike | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The features of a finished run's main-stage student (``run_dir/student.pt``) and of its
    teacher on the held-out images: ``{"id": (student, teacher), "ood": (student, teacher)}``
    (X_id and X_ood, eval transform, fp32 on the CPU). Nothing is trained; the teacher's come from
    the feature cache. What the diagnosis of how much of the teacher a student learned reads."""
    cfg = TrainConfig.from_dict(config).validate()
    run = _stored_student(cfg, run_dir, cache_dir)
    return {split: (run.evals[split].embed(run.student, run.device, cfg.eval_batch_size, False).float().cpu(),
                    run.tfeat[split].float().cpu()) for split in ("id", "ood")}


class _Run(RunTexts, RunStages, RunFewshot, RunCheckpoints, RunRecord):
    """One run being trained: its setup (data, teacher features, class texts, images) and
    :meth:`execute`; its other jobs are the parts it is made of: class texts
    (:mod:`vldlib.train.texts`), stages and evaluation (:mod:`vldlib.train.stages`), 5-shot
    fine-tuning (:mod:`vldlib.train.fewshot_stage`), checkpoints (:mod:`vldlib.train.checkpoints`)
    and the record (:mod:`vldlib.train.record`)."""

    def __init__(self, cfg: TrainConfig, run_hash: str, device: torch.device, cache_dir: Path,
                 run_dir: Path | None, progress: bool, on_epoch_end: Callable | None) -> None:
        self.cfg, self.hash, self.device, self.cache_dir, self.run_dir = cfg, run_hash, device, cache_dir, run_dir
        self.progress, self.on_epoch_end = progress, on_epoch_end
        self.precision = resolve_precision(device, cfg.amp, cfg.precision)  # the student's autocast
        self.writer = dist.is_main()  # under torchrun only rank 0 writes files
        self.log = Progress(run_hash[:8], progress_stream(progress and self.writer))  # progress lines
        self.workers = resolve_workers(cfg.num_workers)
        self.timings: dict[str, float] = {"teacher_features_s": 0.0, "train_s": 0.0, "train_cpu_s": 0.0,
                                          "eval_s": 0.0,
                                          "analysis_s": 0.0, "fewshot_train_s": 0.0, "fewshot_eval_s": 0.0}

    def _setup(self) -> None:
        cfg = self.cfg
        opts = dict(cfg.dataset_options)
        root = opts.pop("root", None)
        t0 = time.perf_counter()
        ds = load_dataset(cfg.dataset, root=root, **opts)
        self.timings["data_s"] = time.perf_counter() - t0
        self.ds = ds
        self.inputs = self._inputs()  # before any teacher work: what the run reads is what it is named by
        self.log.line(f"{ds.name}: {len(ds.train)} X_train, {len(ds.id)} X_id, {len(ds.ood)} X_ood images | "
                      f"teacher {cfg.teacher} | student {cfg.student} | {self.device} {self.precision} | "
                      f"{self.workers} loader worker(s)")
        self.resolved = resolve_optim(cfg, len(ds.train))
        if "fewshot" in self.resolved:  # enough X_ood images for the support set? found before training
            check_support(ds.ood.labels, ds.unseen_classes, self.resolved["fewshot"]["shots"], ds.name)

        with dist.main_first():  # under torchrun rank 0 fills the caches, the others read them
            t0 = time.perf_counter()
            self.teacher = LazyTeacher.in_cache(cfg.teacher, cfg.teacher_options, self.cache_dir)
            self.tfeat = {}
            for name, split in ds.splits.items():
                self.tfeat[name] = teacher_image_features(
                    self.teacher, split, dataset_id=ds.name, cache_dir=self.cache_dir,
                    num_workers=self.workers, progress=self.log).float().to(self.device)
            self.train_tf = student_train_transform(ds, per_image=cfg.per_image_aug)
            self.views = (TrainViews.of_split(self.teacher, ds.train, cfg.teacher_views, self.train_tf,
                                              dataset_id=ds.name, cache_dir=self.cache_dir, device=self.device,
                                              progress=self.log) if cfg.teacher_views else None)
            self.text_seen, self.text_unseen = self._texts()
            self.caption_feats = self._caption_features()
            self.timings["teacher_features_s"] = time.perf_counter() - t0
            self.images = images_of_splits(ds.splits, self.workers, self.device, self.cache_dir,
                                           progress=self.log)

        self.eval_tf = student_eval_transform(ds)
        self.evals = {n: EvalSet(self.images[n], self.eval_tf) for n in ("id", "ood")}

    def _inputs(self) -> dict[str, dict[str, str]]:
        """The digests of what this run read (data, descriptions, caption file), checked against
        its hash: a file that changed since the hash was computed stops the run before training."""
        inputs = input_identity(self.cfg, strict=True)
        if config_hash(self.cfg, inputs) != self.hash:
            now = ", ".join(f"{name} {entry['sha256'][:12]}" for name, entry in inputs.items())
            raise ValueError(f"the inputs of run {self.hash} changed after its hash was computed (now {now}); "
                             "run it again so that its hash covers what it reads")
        return inputs

    def execute(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        cfg = self.cfg
        self._setup()
        self.student = self._build_student()
        self.prompt = self._build_prompt()
        self.plain_texts = None
        if self.prompt is None:  # features cached and on hand: the teacher's weights are not needed to train
            if cfg.analysis:
                self.plain_texts = self._plain_texts()  # while the teacher is built
            self.teacher.release()
        self.model = self._parallel()
        # the shuffle is one draw for all ranks (each takes its shard); augmentation differs per rank
        self.gens = {"shuffle": torch.Generator().manual_seed(cfg.seed * 2 + 1),
                     "aug": torch.Generator().manual_seed(cfg.seed * 2 + 2 + 7919 * dist.rank())}
        r = self.resolved
        params = list(self.student.parameters()) + (list(self.prompt.parameters()) if self.prompt is not None else [])
        self.opt = make_optimizer(params, r["optimizer"], r["lr"], r["weight_decay"], cfg.momentum)
        self.sched = make_scheduler(self.opt, r["schedule"], cfg.epochs, r["lr"])
        self.history: list[dict[str, Any]] = []
        self.fs_history: list[dict[str, Any]] = []
        self.analysis: dict[str, Any] | None = None
        self.before_fs: dict[str, float] | None = None

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
        self.reporter = RunReporter(self.log, self.run_dir, report_to=cfg.report_to, run_hash=self.hash,
                                    config=cfg.to_dict(), write=self.writer, main_epochs=cfg.epochs)
        self.reporter.start(self.history, self.fs_history)
        if resumed is not None:
            self.log.line(f"resumed from the checkpoint after {stage} epoch {done}")
        try:
            if stage == "main":
                self._main_stage(done)
                if cfg.analysis:
                    self.analysis = self._analysis()
                if self.run_dir is not None and self.writer:
                    weights = self.student.state_dict()
                    self._write(lambda: save_torch_atomic(weights, self.run_dir / STUDENT), STUDENT,
                                tensor_bytes(weights))
            fewshot_info = None
            if fs:
                self._fewshot_setup()
                if stage == "main" and fs.get("continual"):
                    self.before_fs = self._before_fewshot()
                if stage == "main":
                    self._fewshot_optimizer()
                    done = 0
                self._fewshot_stage(done)
                if self.run_dir is not None and self.writer:
                    weights = self.student.state_dict()
                    self._write(lambda: save_torch_atomic(weights, self.run_dir / STUDENT_FEWSHOT), STUDENT_FEWSHOT,
                                tensor_bytes(weights))
                fewshot_info = {"support_size": len(self.support_idx), "eval_size": len(self.fs_eval_idx),
                                "support_keys": self.support_keys, "history": self.fs_history}
        finally:
            self.reporter.close()
        self.timings["total_s"] = time.perf_counter() - t_start
        return self._record(fewshot_info, resumed)
