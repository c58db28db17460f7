"""The sections of the page "Choosing the offline recipe" (``notebooks/offline_recipe.py``): the
recorded recipe search (:func:`vldlib.study.design.load_result`) as text, tables and a figure."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from vldlib.study import design
from vldlib.study.downloads import save_csv

__all__ = ["show_search", "show_fewshot", "show_splits"]


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
