"""The trainer's configuration: :class:`TrainConfig`, its validation and canonical form.

A run is declared as data (torchdistill style): every field is JSON-serialisable and the run's
identity is the hash of the canonical config and of its inputs' content digests where they are
not the default book's (:func:`config_hash`, :mod:`vldlib.train.inputs`). Validation
happens here, before any data is loaded or any model is built, so that a typo in a notebook's
parameters cell fails in milliseconds with a message that lists the valid values.

Every name list is read from the module that owns the names (one source of truth): loss names
from :mod:`vldlib.core.losses`, teachers and students from their registries in
:mod:`vldlib.models`, datasets from :mod:`vldlib.data`, description variants from
:mod:`vldlib.text.prompts`, text modes from :mod:`vldlib.text.classifier`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from vldlib.core.losses import IM_CST_MODES, LOSS_NAMES, PAPER_LOSS_NAMES, losses_needing
from vldlib.data import DATASET_SPECS, dataset_spec, images_per_class
from vldlib.io import json_sha256
from vldlib.models.specs import TEACHER_SPECS, teacher_spec
from vldlib.models.students import STUDENTS as _STUDENT_REGISTRY
from vldlib.models.teachers import TEACHERS as _TEACHER_REGISTRY
from vldlib.text.captions import CAPTION_SOURCES
from vldlib.text.classifier import TEXT_MODES as _ALL_TEXT_MODES
from vldlib.text.controls import DESCRIPTION_CONTROLS
from vldlib.text.prompts import PROMPTS
from vldlib.train.checks import (check_auto_nonneg as _auto_nonneg, check_auto_positive as _auto_pos,
                                 check_choice as _choice, check_int as _int, is_number as _is_number)
from vldlib.train.inputs import LOCATION_OPTIONS, hashed_inputs, resolve_inputs
from vldlib.train.options import (FEWSHOT_DEFAULTS, FEWSHOT_SCHEMA, OPTIMIZERS, PROMPT_LEARNING_SCHEMA,
                                  FewshotOptions, PromptLearningOptions, sub_config)
from vldlib.train.resolve import MAX_AUTO_WORKERS, SMALL_DATASET_MAX_TRAIN, resolve_optim, resolve_workers
from vldlib.train.schema import SCHEMA_KEY, SCHEMA_VERSION, Schema

__all__ = ["TrainConfig", "FewshotOptions", "PromptLearningOptions", "config_hash", "record_hash", "input_identity",
           "canonical_config", "hash_identity", "canonical_weights", "resolve_optim", "resolve_workers",
           "HASH_LEN", "BASELINE_FIELDS", "CONFIG_SCHEMA", "DEFAULT_THREADS", "FEWSHOT_DEFAULTS",
           "SMALL_DATASET_MAX_TRAIN", "MAX_AUTO_WORKERS", "RUNTIME_FIELDS", "REPORT_TO", "TEACHERS", "STUDENTS",
           "OPTIMIZERS", "SCHEDULES", "DESCRIPTION_VARIANTS", "TEXT_MODES", "EVAL_EPOCHS", "PRECISIONS"]

TEACHERS: tuple[str, ...] = tuple(_TEACHER_REGISTRY)
STUDENTS: tuple[str, ...] = tuple(_STUDENT_REGISTRY)
SCHEDULES: tuple[str, ...] = ("auto", "step", "onecycle", "constant")
DESCRIPTION_VARIANTS: tuple[str, ...] = tuple(PROMPTS)
#: Training needs one feature per class: per-descriptor scoring is for evaluation studies only.
TEXT_MODES: tuple[str, ...] = tuple(m for m in _ALL_TEXT_MODES if m != "per_descriptor")
EVAL_EPOCHS: tuple[str, ...] = ("all", "last_n")
#: Student compute precision (:func:`vldlib.device.autocast`); None keeps the ``amp`` flag's rule.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
#: Fields that change how a run executes but never its numbers: left out of the config hash.
RUNTIME_FIELDS: tuple[str, ...] = ("cache_dir", "num_workers", "report_to")
#: Where a run's per-epoch scalars go besides its ``metrics.jsonl`` (:mod:`vldlib.train.reporting`).
REPORT_TO: tuple[str, ...] = ("tensorboard", "wandb")
#: The thread count a run trains with unless its config says otherwise (what ``run_grid``'s
#: workers have always used): the ``threads`` field's default.
DEFAULT_THREADS = 1
#: The fields of schema 1: the field set the first stored run hashes were computed over. Each is
#: in every run's identity; any other hashed field only when it is not at its default
#: (:mod:`vldlib.train.schema`).
BASELINE_FIELDS: tuple[str, ...] = (
    "dataset", "dataset_options", "teacher", "teacher_options", "student", "student_options", "weights",
    "k", "filter", "im_cst_filter", "im_cst_mode", "tau", "descriptions", "text_mode", "template",
    "enriched_template", "optimizer", "lr", "momentum", "weight_decay", "schedule", "epochs",
    "repeat_epochs", "batch_size", "eval_batch_size", "seed", "device", "amp", "per_image_aug", "last_n",
    "eval_epochs", "fewshot", "analysis")


@dataclass
class TrainConfig:
    """Everything one distillation run needs (JSON-serialisable; see ``vldlib.train.profiles``).

    Losses (paper §2): the total is ``sum_n weights[n] * L_n`` over ``cls`` (Eq. 1), ``mse``
    (Eq. 2), ``im_cst`` (Eq. 3) and ``vlprox`` (Eq. 6); the official code uses weight 1 for each
    term it switches on. ``k``/``filter`` are L_vlprox's top-k and teacher-correct filter,
    ``im_cst_filter`` the Table 9 variant, ``tau`` the temperature of all three contrastive terms.

    Class texts: ``descriptions`` (None: plain names), ``text_mode`` and, for the controls of the
    "do descriptions help because of what they say?" chapter, ``description_control``
    (:mod:`vldlib.text.controls`: "shuffled", "waffle", "templates"; None = off).

    Hashing (one rule, :func:`canonical_config`): a field at its declared default is left out of
    the canonical config; the fields of schema 1 (:data:`BASELINE_FIELDS`) are filled back in
    for the hash, so a field added since (threads, precision, description_control, captions,
    prompt_learning, world_size, fewshot.continual, teacher_views) changes a run's hash only when it is set.

    Teacher views: ``teacher_views`` = K > 0 stores K augmented views of each X_train image with the
    teacher's embedding of each (MobileCLIP's dataset reinforcement, :mod:`vldlib.train.views`); each
    epoch the student sees one of them and imitates that view's embedding. 0: the teacher's view of
    the whole image (the paper's centre crop), the student a fresh augmentation.

    Optimisation (paper §5.3): ``optimizer="auto"`` is SGD (lr 0.05, momentum 0.9, wd 1e-4,
    x0.1 at 1/3 and 2/3 of the epochs) for CNN students and AdamW + OneCycle (peak 2e-4,
    wd 0.01) for ViT students. ``epochs`` counts outer epochs; each holds ``repeat_epochs`` passes
    over X_train (the official ``--repeat-epochs``; ``"auto"`` = 5 for small datasets, 1 for
    large). Reported accuracies are the mean over the last ``last_n`` outer epochs (App. B).

    Captions (L_cap, Eq. 8, Table 5): ``captions`` is where each training image's caption comes
    from (:data:`vldlib.text.captions.CAPTION_SOURCES`): ``"proxy"`` (the offline proxy captioner:
    the proxy teacher's top ImageNet names, not a real captioner) or ``"file"`` (``captions.json``
    in the dataset root). None with ``weights["cap"] > 0`` means ``"proxy"`` for the ConSE proxy
    teacher and ``"file"`` otherwise (:meth:`caption_source`; hashed as that source, so None
    when L_cap is off).

    Prompt learning (CoOp, Table 5): ``prompt_learning={"n_ctx": 8}``
    (:class:`~vldlib.train.options.PromptLearningOptions`) learns n_ctx context vectors in place
    of the template's "a photo of" together with the student, through the frozen teacher text
    encoder (:mod:`vldlib.models.prompts`); None (default) is off. Few-shot fine-tuning:
    ``fewshot`` (:class:`~vldlib.train.options.FewshotOptions`; None: off). Both are given as
    dicts and held as their typed sub-configs.

    Threads: ``threads`` is the number of torch CPU threads the run trains with (set with
    ``torch.set_num_threads`` for the run, restored afterwards). It is part of the run's
    identity, because torch's float reductions (e.g. a convolution's weight gradient) split the
    work by thread, so 1 and 2 threads give different numbers for the same seed. The promise is
    "same config (threads included) -> same numbers on CPU", whoever trains it and through
    whichever executor: ``run_grid``'s process pool, Ray (a task reserves ``num_cpus=threads``)
    or the command line (``--threads``). The default is :data:`DEFAULT_THREADS` = 1; the run
    store checks a record's
    ``torch_threads`` against the config before serving it, so a record trained under another
    thread count (before the field existed) is retrained, never reused. The teacher features
    are cached independently of the thread count (the proxy teacher's forward pass gives
    bit-identical features at 1 and 2 threads). The legacy key ``num_threads`` is read as
    ``threads``.

    Runtime-only fields (not part of the run's identity, :data:`RUNTIME_FIELDS`): ``cache_dir``,
    ``num_workers`` (DataLoader workers for file-backed images; ``"auto"`` = min(8, cores - 1),
    :func:`resolve_workers`) and ``report_to`` (None, ``"tensorboard"`` or ``"wandb"``: where the
    per-epoch scalars go besides ``metrics.jsonl``, :mod:`vldlib.train.reporting`).

    ``world_size``: the number of processes that train the run together (``torchrun
    --nproc-per-node N``, DistributedDataParallel, :mod:`vldlib.train.distributed`); each rank
    trains on ``batch_size / N`` images per step.
    """

    dataset: str = "fashion-mnist"
    dataset_options: dict = field(default_factory=dict)
    teacher: str = "conse"
    teacher_options: dict = field(default_factory=dict)
    student: str = "small"
    student_options: dict = field(default_factory=dict)
    weights: dict = field(default_factory=lambda: {name: 1.0 for name in PAPER_LOSS_NAMES})
    k: int = 256
    filter: bool = True
    im_cst_filter: bool = False
    im_cst_mode: str = "bidirectional"
    tau: float = 0.07
    descriptions: str | None = None
    description_control: str | None = None
    text_mode: str = "first"
    template: str = "a photo of {name}"
    enriched_template: str = "a photo of {name} . {description}"
    optimizer: str = "auto"
    lr: float | str = "auto"
    momentum: float = 0.9
    weight_decay: float | str = "auto"
    schedule: str = "auto"
    epochs: int = 90
    repeat_epochs: int | str = 1
    batch_size: int = 128
    eval_batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    precision: str | None = None
    num_workers: int | str = 0
    threads: int = DEFAULT_THREADS
    per_image_aug: bool = True
    last_n: int = 5
    eval_epochs: str = "all"
    fewshot: FewshotOptions | None = None
    analysis: bool = False
    captions: str | None = None
    prompt_learning: PromptLearningOptions | None = None
    cache_dir: str | None = None
    world_size: int = 1
    report_to: str | None = None
    teacher_views: int = 0

    def __post_init__(self) -> None:
        # the typed sub-configs, given as dicts in JSON (unknown keys: one ValueError)
        self.fewshot = sub_config("fewshot", FewshotOptions, self.fewshot)
        self.prompt_learning = sub_config("prompt_learning", PromptLearningOptions, self.prompt_learning)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "TrainConfig") -> "TrainConfig":
        """Build from a plain dict; unknown keys -> ValueError listing the valid ones."""
        if isinstance(data, TrainConfig):
            return copy.deepcopy(data)
        if not isinstance(data, Mapping):
            raise ValueError(f"a train config must be a dict or TrainConfig, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        data = _legacy_threads(data)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**copy.deepcopy(dict(data)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every field; raise one ValueError naming the field, the value and the fix."""
        _choice("dataset", self.dataset, tuple(DATASET_SPECS))  # read now: a dataset or teacher
        _choice("teacher", self.teacher, tuple(TEACHER_SPECS))  # registered later is valid too
        _choice("student", self.student, STUDENTS)
        for name in ("dataset_options", "teacher_options", "student_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict of keyword options, got {getattr(self, name)!r}")
        if dataset_spec(self.dataset).rooted and not self.dataset_options.get("root"):
            raise ValueError(f"dataset {self.dataset!r} needs dataset_options={{'root': <data root>}} "
                             f"({dataset_spec(self.dataset).root_hint}; --data-root DIR)")
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise ValueError(f"weights must be a non-empty dict {{loss name: weight}}; names: {LOSS_NAMES}")
        bad = sorted(set(self.weights) - set(LOSS_NAMES))
        if bad:
            raise ValueError(f"unknown loss name(s) {bad} in weights; valid names: {list(LOSS_NAMES)}")
        for name, w in self.weights.items():
            if not _is_number(w) or w < 0 or not math.isfinite(w):
                raise ValueError(f"weights[{name!r}] = {w!r}: loss weights must be finite numbers >= 0")
        if not any(float(w) > 0 for w in self.weights.values()):
            raise ValueError(f"all loss weights are 0 ({dict(self.weights)}); switch on at least one loss")
        _int("k", self.k, 1)
        for name in ("filter", "im_cst_filter", "amp", "per_image_aug", "analysis"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _choice("im_cst_mode", self.im_cst_mode, IM_CST_MODES)
        if not _is_number(self.tau) or not self.tau > 0:
            raise ValueError(f"tau must be a number > 0 (the paper's code uses 0.07), got {self.tau!r}")
        if self.descriptions is not None:
            _choice("descriptions", self.descriptions, ("official",) + DESCRIPTION_VARIANTS,
                    extra="or None (plain class names)")
        if self.description_control is not None:
            _choice("description_control", self.description_control, DESCRIPTION_CONTROLS,
                    extra="or None (the descriptions as they are)")
            if self.description_control == "shuffled" and self.descriptions is None:
                raise ValueError("description_control='shuffled' moves real descriptions between classes: "
                                 "set descriptions too (e.g. 'main')")
        _choice("text_mode", self.text_mode, TEXT_MODES)
        if "{name}" not in self.template:
            raise ValueError(f"template must contain '{{name}}', got {self.template!r}")
        if "{name}" not in self.enriched_template or "{description}" not in self.enriched_template:
            raise ValueError("enriched_template must contain '{name}' and '{description}', "
                             f"got {self.enriched_template!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _auto_pos("lr", self.lr)
        _auto_nonneg("weight_decay", self.weight_decay)
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        _int("epochs", self.epochs, 1)
        if self.repeat_epochs != "auto":
            _int("repeat_epochs", self.repeat_epochs, 1, extra=" or 'auto'")
        _int("batch_size", self.batch_size, 2)
        _int("eval_batch_size", self.eval_batch_size, 1)
        _int("seed", self.seed, 0)
        if self.num_workers != "auto":
            _int("num_workers", self.num_workers, 0, extra=" or 'auto' (min(8, cores - 1))")
        if self.report_to is not None:
            _choice("report_to", self.report_to, REPORT_TO, extra="or None (metrics.jsonl only)")
        _int("threads", self.threads, 1, extra=" (torch CPU threads of the run; part of its identity)")
        _int("last_n", self.last_n, 1)
        _int("world_size", self.world_size, 1, extra=" (processes launched by torchrun --nproc-per-node)")
        _int("teacher_views", self.teacher_views, 0, extra=" (stored views per X_train image; 0: the centre crop)")
        if self.last_n > self.epochs:
            raise ValueError(f"last_n={self.last_n} exceeds epochs={self.epochs} (the reported number averages "
                             f"the last last_n epochs): set last_n to at most {self.epochs}, or epochs to at "
                             f"least {self.last_n}")
        _choice("eval_epochs", self.eval_epochs, EVAL_EPOCHS)
        if self.precision is not None:
            _choice("precision", self.precision, PRECISIONS, extra="or None (the amp flag decides); 'auto' is resolved by profile_config")
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.fewshot is not None:
            shots = self.fewshot_options()["shots"]  # validates
            known = images_per_class(self.dataset, self.dataset_options) if isinstance(
                self.dataset_options.get("per_class", 0), (int, type(None))) else None
            if known is not None and shots >= known:
                raise ValueError(f"fewshot.shots={shots} needs more than {shots} images of each unseen class "
                                 f"(the rest are evaluated), but {self.dataset} holds {known} per class "
                                 f"(dataset_options.per_class); lower fewshot.shots or raise per_class")
        if self.prompt_learning is not None:
            if not isinstance(self.prompt_learning, PromptLearningOptions):
                raise ValueError(f"prompt_learning must be None or a dict like {PromptLearningOptions().to_dict()}, "
                                 f"got {self.prompt_learning!r}")
            self.prompt_learning.validate()
            if self.text_mode not in ("first", "average"):
                raise ValueError(f"prompt_learning supports text_mode 'first' or 'average', got {self.text_mode!r}")
        if self.captions is not None:
            _choice("captions", self.captions, CAPTION_SOURCES, extra="or None")
            if not self.uses_captions():
                raise ValueError(f"captions={self.captions!r} is only used by L_cap; switch it on with "
                                 "weights 'cap' > 0 (e.g. --weights cls=1,cap=1) or leave captions None")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ValueError(f"cache_dir must be a path string or None, got {self.cache_dir!r}")
        try:
            json.dumps(self.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the config must be JSON-serialisable (plain str/int/float/bool/list/dict"
                             f"/None values): {exc}") from None
        return self

    def fewshot_options(self) -> dict[str, Any] | None:
        """The few-shot options (validated) as a dict with every key (``None`` when few-shot is off)."""
        if self.fewshot is None:
            return None
        if not isinstance(self.fewshot, FewshotOptions):
            raise ValueError(f"fewshot must be None or a dict like {FEWSHOT_DEFAULTS}, got {self.fewshot!r}")
        return self.fewshot.validate().to_dict()

    def uses_captions(self) -> bool:
        """Whether a loss that reads image captions (L_cap, :func:`losses_needing`) is switched on."""
        return any(float(self.weights.get(name, 0.0)) > 0 for name in losses_needing("captions"))

    def caption_source(self) -> str | None:
        """Where L_cap's captions come from (None when L_cap is off); see the class docstring."""
        if not self.uses_captions():
            return None
        if self.captions is not None:
            return self.captions
        return teacher_spec(self.teacher).caption_source

    # ------------------------------------------------------------------ canonical form
    def hashed_values(self) -> dict[str, Any]:
        """Every hashed field, normalised: loss weights as :func:`canonical_weights`, ``tau`` and
        ``momentum`` as floats, sub-configs as their full identities, ``captions`` as the source
        L_cap reads (:meth:`caption_source`, None when L_cap is off); the runtime-only fields
        (:data:`RUNTIME_FIELDS`) left out."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RUNTIME_FIELDS}
        d = copy.deepcopy({k: v.identity() if isinstance(v, (FewshotOptions, PromptLearningOptions)) else v
                           for k, v in d.items()})
        d["weights"] = canonical_weights(d["weights"])
        for name in ("tau", "momentum"):
            d[name] = float(d[name])
        if self.fewshot is not None:
            self.fewshot.validate()
        d["captions"] = self.caption_source()
        return d

    def canonical(self) -> dict[str, Any]:
        """The identity this config is hashed over: :func:`canonical_config` expanded by the schema
        (:func:`hash_identity`): every schema-1 field, and every later field not at its default."""
        return hash_identity(canonical_config(self))


#: Length of a run's hash in hex digits.
HASH_LEN = 16


def canonical_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Loss weights as hashed: the paper's four terms always present (0.0 when off), every other
    loss only when switched on, all as floats. So adding a loss to the library never changes
    the hash of a run that does not use it."""
    out = {n: float(weights.get(n, 0.0)) for n in PAPER_LOSS_NAMES}
    out.update({n: float(weights[n]) for n in LOSS_NAMES if n not in out and float(weights.get(n, 0.0)) != 0.0})
    return out


def _schema() -> Schema:
    defaults = TrainConfig().hashed_values()
    return Schema(defaults=defaults, baseline=BASELINE_FIELDS,
                  nested={"fewshot": FEWSHOT_SCHEMA, "prompt_learning": PROMPT_LEARNING_SCHEMA})


#: The hashing schema of :class:`TrainConfig` (its normalised defaults, schema-1 fields, sub-configs).
CONFIG_SCHEMA: Schema = _schema()


def canonical_config(config: Mapping[str, Any] | TrainConfig) -> dict[str, Any]:
    """The canonical config: the schema version (:data:`vldlib.train.schema.SCHEMA_KEY`) and every
    hashed field whose normalised value (:meth:`TrainConfig.hashed_values`) differs from its declared
    default, sub-configs likewise. ``{}`` and the explicit defaults give ``{"schema": 1}``."""
    cfg = TrainConfig.from_dict(config)
    return {SCHEMA_KEY: SCHEMA_VERSION, **CONFIG_SCHEMA.compact(cfg.hashed_values())}


def hash_identity(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """The identity a canonical config is hashed over. Schema 1: the schema-1 fields
    (:data:`BASELINE_FIELDS`, their defaults where the canonical config lacks them) and every other
    field it holds, so every hash computed before the rule stands."""
    body = {k: v for k, v in canonical.items() if k != SCHEMA_KEY}
    version = canonical.get(SCHEMA_KEY, SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(f"canonical config of schema {version!r}; this vldlib reads schema {SCHEMA_VERSION}")
    return CONFIG_SCHEMA.expand(body)


def input_identity(config: Mapping[str, Any] | TrainConfig, *, strict: bool = False) -> dict[str, dict[str, str]]:
    """The config's inputs resolved to content digests (:func:`vldlib.train.inputs.resolve_inputs`):
    ``{"data": {"sha256", "source"}, "descriptions": ..., "captions": ...}``. Builds no teacher."""
    cfg = TrainConfig.from_dict(config)
    return resolve_inputs(cfg.dataset, cfg.dataset_options, cfg.descriptions, cfg.caption_source(), strict=strict)


def config_hash(config: Mapping[str, Any] | TrainConfig, inputs: Mapping[str, Any] | None = None) -> str:
    """A run's identity: ``sha256(canonical_json(identity))[:16]`` in hex.

    The identity is the canonical config expanded for its schema (:meth:`TrainConfig.canonical`:
    :func:`hash_identity` of :func:`canonical_config`; loss weights as :func:`canonical_weights`,
    the runtime-only fields (:data:`RUNTIME_FIELDS`) left out) without the data's location options
    (:data:`vldlib.train.inputs.LOCATION_OPTIONS`), plus ``"inputs"``: the digests of the inputs
    (``inputs``, default :func:`input_identity`) that differ from the default book's
    (:func:`vldlib.train.inputs.hashed_inputs`), only when there are any. So ``{}`` and the explicit
    defaults hash alike, the hash does not depend on key order, ``1`` vs ``1.0`` or where the
    data lies, and it changes with the content of the data, descriptions and captions a run reads.
    """
    cfg = TrainConfig.from_dict(config)
    resolved = input_identity(cfg) if inputs is None else inputs
    ident = cfg.canonical()
    ident["dataset_options"] = {k: v for k, v in ident["dataset_options"].items() if k not in LOCATION_OPTIONS}
    extra = hashed_inputs(cfg.dataset, cfg.dataset_options, cfg.descriptions, resolved)
    if extra:
        ident["inputs"] = extra
    return _digest(ident)


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash of a stored record from what it holds: its ``config`` and ``inputs`` (no file is
    read). A record without ``inputs`` (written before a run's identity covered its inputs)
    hashes as it was stored: its canonical config alone, location options included."""
    cfg = TrainConfig.from_dict(record["config"])
    inputs = record.get("inputs")
    if not isinstance(inputs, Mapping):
        return _digest(cfg.canonical())
    return config_hash(cfg, inputs)


def _digest(identity: Mapping[str, Any]) -> str:
    return json_sha256(identity)[:HASH_LEN]


# ---------------------------------------------------------------------- helpers
def _legacy_threads(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Read the old runtime key ``num_threads`` (None: torch's setting) as ``threads``."""
    if "num_threads" not in data:
        return data
    data = dict(data)
    legacy = data.pop("num_threads")
    if legacy is not None and "threads" not in data:
        data["threads"] = legacy
    return data
