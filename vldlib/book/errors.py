"""The book driver's errors: one a user can fix (:class:`BookError`) and a failed notebook
(:class:`NotebookFailed`), each reported as one message."""
from __future__ import annotations

from pathlib import Path


class BookError(RuntimeError):
    """A problem the user can fix (bad parameter, missing notebook, failed build)."""


class NotebookFailed(BookError):
    """A notebook raised during execution; the message names the notebook and the cell."""

    def __init__(self, name: str, cell_index: int | None, source: str, error: str, kept: Path | None,
                 exec_count: int | None = None):
        self.name, self.cell_index, self.source, self.error, self.kept = name, cell_index, source, error, kept
        self.exec_count = exec_count
        head = "\n".join("    " + line for line in source.strip().splitlines()[:6])
        where = f"cell {cell_index} (0-based, in the source)" if cell_index is not None else "an unknown cell"
        if exec_count is not None:
            where += f", In [{exec_count}]"
        msg = f"notebook {name!r} failed in {where}:\n{head}\n  {error}"
        if kept is not None:
            msg += f"\n  the partly executed notebook is kept at {kept}"
        super().__init__(msg)

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.name, self.cell_index, self.source, self.error, self.kept, self.exec_count)


def one_line(text: object) -> str:
    """``text`` on one line (a multi-line message's lines joined with "; ")."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
