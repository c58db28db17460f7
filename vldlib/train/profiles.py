"""Named sets of trainer defaults: ``offline`` (the default), ``paper`` and ``smoke``.

A profile is plain data: a dict of :class:`vldlib.train.TrainConfig` fields that differ from
the dataclass defaults. :func:`profile_config` turns a profile plus overrides into a complete,
validated config dict, ready for :func:`vldlib.train.train` or ``vldlib.runs.RunStore.run``.

- ``offline``: CPU, no network. Fashion-MNIST (5 seen / 5 unseen classes, 300 images per
  class: X_train 1050, X_id 450, X_ood 1500 images), the ConSE *proxy* teacher (EfficientNet-Lite2
  + MiniLM, not CLIP; its options the winner of the teacher search on development class splits,
  ``vldlib/resources/teacher_search.json``) with the class-text template "a photo of a {name}" (the proxy's own
  ImageNet-side template; the paper's code omits the article), the ``small`` student at width 16,
  10 epochs of one pass each, SGD (accuracies averaged over the last 3), evaluation only in those last
  epochs. The recipe (images per class, width, epochs, optimiser) is the winner of the recipe
  search on development class splits (:mod:`vldlib.study.design`,
  ``vldlib/resources/recipe_search.json``; a test checks that the two agree). The engine's fast
  paths are on: the student trains under bf16 autocast where the CPU computes bf16 natively (AVX-512
  BF16 / AMX) and in fp32 elsewhere (``precision="auto"``, resolved to ``"bf16"`` or ``"fp32"`` when the
  config is built, :func:`vldlib.device.fast_precision`, so a run's hash names the one it used) and the proxy
  teacher's image encoder runs through OpenVINO (``teacher_options.backend="openvino"``); both
  are measured by ``benchmarks/``. 5-shot fine-tuning runs 3 epochs (the budget) at OneCycle peak
  lr 0.3, the winner of the 5-shot search on the development splits (``python -m vldlib.study.design
  --fewshot``: the full method's 5-shot X_ood accuracy, peak lr 0.001 to 1; the paper's 0.003 is
  for 100 epochs and here leaves the accuracy where zero-shot left it). Scale up by overriding e.g. ``epochs``,
  ``dataset_options={"per_class": 2000}`` or ``student_options={"width": 32}``.
- ``paper``: a GPU machine with internet. The official split lists (``dataset_options={"root":
  ...}`` is required), open_clip ViT-L/14 ``openai``, ResNet18, batch 128, SGD lr 0.05 with the
  paper's epochs (90 outer epochs x 5 repeats on the small datasets, x 1 on the large ones:
  ``repeat_epochs="auto"``), L_vlprox k = 256 with the filter, 5-shot fine-tuning per §5.4
  (OneCycle, peak 0.003, 100 / 20 epochs), the official once-per-batch augmentation draw. The
  student trains under bf16 autocast on CUDA (``amp=True``; fp32 on a CPU), with
  ``num_workers="auto"`` image-decoding workers (min(8, cores - 1)).
- ``smoke``: tiny sizes so that every code path runs in seconds (tests, ``book --profile smoke``).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from vldlib.core.losses import PAPER_LOSS_NAMES
from vldlib.data import ROOTED_DATASETS
from vldlib.device import fast_precision
from vldlib.models.conse import CONSE_ENSEMBLE
from vldlib.train.config import TrainConfig

_FULL_METHOD = {name: 1.0 for name in PAPER_LOSS_NAMES}

PROFILES: dict[str, dict[str, Any]] = {
    "offline": {
        # sized by measurement (one CPU thread: ~7 s per run with few-shot and the analysis metrics;
        # 5 seen classes x 210 X_train images, 10 epochs): see the module docstring
        "dataset": "fashion-mnist",
        "dataset_options": {"per_class": 300, "load_size": 32, "crop_size": 28},
        "teacher": "conse",
        # the proxy-teacher search's winner (vldlib/study/teacher_search.py, chosen on the development
        # splits by the teacher's own zero-shot accuracy and spread): EfficientNet-Lite2, ConSE over
        # centred 7-template ImageNet-name embeddings at temperature 4; OpenVINO: the fast CPU engine
        "teacher_options": {"backbone": "lite2", "backend": "openvino", "centre": True, "temperature": 4.0,
                            "template": list(CONSE_ENSEMBLE)},
        "template": "a photo of a {name}",
        "enriched_template": "a photo of a {name} . {description}",
        "student": "small",
        "student_options": {"width": 16},  # the recipe search's winner (vldlib/study/design.py)
        # engine: bf16 autocast of the student where this CPU computes bf16 natively, else fp32
        # (emulated bf16 is ~10x slower); resolved when the config is built, so the hash names it
        "precision": "auto",
        "weights": dict(_FULL_METHOD),
        "k": 256,
        "epochs": 10,
        "last_n": 3,
        "eval_epochs": "last_n",
        "batch_size": 128,
        "eval_batch_size": 512,
        "device": "cpu",
        "fewshot": {"shots": 5, "epochs": 3, "lr": 0.3},  # the 5-shot search's winner (vldlib/study/design.py)
    },
    "paper": {
        "dataset": "official",
        "dataset_options": {},
        "teacher": "openclip",
        "teacher_options": {"model": "ViT-L-14", "pretrained": "openai"},
        "student": "resnet18",
        "student_options": {},
        "weights": dict(_FULL_METHOD),
        "k": 256,
        "filter": True,
        "optimizer": "sgd",
        "lr": 0.05,
        "schedule": "step",
        "epochs": 90,
        "repeat_epochs": "auto",
        "last_n": 5,
        "batch_size": 128,
        "eval_batch_size": 64,
        "device": "auto",
        "amp": True,  # bf16 autocast of the student on CUDA (fp32 on the CPU); hashed
        "num_workers": "auto",  # min(8, cores - 1) DataLoader workers (runtime-only)
        "per_image_aug": False,
        "fewshot": {"shots": 5, "epochs": "auto", "lr": "auto"},
    },
    "smoke": {
        "dataset": "fashion-mnist",
        "dataset_options": {"per_class": 24, "load_size": 32, "crop_size": 28},
        "teacher": "conse",
        # 64 px instead of Lite0's 224: a twelfth of the teacher's cost, enough to run every code path
        "teacher_options": {"backbone": "lite0", "image_size": 64},
        "template": "a photo of a {name}",
        "enriched_template": "a photo of a {name} . {description}",
        "student": "small",
        "student_options": {"width": 8},
        "weights": dict(_FULL_METHOD),
        "k": 256,
        "epochs": 3,
        "last_n": 2,
        "batch_size": 32,
        "eval_batch_size": 128,
        "device": "cpu",
        "fewshot": {"shots": 5, "epochs": 2, "lr": 0.03},
    },
}

#: Config fields whose dict value is merged key by key with the profile's (others are replaced).
MERGED_FIELDS: tuple[str, ...] = ("dataset_options", "teacher_options", "student_options", "fewshot")


def profile_config(profile: str = "offline", **overrides: Any) -> dict[str, Any]:
    """The profile's config with ``overrides`` applied, validated, as a complete plain dict.

    ``*_options`` and ``fewshot`` overrides are merged into the profile's dicts (pass
    ``fewshot=None`` to switch few-shot off); other fields are replaced. Choosing another
    ``dataset``/``teacher``/``student`` than the profile's resets its ``*_options`` to ``{}``
    (before any ``*_options`` / dotted ``*_options.key`` overrides are applied). Dotted keys set one
    nested value: ``profile_config("offline", **{"dataset_options.split_seed": 1})``.
    Unknown profile or key -> ValueError listing the valid ones. The ``paper`` profile still
    needs ``dataset_options={"root": ...}``; that is checked when training starts.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    base = TrainConfig().to_dict()
    base.update(copy.deepcopy(PROFILES[profile]))
    config = apply_overrides(base, overrides)  # also resolves precision "auto" (fast_precision)
    cfg = TrainConfig.from_dict(config)
    _validate_except_data_root(cfg)
    return cfg.to_dict()


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``overrides`` applied (merging rules of
    :func:`profile_config`). Keys must be config fields or ``field.subkey`` for dict fields."""
    out = copy.deepcopy(dict(config))
    valid = sorted(TrainConfig().to_dict())
    for name in ("dataset", "teacher", "student"):
        # another dataset/teacher/student starts from empty options: the profile's options
        # belong to its own choice (given options are then merged onto {})
        if name in overrides and overrides[name] != out.get(name):
            out[f"{name}_options"] = {}
    for key, value in overrides.items():
        value = copy.deepcopy(value)
        head, _, sub = key.partition(".")
        if head not in out:
            raise ValueError(f"unknown config key {key!r}; valid keys: {valid}")
        if sub:
            current = out[head]
            if current is None and head == "fewshot":
                current = {}
            if not isinstance(current, dict):
                raise ValueError(f"{head!r} is not a dict field, so {key!r} cannot set a sub-key")
            out[head] = {**current, sub: value}
        elif head in MERGED_FIELDS and isinstance(value, Mapping) and isinstance(out[head], dict):
            out[head] = {**out[head], **value}
        else:
            out[head] = value
    if out.get("precision") == "auto":  # the one machine-dependent default, made explicit here
        out["precision"] = fast_precision(out.get("device", "cpu"))
    return out


def _validate_except_data_root(cfg: TrainConfig) -> None:
    if cfg.dataset in ROOTED_DATASETS and not cfg.dataset_options.get("root"):
        probe = TrainConfig.from_dict({**cfg.to_dict(),
                                       "dataset_options": {**cfg.dataset_options, "root": "<unset>"}})
        probe.validate()
    else:
        cfg.validate()
