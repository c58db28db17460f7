"""Chapter "The teacher" (paper Table 1's teacher rows): how well does the teacher itself
recognise the classes zero-shot, with plain names and with descriptions? No student is trained."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from vldlib.core.metrics import mean_per_class_accuracy, zero_shot_predict
from vldlib.data import load_dataset
from vldlib.data.specs import dataset_spec
from vldlib.models.specs import teacher_spec
from vldlib.features import CachedTextTeacher, LazyTeacher, teacher_image_features
from vldlib.paths import default_cache_dir
from vldlib.study import report
from vldlib.study.chapters import ACCURACY_NAMES, Chapter, ChapterRun, Claim, declared
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import paper_table
from vldlib.text.descriptions import description_key, load_descriptions
from vldlib.train.config import DESCRIPTION_VARIANTS
from vldlib.train.texts import config_text_features

METRICS = {"acc_id": ACCURACY_NAMES["acc_id"], "acc_ood_zeroshot": ACCURACY_NAMES["acc_ood_zeroshot"]}

CHAPTER = Chapter(
    name="teacher_zero_shot",
    title="The teacher",
    question="How well does the teacher itself recognise seen and unseen classes zero-shot?",
    paper_tables=("table1",),
    column="texts",
    metrics={"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc"},
    labels={"plain": "plain names", "chance": "chance (1 / number of classes)"},
    module=__name__,
    parameters=declared("descriptions"),
    csv="table1_teacher",
    claims=(
        Claim("above_chance", "Table 1", "The teacher recognises unseen classes zero-shot, from their names alone, "
              "well above chance (points over chance, plain names)", C("plain", "chance", "acc_ood_zeroshot"),
              direction=1, direction_text="above chance (CLIP rows)"),
    ),
)


class Run(ChapterRun):
    def setup(self) -> None:
        g, cfg = self.grid, self.grid.base
        if self.params.get("split_seeds") is None and dataset_spec(g.dataset).split_seed_required:
            # every class split draws on the same cached image pool, so more splits cost no teacher passes
            g.split_seeds = list(range(3 if g.profile == "smoke" else 10))
        desc = self.params.get("descriptions", "main")
        if desc is not None and desc not in (*DESCRIPTION_VARIANTS, "official"):
            raise ValueError(f"unknown descriptions {desc!r}; valid: {', '.join(map(repr, DESCRIPTION_VARIANTS))}, "
                             "'official' (official datasets' chatgpt.txt) or None")
        cache_dir = self.params.get("cache_dir")
        self.cache = Path(cache_dir) if cache_dir else default_cache_dir()
        self.teacher = LazyTeacher.in_cache(cfg["teacher"], cfg["teacher_options"], self.cache)
        #: key -> (label, description variant, text mode[, description control])
        self.text_sets: dict[str, tuple] = {"plain": ("plain names", None, "first")}
        if desc is not None:
            self.text_sets["enriched"] = (f"enriched ({desc}), first sentence", desc, "first")
            self.text_sets["enriched-avg"] = (f"enriched ({desc}), mean over sentences", desc, "average")
        spec = teacher_spec(cfg["teacher"])
        self.teacher_name = spec.label if spec.proxy else self.teacher.identifier
        self.paper = paper_table("table1", dataset=g.paper_dataset,
                                 method_key=["teacher_clip_vit_l14", "teacher_clip_rn50"])
        print(f"profile {g.profile}: {g.dataset}, teacher {self.teacher.identifier}; class splits {g.split_seeds}")

    def descriptions_for(self, ds, variant: str | None):
        """The description set the trainer would use for this dataset and variant."""
        if variant is None:
            return None
        spec = dataset_spec(self.grid.dataset)
        if spec.shipped_descriptions:
            return load_descriptions(spec.name, "main" if variant == "official" else variant)
        if variant in ("official", "main") and ds.descriptions:
            return ds.descriptions
        cfg = self.grid.base
        return load_descriptions(description_key(cfg["dataset"], cfg["dataset_options"]), variant,
                                 cache_dir=self.params.get("cache_dir"))

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The teacher's zero-shot accuracies (:meth:`zero_shot`; this chapter trains no student)."""
        return self.zero_shot()

    def show_table(self, acc: pd.DataFrame, what: str = "teacher evaluations (text set x class split)") -> None:
        super().show_table(acc, what)

    def zero_shot(self) -> pd.DataFrame:
        """Zero-shot accuracy of the teacher per class split and text set (features cached)."""
        cfg, rows = self.grid.base, []
        text_encoder = CachedTextTeacher(self.teacher, self.cache)
        for split in self.grid.split_seeds:
            options = dict(cfg["dataset_options"])
            root = options.pop("root", None)
            if split is not None:
                options["split_seed"] = split
            ds = load_dataset(cfg["dataset"], root=root, **options)
            feats = {name: teacher_image_features(self.teacher, getattr(ds, name), dataset_id=ds.name,
                                                  cache_dir=self.cache, progress=False) for name in ("id", "ood")}
            for key, (_, variant, mode, *control) in self.text_sets.items():
                # a control: one of the description_controls chapter's, over seen and unseen classes
                text_cfg = {**cfg, "descriptions": variant, "text_mode": mode,
                            "description_control": control[0] if control else None}
                seen, unseen = config_text_features(text_encoder, text_cfg, ds,
                                                    descriptions=self.descriptions_for(ds, variant))
                texts = {"id": seen, "ood": unseen}
                row = {"texts": key, "split_seed": split, "seed": 0,
                       "n_seen": len(ds.seen_classes), "n_unseen": len(ds.unseen_classes)}
                for name, metric in (("id", "acc_id"), ("ood", "acc_ood_zeroshot")):
                    labels = torch.as_tensor(getattr(ds, name).labels)
                    row[metric] = 100.0 * mean_per_class_accuracy(zero_shot_predict(feats[name], texts[name]), labels)
                rows.append(row)
        print(f"teacher forward passes in this notebook: {self.teacher.forward_passes()}")
        return pd.DataFrame(rows)

    def proxy_note(self) -> str:
        spec = teacher_spec(self.grid.base["teacher"])
        return f"The teacher is the **{spec.label} teacher** `{self.teacher.identifier}`, not CLIP." if spec.proxy else ""

    def table(self, acc: pd.DataFrame) -> pd.DataFrame:
        """Ours per text set, the paper's CLIP teacher rows, and chance."""
        summary = report.summarize(acc, "texts", list(METRICS))
        ours = report.interval_table(summary, "texts", labels=METRICS, order=list(self.text_sets))
        ours.index = [f"{self.teacher_name}: {self.text_sets[k][0]}" for k in ours.index]
        p = self.paper
        paper_rows = pd.DataFrame({"X_id": [f"{v:.1f}" for v in p["id_acc"]],
                                   "X_ood zero-shot": [f"{v:.1f}" for v in p["ood_zero_shot_acc"]]},
                                  index=[f"paper ({self.grid.paper_dataset}): {m}" for m in p["method"]])
        chance = pd.DataFrame({"X_id": [f"{100 / acc['n_seen'].iloc[0]:.1f}"],
                               "X_ood zero-shot": [f"{100 / acc['n_unseen'].iloc[0]:.1f}"]},
                              index=["chance (1 / number of classes)"])
        return pd.concat([ours, paper_rows, chance])

    def figure(self, acc: pd.DataFrame):
        long = acc.melt(id_vars=["texts", "split_seed", "seed"], value_vars=list(METRICS),
                        var_name="split", value_name="accuracy")
        long["split"] = long["split"].map(METRICS)
        long["text set"] = long["texts"].map({k: v[0] for k, v in self.text_sets.items()})
        fig, ax = plt.subplots(figsize=(7.5, 4))
        report.plot_intervals(long, x="text set", y="accuracy", hue="split", ax=ax,
                              ylabel="mean per-class accuracy (%)",
                              title="Teacher zero-shot accuracy: dots are class splits; bars mean and 95% CI")
        ax.axhline(100 / acc["n_unseen"].iloc[0], color="grey", ls=":", lw=1)
        ax.tick_params(axis="x", labelrotation=10)
        fig.tight_layout()
        return fig

    def effects(self, acc: pd.DataFrame) -> pd.DataFrame:
        """Paired effects over class splits: each text set against chance (1 / number of classes of
        the split) and the enriched sets against plain names (:func:`report.compare` frame)."""
        chance = acc[acc["texts"] == "plain"].assign(texts="chance", acc_id=100 / acc["n_seen"],
                                                     acc_ood_zeroshot=100 / acc["n_unseen"])
        frame = pd.concat([acc, chance], ignore_index=True)
        comparisons = [C(k, "chance", m) for k in self.text_sets for m in METRICS]
        comparisons += [C(k, "plain", m) for k in self.text_sets if k != "plain" for m in METRICS]
        return report.compare(frame, comparisons, column="texts", labels={**CHAPTER.labels, **{
            k: v[0] for k, v in self.text_sets.items()}}, metric_labels={m: f"{n} accuracy" for m, n in METRICS.items()},
            units=["split_seed"])

    def reading(self, acc: pd.DataFrame, effects: pd.DataFrame) -> str:
        plain = report.t_interval(acc.loc[acc["texts"] == "plain", "acc_ood_zeroshot"])
        chance_ood = 100 / acc["n_unseen"].iloc[0]
        clip_ood = self.paper.loc[self.paper["method_key"] == "teacher_clip_vit_l14", "ood_zero_shot_acc"]
        verdict = ("above chance" if plain.excludes(chance_ood) and plain.mean > chance_ood else
                   "not distinguishable from chance" if not plain.excludes(chance_ood) else "below chance")
        lines = [f"- With plain class names the {self.teacher_name} teacher reaches "
                 f"{report.format_interval(plain.mean, plain.low, plain.high)} % zero-shot on X_ood "
                 f"({plain.n} class splits), {verdict} ({chance_ood:.1f} %)"
                 + (f"; the paper's CLIP ViT-L/14 reaches {clip_ood.iloc[0]:.1f} % on its "
                    f"{self.grid.paper_dataset} column." if not clip_ood.empty else ".")]
        for key in [k for k in self.text_sets if k != "plain"]:
            for metric in METRICS:
                eff = report.paired_effect(acc, metric, column="texts", treatment=key, baseline="plain",
                                           units=["split_seed"])
                lines.append("- " + report.effect_sentence(
                    eff, metric=f"the teacher's {METRICS[metric]} accuracy",
                    treatment=self.text_sets[key][0].capitalize(), baseline="plain names"))
        return "\n".join(lines)
