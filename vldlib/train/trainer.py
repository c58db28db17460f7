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
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from vldlib.core.metrics import feature_error, m_neigh, m_rel, m_vlalign, mean_per_class_accuracy
from vldlib.data import load_dataset, student_eval_transform, student_train_transform
from vldlib.data.specs import dataset_spec
from vldlib.device import resolve_device, resolve_precision
from vldlib.diskspace import disk_full, is_disk_full, tensor_bytes
from vldlib.features import (CachedTextTeacher, LazyTeacher, image_feature_file, proxy_caption_classes,
                             teacher_image_features, text_feature_folder)
from vldlib.io import load_torch_checked, save_torch_atomic, save_torch_checked, sha256_file, try_read_json
from vldlib.models.prompts import PromptLearner, coop_texts, prompt_learning_options
from vldlib.models.students import load_student
from vldlib.models.teachers import imagenet_class_names
from vldlib.paths import default_cache_dir
from vldlib.progress import Progress, progress_stream
from vldlib.text.captions import (CAPTION_FILE, PROXY_CAPTION_TOP, captions_for, proxy_caption,
                                  read_caption_file)
from vldlib.text.classifier import class_text_features, class_texts
from vldlib.text.controls import control_descriptions
from vldlib.text.descriptions import descriptions_source
import vldlib.train.distributed as dist
from vldlib.train.config import TrainConfig, config_hash, input_identity, resolve_optim, resolve_workers
from vldlib.train.fewshot import (RETRIEVAL_ALPHA, RETRIEVAL_BETA, check_support, fewshot_batches,
                                   fewshot_labels, retrieval_logits, select_support)
from vldlib.train.health import Diverged, NonFiniteFeatures, check_outputs, check_run
from vldlib.train.loop import (EvalSet, LossSpec, Meter, accuracy, class_accuracies, embed,
                               images_of_splits, make_optimizer, make_scheduler, mean_accuracy, run_epoch,
                               train_index_batches)
from vldlib.train.reporting import RunReporter, check_report_to
from vldlib.train.state import (git_commit, isolated_rng, library_versions, rng_state,
                                seed_everything, set_rng_state)

__all__ = ["TrainConfig", "train", "train_validated", "Interrupted", "SCHEMA", "retrieval_accuracy",
           "damaged_weights", "Diverged", "NonFiniteFeatures"]

CHECKPOINT = "checkpoint.pt"
STUDENT = "student.pt"
STUDENT_FEWSHOT = "student_fewshot.pt"
WEIGHTS = (STUDENT, STUDENT_FEWSHOT)
RECORD_FILE = "record.json"  # a run's record, next to its weights (vldlib.runs.RECORD names it so too)
SCHEMA = "vldbook.run/1"


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


class _Run:
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

    # ------------------------------------------------------------------ setup
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
            self.teacher = LazyTeacher(cfg.teacher, cfg.teacher_options, self.cache_dir / "teacher-meta")
            self.tfeat = {}
            for name, split in ds.splits.items():
                self.tfeat[name] = teacher_image_features(
                    self.teacher, split, dataset_id=ds.name, cache_dir=self.cache_dir,
                    num_workers=self.workers, progress=self.log).float().to(self.device)
            self.text_seen, self.text_unseen = self._texts(cfg.descriptions)
            self.caption_feats = self._caption_features()
            self.timings["teacher_features_s"] = time.perf_counter() - t0
            self.images = images_of_splits(ds.splits, self.workers, self.device, self.cache_dir,
                                           progress=self.log)

        self.train_tf = student_train_transform(ds, per_image=cfg.per_image_aug)
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

    def _texts(self, descriptions: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        desc = self._descriptions(descriptions)
        enriched = self.cfg.enriched_template
        if self.cfg.description_control is not None:
            desc, enriched = control_descriptions(self.cfg.description_control,
                                                  [*self.ds.seen_classes, *self.ds.unseen_classes], desc, enriched)
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        kw = dict(mode=self.cfg.text_mode, template=self.cfg.template, enriched_template=enriched)
        seen = class_text_features(enc, self.ds.seen_classes, desc, **kw)
        unseen = class_text_features(enc, self.ds.unseen_classes, desc, **kw)
        return seen.float().to(self.device), unseen.float().to(self.device)

    def _build_prompt(self) -> PromptLearner | None:
        """CoOp (Table 5): the learnable context and each class's prompts "X ... X {name}." (None when off)."""
        opts = prompt_learning_options(self.cfg.prompt_learning)
        if opts is None:
            return None
        desc = self._descriptions(self.cfg.descriptions)
        kw = dict(template="{name}.", enriched_template="{name} . {description}.")
        self.prompts = {"seen": coop_texts(class_texts(self.ds.seen_classes, desc, **kw), opts["n_ctx"]),
                        "unseen": coop_texts(class_texts(self.ds.unseen_classes, desc, **kw), opts["n_ctx"])}
        gen = torch.Generator().manual_seed(self.cfg.seed * 2 + 3)
        return PromptLearner(opts["n_ctx"], self.teacher.token_width, opts["init_std"], gen).to(self.device)

    def _prompt_text(self, which: str) -> torch.Tensor:
        """Class text features from the current learned context (differentiable in it)."""
        return self.prompt(self.teacher, self.prompts[which], self.cfg.text_mode).float().to(self.device)

    def _refresh_prompt_texts(self) -> None:
        """Evaluation texts from the current context (prompt learning only)."""
        if self.prompt is not None:
            with torch.no_grad():
                self.text_seen, self.text_unseen = self._prompt_text("seen"), self._prompt_text("unseen")

    def _caption_features(self) -> torch.Tensor | None:
        """Teacher text features ``[N_train, D]`` of each training image's caption (L_cap, Eq. 8),
        or None when L_cap is off. The caption text is encoded raw (no template, paper.md §2.5)."""
        source = self.cfg.caption_source()
        if source is None:
            return None
        train = self.ds.train
        if source == "proxy":
            idx = proxy_caption_classes(self.teacher, train, dataset_id=self.ds.name, top=PROXY_CAPTION_TOP,
                                        cache_dir=self.cache_dir, num_workers=self.workers,
                                        progress=self.log)
            names = imagenet_class_names()
            texts = [proxy_caption([names[i] for i in row]) for row in idx.tolist()]
            self.caption_info = {"source": "proxy", "note": "proxy captioner: the proxy teacher's top "
                                 f"{PROXY_CAPTION_TOP} ImageNet names (not a real captioner)",
                                 "examples": texts[:3]}
        else:
            root = self.cfg.dataset_options.get("root")
            if not root:
                raise ValueError("captions='file' reads captions.json from the dataset root; this dataset "
                                 "has none (use captions='proxy' with the ConSE proxy teacher)")
            path = Path(root) / CAPTION_FILE
            texts = captions_for(train.keys, read_caption_file(path), str(path))
            self.caption_info = {"source": "file", "path": str(path), "examples": texts[:3]}
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        return enc.encode_text(texts).float().to(self.device)

    def _descriptions(self, which: str | None) -> dict[str, list[str]] | None:
        if which is None:
            return None
        if which == "official":
            if not self.ds.descriptions:
                raise ValueError(f"descriptions='official' but dataset {self.ds.name!r} has no "
                                 "chatgpt.txt; add it to the data root or choose a description variant")
            return self.ds.descriptions
        return descriptions_source(self.cfg.dataset, self.cfg.dataset_options, which)[0]

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

    # ------------------------------------------------------------------ checkpoints
    def _save(self, stage: str, epoch: int) -> None:
        if self.run_dir is None:
            return
        rngs = dist.all_gather_object(rng_state(self.gens))  # every rank's, for an exact resume
        if not self.writer:
            return
        state = {
            "hash": self.hash, "stage": stage, "epoch": epoch,
            "student": self.student.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "history": self.history,
            "fewshot_history": self.fs_history, "analysis": self.analysis, "before_fewshot": self.before_fs,
            "rng": rngs[0], "timings": self.timings,
        }
        if self.prompt is not None:
            state["prompt"] = self.prompt.state_dict()
        if len(rngs) > 1:
            state["rng_ranks"] = rngs
        self._write(lambda: save_torch_checked(state, self.run_dir / CHECKPOINT),  # with its sha256 sidecar
                    f"the checkpoint of {stage} epoch {epoch}", tensor_bytes(state))

    def _write(self, write: Callable[[], Any], what: str, needed: int | None = None) -> None:
        """Run one atomic write into the run folder; a full disk is a one-line ``DiskFullError``
        (the file in place, e.g. the last checkpoint, stays: the run resumes from it)."""
        try:
            write()
        except (OSError, RuntimeError) as err:
            if not is_disk_full(err):
                raise
            raise disk_full(self.run_dir, what, f"free space there and run again: run {self.hash} resumes "
                            "from its last checkpoint", needed) from None

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
            return None
        path = self.run_dir / CHECKPOINT
        try:
            state = load_torch_checked(path, map_location=self.device, weights_only=False)
            if not isinstance(state, dict) or not {"stage", "epoch", "student"} <= state.keys():
                raise ValueError("not a trainer checkpoint")
        except Exception as err:  # noqa: BLE001 - truncated / corrupt file: any unpickling error
            warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {str(err)[:120]}); "
                          "the run restarts from scratch (the file is overwritten at the next epoch)",
                          RuntimeWarning, stacklevel=2)
            return None
        if state.get("hash") != self.hash:
            raise ValueError(f"{self.run_dir / CHECKPOINT} belongs to another config (hash "
                             f"{state.get('hash')}, this run {self.hash}); use a fresh run_dir or delete it")
        return state

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        if self.prompt is not None:
            self.prompt.load_state_dict(state["prompt"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.fs_history = list(state["fewshot_history"])
        self.analysis = state["analysis"]
        self.before_fs = state.get("before_fewshot")
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) != dist.world_size():
            raise ValueError(f"{self.run_dir / CHECKPOINT} was written by {len(ranks)} process(es), "
                             f"this run has {dist.world_size()}; delete it to restart the run")
        set_rng_state(ranks[dist.rank()], self.gens)
        for k, v in state["timings"].items():
            if k not in ("data_s", "teacher_features_s"):  # this session's setup times stay
                self.timings[k] = v

    def _epoch_done(self, stage: str, epoch: int) -> None:
        self._save(stage, epoch)
        if self.on_epoch_end is not None:
            self.on_epoch_end({"stage": stage, "epoch": epoch,
                               "history": self.history if stage == "main" else self.fs_history})

    # ------------------------------------------------------------------ stages
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
               images: int) -> None:
        """The one stage loop (main and few-shot): for each outer epoch, train on ``batches()``
        (:func:`vldlib.train.loop.run_epoch`), step the schedule, evaluate where reported,
        append the epoch to ``history``, report it (:mod:`vldlib.train.reporting`; ``images``:
        the training images of one outer epoch), checkpoint."""
        prefix = "" if name == "main" else "fewshot_"

        def augment(x: torch.Tensor) -> torch.Tensor:
            return self.train_tf(x, generator=self.gens["aug"])

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

        caps = self.caption_feats

        def batches() -> Iterator[tuple[torch.Tensor, ...]]:
            for _ in range(r["repeat_epochs"]):
                index = train_index_batches(imgs.n, c.batch_size, self.gens["shuffle"])
                for idx, x in zip(index, imgs.batches(index)):
                    idx_d = idx.to(self.device)
                    batch = (x.to(self.device, non_blocking=True), t_train[idx_d], y_all[idx_d])
                    yield batch if caps is None else (*batch, caps[idx_d])

        text = self.text_seen if self.prompt is None else (lambda: self._prompt_text("seen"))
        # the unseen texts (None) are read at evaluation time: prompt learning refreshes them
        self._stage("main", start, c.epochs, c.last_n, LossSpec.of_config(c, text), batches,
                    [("acc_ood_zeroshot", self.evals["ood"], None, 0)], self.history, imgs.n * r["repeat_epochs"])

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
                    LossSpec.of_config(c, text_all).without("cap"), batches, self.fs_oods, self.fs_history, imgs.n)

    def _fewshot_optimizer(self) -> None:
        fs = self.resolved["fewshot"]
        self.opt = make_optimizer(self.student.parameters(), fs["optimizer"], fs["lr"], fs["weight_decay"],
                              self.cfg.momentum)
        self.sched = make_scheduler(self.opt, "onecycle", fs["epochs"], fs["lr"])

    # ------------------------------------------------------------------ analysis
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

    def _plain_texts(self) -> tuple[torch.Tensor, torch.Tensor]:
        if (self.cfg.descriptions is None and self.cfg.description_control is None
                and self.cfg.text_mode == "first" and self.prompt is None):
            return self.text_seen, self.text_unseen
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        kw = dict(mode="first", template=self.cfg.template)
        return (class_text_features(enc, self.ds.seen_classes, None, **kw).float().to(self.device),
                class_text_features(enc, self.ds.unseen_classes, None, **kw).float().to(self.device))

    # ------------------------------------------------------------------ main
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

    def _record(self, fewshot_info: dict[str, Any] | None, resumed: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.cfg
        final = {"acc_id": _last_mean(self.history, "acc_id", cfg.last_n),
                 "acc_ood_zeroshot": _last_mean(self.history, "acc_ood_zeroshot", cfg.last_n),
                 "loss": self.history[-1]["loss"] if self.history else None}
        if fewshot_info is not None:
            n = min(cfg.last_n, self.resolved["fewshot"]["epochs"])
            for key, *_ in self.fs_oods:
                final[key] = _last_mean(self.fs_history, key, n)
            final["acc_id_5shot"] = _last_mean(self.fs_history, "acc_id", n)
            final.update(self.before_fs or {})
        ds = self.ds
        # the teacher's own zero-shot accuracy on the same images with the same class texts (the
        # ceiling a student's transfer is measured against), and per unseen class
        teacher_ood = class_accuracies(self.tfeat["ood"], self.text_unseen, self.evals["ood"].labels)
        final["teacher_acc_id"] = accuracy(self.tfeat["id"], self.text_seen, self.evals["id"].labels)
        final["teacher_acc_ood_zeroshot"] = mean_accuracy(teacher_ood)
        per_class = {"classes": list(ds.unseen_classes), "teacher_acc_ood_zeroshot": teacher_ood,
                     "acc_ood_zeroshot": _last_mean_lists(self.history, "per_class_acc_ood_zeroshot", cfg.last_n)}
        if fewshot_info is not None:
            per_class["acc_ood_5shot"] = _last_mean_lists(self.fs_history, "per_class_acc_ood_5shot", n)
        return {
            "schema": SCHEMA,
            "hash": self.hash,
            "config": cfg.to_dict(),
            "inputs": self.inputs,
            "resolved": self.resolved,
            "final": final,
            "history": self.history,
            "fewshot": fewshot_info,
            "analysis": self.analysis,
            "per_class": per_class,
            "dataset": {"name": ds.name, **ds.summary(), "seen_classes": list(ds.seen_classes),
                        "unseen_classes": list(ds.unseen_classes)},
            "teacher": {"identifier": self.teacher.identifier, "embed_dim": self.teacher.embed_dim,
                        "loaded": self.teacher.loaded},
            "student": {"name": cfg.student, "parameters": sum(p.numel() for p in self.student.parameters())},
            "captions": getattr(self, "caption_info", None),
            "prompt_learning": None if self.prompt is None else {
                **prompt_learning_options(cfg.prompt_learning),
                "example": self.prompts["seen"][0][0], "ctx_norm": float(self.prompt.ctx.detach().norm())},
            "teacher_forward_passes": self.teacher.image_calls + self.teacher.text_calls + self.teacher.prompt_calls,
            "teacher_forward_detail": self.teacher.forward_passes(),
            "timings": dict(self.timings),
            "throughput_img_s": _throughput(self.history, len(ds.train) * self.resolved["repeat_epochs"]),
            "versions": library_versions(),
            "device": str(self.device),
            "precision": self.precision,
            "torch_threads": torch.get_num_threads(),
            "world_size": dist.world_size(),
            "git_commit": git_commit(),
            "resumed_from": resumed,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "weights_sha256": self._weights_sha256(),
        }

    def _weights_sha256(self) -> dict[str, str] | None:
        """The sha256 of each weight file this run wrote (checked when the weights are read back)."""
        if self.run_dir is None or not self.writer:
            return None
        return {name: sha256_file(self.run_dir / name) for name in WEIGHTS if (self.run_dir / name).is_file()}


def _last_mean(history: Sequence[Mapping[str, Any]], key: str, n: int) -> float | None:
    vals = [h[key] for h in history[-n:] if h.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def _last_mean_lists(history: Sequence[Mapping[str, Any]], key: str, n: int) -> list[float] | None:
    """Element-wise mean of the per-class lists of the last ``n`` epochs that have them."""
    rows = [h[key] for h in history[-n:] if h.get(key) is not None]
    return [sum(col) / len(col) for col in zip(*rows)] if rows else None


def _throughput(history: Sequence[Mapping[str, Any]], images_per_epoch: int) -> float | None:
    t = sum(h.get("train_s", 0.0) for h in history)
    return images_per_epoch * len(history) / t if t > 0 else None

