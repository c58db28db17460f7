"""Chapter "Language-enrichment strategies" (paper Table 5): descriptions, auxiliary captions
(L_cap, Eq. 8) and CoOp prompt learning, alone and combined, on top of the best Table 1 setting."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.models.specs import teacher_spec
from vldlib.study import report
from vldlib.study.chapters import ACCURACY_NAMES, Chapter, ChapterRun, Claim, declared
from vldlib.study.datasets import own_descriptions
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, TABLE5_ENRICHMENTS, paper_table

VARIANTS = tuple(TABLE5_ENRICHMENTS)
BEST = TABLE1_METHODS["cls+imcst+vlprox(+mse)"]

def enrichment_overrides(key: str, *, official: bool, n_ctx: int, analysis: bool) -> dict[str, Any]:
    """The config overrides of Table 5 row ``key``: the best Table 1 losses plus its strategies."""
    parts = TABLE5_ENRICHMENTS[key]
    out: dict[str, Any] = {"weights": dict(BEST), "analysis": analysis}
    if "descriptions" in parts:
        out["descriptions"] = "official" if official else "main"
    if "captions" in parts:
        out["weights"]["cap"] = 1.0
    if "prompt" in parts:
        out["prompt_learning"] = {"n_ctx": int(n_ctx)}
    return out


def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The Table 5 rows asked for (``enrichments``; None: all), each its strategies on the best Table 1
    losses (descriptions: the dataset's own main-prompt sentences where it ships them)."""
    keys = list(VARIANTS) if params.get("enrichments") is None else list(params["enrichments"])
    bad = [v for v in keys if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown Table 5 row(s) {bad}; valid: {list(VARIANTS)}")
    official = own_descriptions(grid.base)  # chatgpt.txt or descriptions.json
    return {v: enrichment_overrides(v, official=official, n_ctx=params.get("n_ctx", 8),
                                    analysis=bool(params.get("analysis", True))) for v in keys}


CHAPTER = Chapter(
    name="language_enrichment",
    title="Language-enrichment strategies",
    question="Which ways of adding language to the class texts help the student on unseen classes?",
    paper_tables=("table5",),
    column="enrichment",
    variants=variants,
    metrics={"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc", "acc_ood_5shot": "ood_5shot_acc"},
    comparisons=tuple(C(v, "no_enrichment", m) for v in VARIANTS[1:]
                      for m in ("acc_ood_zeroshot", "acc_ood_5shot", "acc_id")),
    labels={"no_enrichment": "Tab. 1 best (no enrichment)", "semantic_details": "Semantic details (descriptions)",
            "aux_captions": "Auxiliary captions (L_cap)", "prompt_learning": "Prompt learning (CoOp)",
            "semantics+caption": "Semantics + caption", "semantics+prompt": "Semantics + prompt",
            "semantics+caption+prompt": "Semantics + caption + prompt"},
    claims=(
        Claim("descriptions_zeroshot", "Table 5", "Enriching the class names with descriptions raises zero-shot "
              "X_ood accuracy over no enrichment", C("semantic_details", "no_enrichment", "acc_ood_zeroshot")),
        Claim("prompt_zeroshot", "Table 5", "Learning the prompt (CoOp) lowers zero-shot X_ood accuracy",
              C("prompt_learning", "no_enrichment", "acc_ood_zeroshot")),
    ),
    module=__name__,
    parameters=declared("enrichments", "n_ctx", "analysis"),
    paper_keys={v: v for v in VARIANTS},
    paper_column="method_key",
    effects_title="Language-enrichment strategies vs no enrichment",
)


class Run(ChapterRun):
    def notes(self) -> str:
        return self.proxy_note() + "\n\n" + self.caption_note()

    def caption_note(self) -> str:
        """Which captioner the auxiliary-caption rows used (a proxy in the offline world)."""
        if not any("captions" in TABLE5_ENRICHMENTS[v] for v in self.variants):
            return ""
        if teacher_spec(self.grid.base["teacher"]).caption_source == "proxy":
            return ("The auxiliary captions here come from a **proxy captioner**, not a real captioner: each "
                    "image's caption names the proxy teacher's top three ImageNet classes for it "
                    "(\"a photo of a sandal, a clog or a running shoe\"). The paper used OFA captions.")
        return "The auxiliary captions are read from the dataset's caption file (`captions.json`)."

    def figure(self, runs: pd.DataFrame):
        metrics = self.metrics(runs)
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 4.2), squeeze=False)
        frame = runs.assign(row=[CHAPTER.label(v) for v in runs["enrichment"]])
        for ax, metric in zip(axes[0], metrics):
            report.plot_intervals(frame, x="row", y=metric, order=[CHAPTER.label(v) for v in self.variants], ax=ax,
                                  ylabel="accuracy (%)", title=ACCURACY_NAMES[metric])
            ax.tick_params(axis="x", labelrotation=40)
            for lab in ax.get_xticklabels():
                lab.set_horizontalalignment("right")
        fig.suptitle("Each dot is one run; black: mean with its 95% t-interval")
        fig.tight_layout()
        return fig

    def reading(self, runs: pd.DataFrame, effects: pd.DataFrame) -> str:
        lines = []
        summary = report.summarize(runs, "enrichment", self.metrics(runs))
        best = summary[summary["metric"] == "acc_ood_zeroshot"].sort_values("mean", ascending=False)
        if not best.empty:
            top = best.iloc[0]
            lines.append(f"- The highest zero-shot X_ood accuracy comes from **{CHAPTER.label(top['enrichment'])}** "
                         f"({report.format_interval(top['mean'], top['ci_low'], top['ci_high'])} %, "
                         f"{int(top['n'])} runs).")
        lines += super().reading(runs, effects).splitlines()
        with_paper = effects[effects["paper"].notna()]
        if len(with_paper):
            seen = int((with_paper["verdict"] == "as in the paper").sum())
            lines.append(f"- Of {len(with_paper)} comparisons with a paper value, {seen} show the paper's direction "
                         "with an interval that excludes 0.")
        return "\n".join(lines)
