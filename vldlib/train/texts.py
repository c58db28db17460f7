"""A run's class texts: which descriptions a config uses and how its class names become the
teacher's class text features (the zero-shot classifier of paper §3), written once.

:func:`config_text_features` is the one place that turns a config (``descriptions``,
``description_control``, ``text_mode``, ``template``, ``enriched_template``) and a dataset's class
names into ``(seen, unseen)`` text features; the trainer and the chapters call it (a chapter that
studies another description set or text mode passes the config with that field replaced).
:class:`RunTexts` is the trainer's part of it: the run's class texts, learned prompts (CoOp) and
caption features.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch

from vldlib.features import CachedTextTeacher, proxy_caption_classes
from vldlib.models.prompts import PromptLearner, coop_texts
from vldlib.models.teachers import imagenet_class_names
from vldlib.text.captions import CAPTION_FILE, PROXY_CAPTION_TOP, captions_for, proxy_caption, read_caption_file
from vldlib.text.classifier import class_text_features, class_texts
from vldlib.text.controls import control_descriptions
from vldlib.text.descriptions import descriptions_source
from vldlib.train.config import TrainConfig

__all__ = ["config_descriptions", "config_text_features", "plain_config", "RunTexts"]


def _config(config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def config_descriptions(config: TrainConfig | Mapping[str, Any], ds: Any) -> dict[str, list[str]] | None:
    """The description set ``{class name: [sentence, ...]}`` a config's class texts use on dataset
    ``ds`` (a :func:`vldlib.data.load_dataset` result), None for plain names: ``"official"`` is the
    data folder's own (``ds.descriptions``), a prompt variant the set of
    :func:`vldlib.text.descriptions.descriptions_source` (shipped or cached)."""
    cfg = _config(config)
    if cfg.descriptions is None:
        return None
    if cfg.descriptions == "official":
        if not ds.descriptions:
            raise ValueError(f"descriptions='official' but dataset {ds.name!r} has no "
                             "chatgpt.txt; add it to the data root or choose a description variant")
        return ds.descriptions
    return descriptions_source(cfg.dataset, cfg.dataset_options, cfg.descriptions)[0]


def config_text_features(encoder: Any, config: TrainConfig | Mapping[str, Any], ds: Any,
                         descriptions: Mapping[str, list[str]] | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(seen, unseen)`` class text features (float, on the CPU) of dataset ``ds``'s classes as
    the config builds them: its descriptions (:func:`config_descriptions`, or ``descriptions``
    when given), its description control (applied over the seen and unseen classes together),
    its ``text_mode`` and templates, through ``encoder.encode_text``
    (:func:`vldlib.text.classifier.class_text_features`)."""
    cfg = _config(config)
    desc = config_descriptions(cfg, ds) if descriptions is None else descriptions
    enriched = cfg.enriched_template
    if cfg.description_control is not None:
        desc, enriched = control_descriptions(cfg.description_control,
                                              [*ds.seen_classes, *ds.unseen_classes], desc, enriched)
    kw = dict(mode=cfg.text_mode, template=cfg.template, enriched_template=enriched)
    seen = class_text_features(encoder, ds.seen_classes, desc, **kw)
    unseen = class_text_features(encoder, ds.unseen_classes, desc, **kw)
    return seen.float(), unseen.float()


def plain_config(config: TrainConfig) -> TrainConfig:
    """The config's plain-name class texts (its template, one string per class): the analysis
    metrics' texts (Table 2)."""
    return dataclasses.replace(config, descriptions=None, description_control=None, text_mode="first")


class RunTexts:
    """The trainer's class texts (a part of ``vldlib.train.trainer._Run``): the seen and unseen
    class text features, CoOp's learned prompts and the caption features of L_cap."""

    cfg: TrainConfig
    ds: Any
    teacher: Any
    cache_dir: Path
    device: torch.device
    prompt: PromptLearner | None

    def _texts(self) -> tuple[torch.Tensor, torch.Tensor]:
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        seen, unseen = config_text_features(enc, self.cfg, self.ds)
        return seen.to(self.device), unseen.to(self.device)

    def _plain_texts(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        if cfg.descriptions is None and cfg.description_control is None and cfg.text_mode == "first" \
                and self.prompt is None:
            return self.text_seen, self.text_unseen
        enc = CachedTextTeacher(self.teacher, self.cache_dir)
        seen, unseen = config_text_features(enc, plain_config(cfg), self.ds)
        return seen.to(self.device), unseen.to(self.device)

    def _build_prompt(self) -> PromptLearner | None:
        """CoOp (Table 5): the learnable context and each class's prompts "X ... X {name}." (None when off)."""
        if self.cfg.prompt_learning is None:
            return None
        opts = self.cfg.prompt_learning.identity()  # validated, init_std a float
        desc = config_descriptions(self.cfg, self.ds)
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
