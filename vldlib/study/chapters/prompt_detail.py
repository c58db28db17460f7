"""Chapter "How detailed should the descriptions be?" (paper Tables 6-7, Fig. 4)."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from vldlib.core.metrics import mean_pairwise_cosine, text_spectrum
from vldlib.data import load_dataset
from vldlib.data.specs import dataset_spec
from vldlib.features import CachedTextTeacher, LazyTeacher
from vldlib.paths import default_cache_dir
from vldlib.study import report
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, Chapter, ChapterRun, Claim, declared
from vldlib.study.datasets import own_descriptions
from vldlib.study.downloads import Download
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table
from vldlib.text.descriptions import description_key, load_descriptions
from vldlib.text.prompts import VARIANT_TITLES
from vldlib.train.texts import config_text_features

ALL_VARIANTS = ("none", "main", "succinct", "detailed", "distinct")
#: Our description sets -> Table 7's keys; Table 6's keys.
PAPER_KEYS = {"none": "none", "main": "main_prompt", "succinct": "more_succinct",
              "detailed": "more_detailed", "distinct": "more_distinct"}
TABLE6_KEYS = {"none": "plain_names", "main": "chatgpt_descriptions"}

def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The description sets asked for (``variants``; None: all five) with the full method (``weights``)
    and ``text_mode``; "main" is the dataset's own main-prompt sentences where it ships them."""
    keys = list(ALL_VARIANTS) if params.get("variants") is None else list(params["variants"])
    bad = [v for v in keys if v not in ALL_VARIANTS]
    if bad:
        raise ValueError(f"unknown description variant(s) {bad}; valid: {list(ALL_VARIANTS)}")
    weights = params.get("weights")
    common = {"weights": dict(weights) if weights is not None else TABLE1_METHODS["cls+imcst+vlprox(+mse)"],
              "analysis": bool(params.get("analysis", True))}
    if params.get("text_mode") is not None:
        common["text_mode"] = params["text_mode"]
    official = own_descriptions(grid.base)  # the main prompt's sentences ship as chatgpt.txt / descriptions.json
    return {v: {**common, "descriptions": "official" if (v == "main" and official) else (None if v == "none" else v)}
            for v in keys}


def comparisons(variants: list[str]) -> list[C]:
    """Each description set against none on the X_ood accuracies; the main prompt on X_id too."""
    return ([C(v, "none", m) for v in variants if v != "none" for m in ("acc_ood_zeroshot", "acc_ood_5shot")]
            + [C(v, "none", "acc_id") for v in variants if v == "main"])


CHAPTER = Chapter(
    name="prompt_detail",
    title="How detailed should the descriptions be?",
    question="Do richer class descriptions help, and which prompt?",
    paper_tables=("table7", "table6_text_cosine"),
    column="descriptions",
    variants=variants,
    metrics=ACCURACY,
    comparisons=comparisons,
    labels={"none": "No language enrichment", **{k: VARIANT_TITLES.get(k, k) for k in ALL_VARIANTS[1:]}},
    module=__name__,
    parameters=declared("variants", "text_mode", "weights", "analysis"),
    paper_keys=PAPER_KEYS,
    paper_column="descriptions_key",
    csv="table7",
    effects_title="Description sets vs no enrichment",
    claims=(
        Claim("main_zeroshot", "Table 7", "Class descriptions from the main prompt raise zero-shot X_ood accuracy "
              "over plain class names", C("main", "none", "acc_ood_zeroshot")),
        Claim("detailed_zeroshot", "Table 7", "More detailed descriptions raise zero-shot X_ood accuracy over "
              "plain class names", C("detailed", "none", "acc_ood_zeroshot")),
        Claim("text_cosine", "Table 6", "Descriptions lower the mean pairwise cosine of the unseen classes' text "
              "features (classes easier to tell apart)", C("main", "none", "mean_cos"), digits=3),
        Claim("text_spread", "Fig. 4", "Descriptions spread the unseen classes' text features: larger singular "
              "values (sum of the top ten, mean-centred)", C("main", "none", "spread"), direction=1,
              direction_text="larger (Fig. 4, a plot)", digits=3),
    ),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.text_mode = self.params.get("text_mode")
        self.paper_all = self.paper
        self._text: tuple[pd.DataFrame, pd.DataFrame, int] | None = None

    def figure(self, runs: pd.DataFrame):
        metrics = self.metrics(runs)
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8))
        axes = [axes] if len(metrics) == 1 else list(axes)
        frame = runs.assign(set=[CHAPTER.label(v) for v in runs["descriptions"]])
        for ax, metric in zip(axes, metrics):
            report.plot_intervals(frame, x="set", y=metric, order=[CHAPTER.label(v) for v in self.variants], ax=ax,
                                  ylabel=f"{ACCURACY_NAMES[metric]} accuracy (%)", title=ACCURACY_NAMES[metric])
            ax.tick_params(axis="x", labelrotation=35)
        fig.suptitle("Full method with each description set: runs (dots), mean and 95% t-interval (black)")
        fig.tight_layout()
        return fig

    def descriptions_for(self, variant: str, ds) -> dict[str, list[str]] | None:
        """The description set ``variant`` of dataset ``ds`` as the trainer reads it."""
        if variant == "none":
            return None
        if variant == "main" and own_descriptions(self.grid.base) and ds.descriptions:
            return ds.descriptions
        key = description_key(self.grid.base["dataset"], self.grid.base["dataset_options"])
        return load_descriptions(key, variant, cache_dir=self.params.get("cache_dir"))

    def text_features(self) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        """Mean pairwise cosine and spectrum of the unseen classes' text features per description
        set and class split (text features are cheap: every class split on Fashion-MNIST); computed
        once per chapter."""
        if self._text is None:
            self._text = self._text_features()
        return self._text

    def _text_features(self) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        g = self.grid
        cache = self.params.get("cache_dir") or default_cache_dir()  # the text features the runs cached
        teacher = CachedTextTeacher(LazyTeacher.in_cache(g.base["teacher"], g.base["teacher_options"], cache), cache)
        mode = self.text_mode or g.base["text_mode"]
        splits = g.split_seeds
        if self.params.get("split_seeds") is None and dataset_spec(g.dataset).split_seed_required:
            splits = list(range(3 if g.profile == "smoke" else 10))
        text_rows, spectrum_rows, n_classes = [], [], 0
        for split in splits:
            options = dict(g.base["dataset_options"])
            if split is not None:
                options["split_seed"] = split
            ds = load_dataset(g.base["dataset"], **options)
            names = list(ds.unseen_classes)
            n_classes = len(names)
            for v in self.variants:
                text_cfg = {**g.base, "descriptions": None if v == "none" else v, "text_mode": mode,
                            "description_control": None}
                _, feats = config_text_features(teacher, text_cfg, ds, descriptions=self.descriptions_for(v, ds))
                spectrum = text_spectrum(feats, normalize=True).tolist()[:10]
                text_rows.append({"descriptions": v, "split_seed": split, "seed": 0,
                                  "mean_cos": mean_pairwise_cosine(feats), "spread": float(sum(spectrum))})
                for i, s in enumerate(spectrum):
                    spectrum_rows.append({"descriptions": CHAPTER.label(v), "split_seed": split,
                                          "index": i + 1, "singular value": s})
        return pd.DataFrame(text_rows), pd.DataFrame(spectrum_rows), n_classes

    def text_effects(self, text_frame: pd.DataFrame) -> pd.DataFrame:
        """Paired effects (over class splits) of each description set on the text features: mean
        pairwise cosine (Table 6, beside the paper's difference) and spread (Fig. 4, no number)."""
        t6 = paper_table("table6_text_cosine").set_index("text_set_key")["avg_pairwise_cos"]
        paper = pd.DataFrame({"descriptions": list(TABLE6_KEYS), "mean_cos": [float(t6[k]) for k in TABLE6_KEYS.values()]})
        comparisons = [C(v, "none", m) for v in self.variants if v != "none" for m in ("mean_cos", "spread")]
        return report.compare(text_frame, comparisons, column="descriptions", labels=dict(CHAPTER.labels),
                              metric_labels={"mean_cos": "mean pairwise text cosine", "spread": "text spread"},
                              paper=paper, paper_column="descriptions", units=["split_seed"], digits=3, unit="")

    def cosine_table(self, text_frame: pd.DataFrame) -> pd.DataFrame:
        """Table 6: mean pairwise cosine of the class text features, ours beside the paper's."""
        t6 = paper_table("table6_text_cosine")
        summary = report.summarize(text_frame, "descriptions", "mean_cos")
        table = report.interval_table(summary, "descriptions", labels={"mean_cos": "ours: mean pairwise cosine"},
                                      digits=3, order=list(self.variants))
        table[f"paper ({t6['dataset'].iloc[0]})"] = [
            f"{t6.set_index('text_set_key').loc[TABLE6_KEYS[v], 'avg_pairwise_cos']:.4f}" if v in TABLE6_KEYS else "–"
            for v in table.index]
        table.index = [CHAPTER.label(v) for v in table.index]
        return table

    def spectrum_figure(self, spectra: pd.DataFrame):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        report.plot_lines(spectra, x="index", y="singular value", hue="descriptions", ax=ax,
                          title="Text spectra of the unseen classes (band: 95% interval over class splits)")
        ax.set_xlabel("singular value index")
        fig.tight_layout()
        return fig

    def show_text_features(self) -> None:
        """Table 6 (mean pairwise cosine) and Fig. 4 (text spectra), ours beside the paper's."""
        text_frame, spectra, _ = self.text_features()
        cosine = self.cosine_table(text_frame)
        display(cosine, self.csv(cosine, "table6"))
        self.spectrum_figure(spectra)
        plt.show()
        display(self.csv(spectra, "fig4_spectra", f"The figure above shows the spectra of {len(text_frame)} "
                         "text-feature sets (description set x class split); every singular value is in"))

    def publish_claims(self, effects: pd.DataFrame) -> tuple[pd.DataFrame, Download]:
        """The claims on the students' accuracies and on the text features (Table 6, Fig. 4)."""
        text = self.text_effects(self.text_features()[0])
        return super().publish_claims(pd.concat([effects, text], ignore_index=True))

    def reading(self, runs: pd.DataFrame, effects: pd.DataFrame) -> str:
        text_frame, _, n_classes = self.text_features()
        t6 = paper_table("table6_text_cosine")
        lines = super().reading(runs, effects).splitlines()
        if {"main", "none"} <= set(text_frame["descriptions"]):
            t6p = t6.set_index("text_set_key")["avg_pairwise_cos"]
            eff = report.paired_effect(text_frame, "mean_cos", column="descriptions", treatment="main",
                                       baseline="none", units=["split_seed"])
            lines.append("- Text features: " + report.effect_sentence(
                eff, metric="the mean pairwise cosine of the unseen classes' text features",
                treatment="Enrichment with the main-prompt descriptions", baseline="plain names",
                paper=float(t6p["chatgpt_descriptions"] - t6p["plain_names"]), unit="", digits=3))
        lines.append(f"- The mean-centred text features of {n_classes} unseen classes have at most "
                     f"{n_classes - 1} non-zero singular values, so Fig. 4 here can show only that many "
                     f"(the paper's Fig. 4 plots the top ten for {t6['dataset'].iloc[0]}).")
        return "\n".join(lines)
