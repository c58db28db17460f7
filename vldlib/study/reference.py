"""The paper's published numbers (Li et al., ICCV 2023, arXiv 2307.03135v3) as tidy pandas frames.

``vldlib/resources/paper_tables.json`` is a transcription of the project's reference file
(``shared/reference/paper_tables.json``): one entry per table or figure, each with a caption, its
source, units, notes and a list of records.  This module only reads it; nothing here is measured.
Every frame it returns is labelled as the paper's values: a ``source`` column
(e.g. ``"paper: arXiv 2307.03135v3, Table 1"``) and ``frame.attrs`` holding caption, units and notes.

Typical use in a notebook::

    from vldlib.study.reference import paper_table
    paper_table("table1", dataset="Average")            # wide: one row per method
    paper_table("table1", long=True)                    # long: one row per (method, dataset, metric)
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

__all__ = [
    "PAPER_SOURCE",
    "TABLE1_METHODS",
    "TABLE5_ENRICHMENTS",
    "FIELD_LOSS_METHODS",
    "ACCURACY_FIELDS",
    "table_names",
    "table_info",
    "paper_table",
    "method_key_for_weights",
]

PAPER_SOURCE = "paper"
"""Value of the ``source`` prefix that marks a row as a published value (ours use ``"ours"``)."""

ACCURACY_FIELDS: dict[str, str] = {
    "id_acc": "X_id",
    "ood_zero_shot_acc": "X_ood zero-shot",
    "ood_5shot_acc": "X_ood 5-shot",
}
"""The three accuracy columns of the result tables (mean per-class top-1, %), with display names."""

TABLE1_METHODS: dict[str, dict[str, float]] = {
    "cls": {"cls": 1.0},
    "mse": {"mse": 1.0},
    "cls+mse": {"cls": 1.0, "mse": 1.0},
    "imcst": {"im_cst": 1.0},
    "cls+imcst": {"cls": 1.0, "im_cst": 1.0},
    "cls+imcst+mse": {"cls": 1.0, "im_cst": 1.0, "mse": 1.0},
    "cls+imcst+vlprox(+mse)": {"cls": 1.0, "im_cst": 1.0, "vlprox": 1.0, "mse": 1.0},
    "imcst+vlprox(+mse)": {"im_cst": 1.0, "vlprox": 1.0, "mse": 1.0},
}
"""Table 1's student rows (``method_key`` in the JSON) as loss-weight dicts for ``losses.combined_loss``.

Which terms are on is what identifies a row; the weights themselves are the profile's business.
The "(+L_mse)" rows are run *with* L_mse (the official README's full-method command; paper
footnote 1 leaves the choice per dataset undisclosed)."""

TABLE5_ENRICHMENTS: dict[str, tuple[str, ...]] = {
    "no_enrichment": (),
    "semantic_details": ("descriptions",),
    "aux_captions": ("captions",),
    "prompt_learning": ("prompt",),
    "semantics+caption": ("descriptions", "captions"),
    "semantics+prompt": ("descriptions", "prompt"),
    "semantics+caption+prompt": ("descriptions", "captions", "prompt"),
}
"""Table 5's rows (``method_key`` in the JSON) as the language-enrichment strategies each combines,
on top of the best Table 1 configuration: ``descriptions`` (the ChatGPT "semantic details"),
``captions`` (auxiliary captions, L_cap, Eq. 8), ``prompt`` (CoOp prompt learning)."""

FIELD_LOSS_METHODS: dict[str, dict[str, float]] = {
    "cls": {"cls": 1.0},
    "cls+mse": {"cls": 1.0, "mse": 1.0},
    "cls+imcst": {"cls": 1.0, "im_cst": 1.0},
    "cls+vlprox": {"cls": 1.0, "vlprox": 1.0},
    "cls+fd": {"cls": 1.0, "fd": 2000.0},  # CLIP-KD's FD weight (FD = L_mse / D, so weight 1 would be ~0)
    "cls+icl": {"cls": 1.0, "icl": 1.0},
    "cls+crd": {"cls": 1.0, "crd": 1.0},
    "cls+rkd": {"cls": 1.0, "rkd": 1.0},
}
"""The rows of the chapter "The paper's losses beside the field's": L_cls alone and L_cls plus one
term, the paper's own (L_mse, L_im-cst, L_vlprox) or the field's (CLIP-KD's FD, ICL and CRD-style
affinity; Park et al.'s RKD). Only the first three have a row in the paper (Table 1)."""


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    text = resources.files("vldlib").joinpath("resources/paper_tables.json").read_text("utf-8")
    return json.loads(text)


def table_names() -> list[str]:
    """Names of the transcribed tables and figures, e.g. ``["table1", "figure1_bars", ...]``."""
    return list(_load())


def _check_name(name: str) -> dict[str, Any]:
    tables = _load()
    if name not in tables:
        raise ValueError(
            f"unknown paper table {name!r}; known tables: {', '.join(tables)} "
            "(see vldlib.reference.table_names())"
        )
    return tables[name]


def table_info(name: str) -> dict[str, Any]:
    """Caption, source, units, fields and notes of one table (everything except the records)."""
    entry = _check_name(name)
    return {k: v for k, v in entry.items() if k != "records"}


def _id_columns(frame: pd.DataFrame, value_columns: Sequence[str]) -> list[str]:
    return [c for c in frame.columns if c not in value_columns and c != "source"]


def paper_table(
    name: str,
    *,
    dataset: str | Sequence[str] | None = None,
    long: bool = False,
    **filters: Any,
) -> pd.DataFrame:
    """One published table as a DataFrame, labelled as the paper's values.

    Parameters
    ----------
    name:
        Table key, e.g. ``"table1"``, ``"table2"``, ``"table7"``, ``"table9"``, ``"table14_mrel"``,
        ``"table15_mneigh"``, ``"table16_vlalign"``, ``"table6_text_cosine"``.
    dataset:
        Keep only these datasets (a name or a list of names; ``"Average"`` is Table 1's Avg column).
    long:
        If true, melt the numeric value columns into ``metric`` / ``value`` (one row per number,
        missing entries such as the paper's "NA" dropped).
    filters:
        Column equality filters, e.g. ``method_key="cls"`` or ``k=3``; a list value keeps any of
        its members.

    Returns a frame with the records' columns plus ``source`` (``"paper: <source>"``);
    ``frame.attrs`` holds ``caption``, ``units``, ``notes`` and ``table``.
    """
    entry = _check_name(name)
    frame = pd.DataFrame.from_records(entry["records"])
    if dataset is not None:
        filters = {"dataset": dataset, **filters}
    for column, wanted in filters.items():
        if column not in frame.columns:
            raise ValueError(
                f"paper table {name!r} has no column {column!r} to filter on; "
                f"its columns are {list(frame.columns)}"
            )
        values = [wanted] if isinstance(wanted, (str, int, float)) else list(wanted)
        known = set(frame[column].dropna().unique())
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(
                f"paper table {name!r}: no rows with {column} in {unknown}; "
                f"available values: {sorted(map(str, known))}"
            )
        frame = frame[frame[column].isin(values)]
    frame = frame.reset_index(drop=True)
    frame["source"] = f"{PAPER_SOURCE}: {entry.get('source', 'arXiv 2307.03135v3')}"
    if long:
        numeric = [
            c for c in frame.columns
            if c not in ("k", "source") and pd.api.types.is_numeric_dtype(frame[c])
        ]
        frame = frame.melt(
            id_vars=_id_columns(frame, numeric) + ["source"],
            value_vars=numeric, var_name="metric", value_name="value",
        ).dropna(subset=["value"]).reset_index(drop=True)
    frame.attrs.update(
        table=name,
        caption=entry.get("caption", ""),
        units=entry.get("units", ""),
        notes=list(entry.get("notes") or []),
        source=entry.get("source", ""),
    )
    return frame


def method_key_for_weights(weights: Mapping[str, float]) -> str | None:
    """Table 1's ``method_key`` whose set of active losses equals that of ``weights``.

    ``{"cls": 1, "im_cst": 1}`` -> ``"cls+imcst"``.  Terms with weight 0 count as off.
    Returns ``None`` when the combination is not a row of Table 1 (e.g. L_cls + L_vlprox).
    A set of L_im-cst + L_vlprox *without* L_mse maps to the "(+L_mse)" row as well, since the
    paper reports the better of the two.
    """
    active = {k for k, v in weights.items() if float(v) != 0.0}
    for key, row in TABLE1_METHODS.items():
        if set(row) == active:
            return key
    for key, row in TABLE1_METHODS.items():
        if key.endswith("(+mse)") and set(row) - {"mse"} == active:
            return key
    return None
