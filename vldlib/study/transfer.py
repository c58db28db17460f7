"""Transfer above chance: a student's accuracy as the share of its teacher's ability above chance.

    share = (student - chance) / (teacher - chance)

1 means the student does as well as its teacher, 0 means chance, above 1 that it does better.
The share makes the paper (CLIP teacher, about 100-way tasks, chance ~1 %) and the offline world
(the proxy teacher, 5-way, chance 20 %) comparable in one unit. It is undefined (NaN) where the
teacher is not above chance. The paper's shares are computed from its Table 1 with each dataset's
chance (1 / the number of classes in Table 13); its Average column is the mean of the six
datasets' shares, not the share of the averaged accuracies.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vldlib.study.reference import paper_table

__all__ = ["above_chance_share", "paper_chance", "paper_transfer", "TRANSFER_FIELDS"]

#: The accuracy fields a share is computed for, and the teacher field each is set against: the
#: teacher has no 5-shot entry, so X_ood 5-shot is not given a share.
TRANSFER_FIELDS: dict[str, str] = {"id_acc": "n_classes_id", "ood_zero_shot_acc": "n_classes_ood"}


def above_chance_share(student, teacher, chance):
    """``(student - chance) / (teacher - chance)`` elementwise (scalars, arrays or Series, in %);
    NaN where the teacher is at or below chance or any input is missing."""
    s, t, c = (np.asarray(v, dtype=float) for v in (student, teacher, chance))
    gap = t - c
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(gap > 0, (s - c) / np.where(gap > 0, gap, 1.0), np.nan)
    if isinstance(student, pd.Series):
        return pd.Series(out, index=student.index, name=student.name)
    return float(out) if out.ndim == 0 else out


def paper_chance(dataset: str, field: str) -> float:
    """Chance accuracy (%) of ``field`` (``id_acc`` or ``ood_zero_shot_acc``) on one of the paper's
    six datasets: 100 / the number of seen (X_id) or unseen (X_ood) classes in Table 13."""
    if field not in TRANSFER_FIELDS:
        raise ValueError(f"no chance level for field {field!r}; valid: {', '.join(TRANSFER_FIELDS)}")
    sizes = paper_table("table13_split_sizes", dataset=dataset)
    return 100.0 / float(sizes[TRANSFER_FIELDS[field]].iloc[0])


def paper_transfer(method_keys: Sequence[str] | None = None,
                   teacher_key: str = "teacher_clip_vit_l14") -> pd.DataFrame:
    """The paper's Table 1 rows as shares of its teacher's above-chance accuracy: one row per
    (``method_key``, ``dataset``) with ``id_acc`` and ``ood_zero_shot_acc`` shares; the
    ``Average`` rows are the mean over the six datasets' shares. Labelled as the paper's values
    (``source`` column), computed here from its published accuracies."""
    table = paper_table("table1")
    per_dataset = table[table["dataset"] != "Average"]
    teacher = per_dataset[per_dataset["method_key"] == teacher_key].set_index("dataset")
    if teacher.empty:
        raise ValueError(f"no teacher rows {teacher_key!r} in Table 1")
    rows = per_dataset[per_dataset["method_key"] != teacher_key]
    if method_keys is not None:
        rows = rows[rows["method_key"].isin(list(method_keys))]
    out = rows[["method", "method_key", "dataset"]].copy()
    for field in TRANSFER_FIELDS:
        chance = rows["dataset"].map(lambda d, f=field: paper_chance(d, f))
        out[field] = above_chance_share(rows[field].astype(float).to_numpy(),
                                        rows["dataset"].map(teacher[field]).astype(float).to_numpy(),
                                        chance.to_numpy())
    average = (out.groupby(["method", "method_key"], sort=False)[list(TRANSFER_FIELDS)]
               .agg(lambda v: v.mean() if v.notna().all() else np.nan).reset_index())
    average["dataset"] = "Average"
    out = pd.concat([out, average[out.columns]], ignore_index=True)
    out["source"] = f"paper (computed from Table 1 and Table 13; teacher {teacher_key})"
    return out
