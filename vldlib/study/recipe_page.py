"""The sections of the page "Choosing the offline recipe" (``notebooks/offline_recipe.py``): the
recorded recipe search (:func:`vldlib.study.design.load_result`) and proxy-teacher search
(:func:`vldlib.study.teacher_search.load_result`) as text, tables and figures."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from vldlib.study import design, teacher_search
from vldlib.study.diagnosis import GEOMETRY_LABELS
from vldlib.study.downloads import save_csv

__all__ = ["show_search", "show_fewshot", "show_splits", "teacher_search_table", "show_teacher_search"]

#: The teacher search's columns shown, with their page names.
TEACHER_COLUMNS = {"rank": "rank", "acc_ood_zeroshot": GEOMETRY_LABELS["acc_ood_zeroshot"], "acc_ood_low": "low",
                   "acc_ood_high": "high", "acc_id": "X_id zero-shot (%)",
                   **{k: GEOMETRY_LABELS[k] for k in ("mean_cos", "mean_norm", "between_share", "acc_ood_top4")},
                   "eligible": "eligible"}


def show_search(result: Mapping[str, Any], results_dir: str) -> None:
    """The criterion, the budget, the winner, any earlier budget, and every candidate (table, figure, CSV)."""
    pd.set_option("display.max_colwidth", 120)
    display(Markdown(f"**Criterion** (fixed before the search): {result['criterion']}; "
                     f"budget: at most {result['max_cpu_s_per_run']:.0f} CPU seconds per run. "
                     f"**Winner: `{result['winner']}`** ({result['candidates'][result['winner']]}). "
                     f"The search took {result['wall_s'] / 60:.0f} minutes on this project's 2-core machine "
                     f"(`{result['command']}`)."))
    for h in result.get("history", []):  # earlier budgets, re-ranked without training (`--rechoose`)
        display(Markdown(f"An earlier budget of {h['max_cpu_s_per_run']:.0f} CPU s per run chose `{h['winner']}`; "
                         f"the default book it gave measured over its 30-minute ceiling, so the budget was lowered "
                         f"to {result['max_cpu_s_per_run']:.0f} s and the same recorded runs re-ranked "
                         f"(`python -m vldlib.study.design --rechoose`): the criterion and the runs are unchanged."))
    search = design.search_table(result).round(3)
    display(search)
    design.plot_search(result)
    plt.show()
    display(save_csv(search, "offline_recipe", "search", results_dir,
                     text="The table and the figure above show every candidate of the search; its numbers are in"))


def show_fewshot(result: Mapping[str, Any], results_dir: str) -> None:
    """The 5-shot stage's search: criterion, winner, its table (or that none is recorded, or stale)."""
    fs = result.get("fewshot")
    if fs and fs.get("stale"):
        display(Markdown(f"**The recorded 5-shot search is stale**: {fs['stale']}."))
    if not fs:
        display(Markdown("No 5-shot search is recorded (`python -m vldlib.study.design --fewshot`)."))
        return
    display(Markdown(f"**Criterion**: {fs['criterion']}. **Winner: `{fs['winner']}`** "
                     f"({fs['candidates'][fs['winner']]}): {len(fs['runs'])} runs, "
                     f"{fs['run_s_total'] / 60:.1f} minutes of training in all (`{fs['command']}`)."))
    fewshot = design.fewshot_search_table(result).round(2)
    display(fewshot, save_csv(fewshot, "offline_recipe", "fewshot", results_dir, text="Download this table:",
                              index=False))


def show_splits(result: Mapping[str, Any], n_test_splits: int, results_dir: str) -> None:
    """The development class splits (the search only) and the first ``n_test_splits`` test splits."""
    splits = pd.concat([design.splits_table([int(s) for s in result["dev_splits"]], "development"),
                        design.splits_table(design.TEST_SPLITS[:n_test_splits], "test")], ignore_index=True)
    display(splits, save_csv(splits, "offline_recipe", "splits", results_dir, text="Download this table:", index=False))


def teacher_search_table(result: Mapping[str, Any], top: int = 12) -> pd.DataFrame:
    """The ``top`` ranked candidates of the recorded teacher search and the teacher before it (means over
    the development splits; the interval of the primary criterion), the winner and the baseline marked."""
    rows = [r for r in result["table"] if r["rank"] <= top or r["candidate"] in (result["default"], result["winner"])]
    table = pd.DataFrame(rows).set_index("candidate")[list(TEACHER_COLUMNS)].rename(columns=TEACHER_COLUMNS)
    table["chosen"] = ["winner: the book's teacher" if c == result["winner"] else
                       "the teacher before the search" if c == result["default"] else "" for c in table.index]
    return table


def plot_teacher_search(result: Mapping[str, Any]):
    """Every candidate's X_ood zero-shot accuracy against the spread of its features (mean pairwise
    cosine of X_train): eligible ones in blue, the winner in red, the teacher before the search in black."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in result["table"]:
        color = ("crimson" if r["candidate"] == result["winner"] else "black" if r["candidate"] == result["default"]
                 else "tab:blue" if r["eligible"] else "lightgrey")
        ax.scatter(r["mean_cos"], r["acc_ood_zeroshot"], s=28 if color in ("crimson", "black") else 12, color=color)
    for name, color in ((result["default"], "black"), (result["winner"], "crimson")):
        r = next(t for t in result["table"] if t["candidate"] == name)
        ax.annotate(name, (r["mean_cos"], r["acc_ood_zeroshot"]), fontsize=7, color=color,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("mean pairwise cosine of the teacher's X_train features")
    ax.set_ylabel("teacher X_ood zero-shot (%)")
    ax.set_title("proxy-teacher candidates (development splits)", fontsize=9)
    return fig


def show_teacher_search(results_dir: str, result: Mapping[str, Any] | None = None) -> None:
    """The proxy-teacher search: criterion, grid, cost, winner, the ranked table, the figure, the CSV."""
    result = teacher_search.load_result() if result is None else result
    grid = ", ".join(f"{k} {len(v)}" for k, v in result["grid"].items())
    display(Markdown(f"**Criterion** (declared with the grid, before any candidate was scored): {result['criterion']} "
                     f"**Grid**: {len(result['candidates'])} candidates ({grid}; temperature with probabilities "
                     f"only), on the {len(result['dev_splits'])} development splits "
                     f"{', '.join(str(s) for s in result['dev_splits'])}. **Cost**: "
                     f"{result['cost_s']['total'] / 60:.1f} minutes (`{result['command']}`). "
                     f"**Winner: `{result['winner']}`**, the offline profile's teacher since "
                     f"(`teacher_options` {result['winner_teacher_options']}); "
                     f"the teacher before the search was `{result['default']}`."))
    table = teacher_search_table(result).round(3)
    display(table)
    plot_teacher_search(result)
    plt.show()
    display(save_csv(pd.DataFrame(result["table"]), "offline_recipe", "teacher_search", results_dir,
                     text="Every candidate's means over the development splits are in", index=False))
