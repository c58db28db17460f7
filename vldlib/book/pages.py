"""What the driver does to an executed notebook before it becomes a page: its code cells folded
(:func:`hide_code_cells`, papermill's injected cell included) and no warning of a library on it
(:func:`strip_warnings`; the kernels also start with :data:`KERNEL_WARNINGS` ignored), so that a
page shows neither noise nor the local paths a warning names."""
from __future__ import annotations

import re
from typing import Any

HIDE_TAG = "hide-input"
#: Warnings the kernels ignore from the start (``PYTHONWARNINGS`` syntax): tqdm's "IProgress not
#: found" (its notebook bars need ipywidgets; the book's progress goes to the driver's terminal).
KERNEL_WARNINGS: tuple[str, ...] = ("ignore:IProgress not found:Warning",)
#: A warning as :mod:`warnings` prints it: ``<file>:<line>: <Category>Warning: <message>``, then
#: the source line, indented.
WARNING_LINE = re.compile(r"^\S[^\n]*?:\d+: [A-Za-z_][\w.]*Warning: ")


def kernel_warnings(current: str | None) -> str:
    """``$PYTHONWARNINGS`` for the kernels: ``current`` (the user's filters) with
    :data:`KERNEL_WARNINGS` added once."""
    filters = [f for f in (current or "").split(",") if f]
    return ",".join([*filters, *(f for f in KERNEL_WARNINGS if f not in filters)])


def hide_injected(nb: Any) -> int:
    """Tag papermill's ``injected-parameters`` cells ``hide-input`` (collapsed in HTML and JupyterLab)."""
    count = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            if HIDE_TAG not in tags:
                cell.metadata["tags"] = [*tags, HIDE_TAG]
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
            count += 1
    return count


def hide_code_cells(nb: Any) -> int:
    """Tag every code cell ``hide-input`` (folded behind a toggle in the HTML, collapsed in
    JupyterLab), the ``parameters`` and ``injected-parameters`` cells included; returns the number
    of code cells. Idempotent."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.get("metadata", {}).get("tags", []))
        if HIDE_TAG not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, HIDE_TAG]
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
        count += 1
    return count


def _drop_warnings(text: str) -> tuple[str, list[str]]:
    """``text`` without the warnings in it (each with its indented source lines); the warnings."""
    kept: list[str] = []
    dropped: list[str] = []
    in_warning = False
    for line in text.splitlines(keepends=True):
        if WARNING_LINE.match(line):
            dropped.append(line.rstrip("\n"))
            in_warning = True
        elif in_warning and line[:1] in (" ", "\t"):
            continue  # the source line the warning quotes
        else:
            in_warning = False
            kept.append(line)
    return "".join(kept), dropped


def strip_warnings(nb: Any) -> list[str]:
    """Remove the Python warnings a notebook's cells printed on stderr (``warnings.warn`` output:
    a library's file path, the category, the message); a stderr stream left empty goes too.
    Returns the warnings' first lines, for the driver to print in the terminal instead."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                text, dropped = _drop_warnings(text)
                found += dropped
                if not text:
                    continue
                out["text"] = text
            outputs.append(out)
        cell["outputs"] = outputs
    return found
