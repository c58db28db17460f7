"""Planning a build: the book's notebook sources, their ``parameters`` cells (literal
assignments only) and every requested parameter checked against them and against the declared
types (:mod:`vldlib.study.parameters`), all before anything executes."""
from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vldlib.book.contents import BOOK_ORDER, ROOT, SUMMARY
from vldlib.book.errors import BookError, one_line
from vldlib.paths import default_cache_dir
from vldlib.study import parameters
from vldlib.train.profiles import PROFILES

#: Parameters every notebook defines and the driver sets from its own options (not ``-p``).
RESERVED = ("profile", "results_dir")


@dataclass(frozen=True)
class NotebookSource:
    """One notebook of the book: its name, source path and the defaults of its parameters cell."""

    name: str
    path: Path
    parameters: dict[str, Any] = field(hash=False)


def known_profiles() -> tuple[str, ...]:
    """Profile names from :data:`vldlib.train.profiles.PROFILES`."""
    return tuple(PROFILES)


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal where it parses (``3``, ``0.5``, ``(0, 1)``, ``True``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _parameters_cell(nb: Any) -> Any | None:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def read_parameters(nb: Any, name: str) -> dict[str, Any]:
    """Defaults of the notebook's ``parameters`` cell: ``{name: literal}``.

    The cell must hold only assignments of literals to plain names (comments allowed); anything
    else raises :class:`BookError`, since papermill overrides values by re-assignment only.
    """
    cell = _parameters_cell(nb)
    if cell is None:
        raise BookError(
            f"notebook {name!r} has no cell tagged 'parameters'; tag its first code cell with "
            "`# %% tags=[\"parameters\"]`"
        )
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise BookError(f"notebook {name!r}: its parameters cell is not valid Python: {exc}") from exc
    params: dict[str, Any] = {}
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else None
        value = getattr(stmt, "value", None)
        if not targets or value is None or not all(isinstance(t, ast.Name) for t in targets):
            raise BookError(
                f"notebook {name!r}: its parameters cell may hold only `name = literal` lines; "
                f"line {stmt.lineno} is `{ast.get_source_segment(cell.source, stmt)}`"
            )
        try:
            literal = ast.literal_eval(value)
        except ValueError as exc:
            raise BookError(
                f"notebook {name!r}: parameter on line {stmt.lineno} is not a literal "
                f"(`{ast.get_source_segment(cell.source, stmt)}`); use a literal value"
            ) from exc
        for target in targets:
            params[target.id] = literal
    return params


def notebook_sources(notebooks_dir: Path | None = None, summary: Path | None = None,
                     only: Sequence[str] | None = None) -> list[NotebookSource]:
    """The book's notebooks in order, with their parameter defaults (missing file -> :class:`BookError`)."""
    import jupytext

    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else ROOT / "notebooks"
    summary = Path(summary) if summary is not None else ROOT / "book" / f"{SUMMARY}.py"
    paths = {name: notebooks_dir / f"{name}.py" for name in BOOK_ORDER}
    paths[SUMMARY] = summary
    if only:
        unknown = [n for n in only if n not in paths]
        if unknown:
            raise BookError(f"--only: unknown notebook(s) {', '.join(unknown)}; the book's notebooks are "
                            f"{', '.join(paths)}")
        paths = {name: path for name, path in paths.items() if name in only}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BookError(f"notebook source(s) not found: {', '.join(missing)} (run from a full checkout, or "
                        "pass --notebooks-dir)")
    out = []
    for name, path in paths.items():
        try:
            nb = jupytext.read(path)
        except Exception as exc:  # noqa: BLE001 - unreadable, not UTF-8, not a notebook: jupytext's many errors
            raise BookError(f"cannot read notebook {name!r} ({path}): {one_line(f'{type(exc).__name__}: {exc}')}; "
                            "restore it (it must be a jupytext percent-format .py file)") from None
        out.append(NotebookSource(name, path, read_parameters(nb, name)))
    return out


def _coerce(value: Any, default: Any, raw: str | None) -> tuple[bool, Any]:
    """(ok, value) after checking ``value`` against the type of the notebook's default."""
    if default is None or type(value) is type(default):
        return True, value
    if isinstance(default, str):
        return True, raw if raw is not None else str(value)
    if isinstance(default, bool) or isinstance(value, bool):
        return False, value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return (True, float(value)) if isinstance(default, float) else (float(value).is_integer(), value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return True, value
    return False, value


def papermill_value(value: Any) -> Any:
    """``value`` with tuples (and sets) turned into lists, recursively: papermill writes a tuple
    into the injected cell as a *string* (``"(0, 1)"``), a list as a list."""
    if isinstance(value, (tuple, list)):
        return [papermill_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(papermill_value(v) for v in value)
    if isinstance(value, dict):
        return {k: papermill_value(v) for k, v in value.items()}
    return value


def plan(sources: Sequence[NotebookSource], profile: str, results_dir: str,
         overrides: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> list[tuple[NotebookSource, dict[str, Any]]]:
    """Validate everything and return ``[(notebook, parameters)]``; raises :class:`BookError` first.

    - ``profile`` must be one of :func:`known_profiles`;
    - each override ``NAME`` must be a parameter of at least one notebook (it is passed to those
      that define it);
    - every parameter of every notebook (its default, or the ``-p`` value) is checked against its
      declared type (:data:`vldlib.study.parameters.PARAMETERS`; a name not declared there
      against the type of the notebook's default), and a chapter's parameters must give a valid
      base config (:func:`vldlib.study.parameters.check_parameters`), all before anything runs.
    """
    profiles = known_profiles()
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    for key, _ in pairs:
        if key in RESERVED:
            raise BookError(f"-p {key}: set it with --{key.replace('_', '-')} instead")
        if not key.isidentifier():
            raise BookError(f"-p {key!r}: a parameter name must be a Python identifier")
        if not any(key in src.parameters for src in sources):
            listing = "; ".join(f"{src.name}: {', '.join(src.parameters)}" for src in sources)
            raise BookError(f"-p {key}: no notebook has a parameter {key!r}; the parameters are {listing}")
    for flag, name, value in (("--results-dir", "results_dir", results_dir),
                              ("$VLD_CACHE / the default cache", "cache_dir", str(default_cache_dir()))):
        try:
            parameters.check_value(name, value, base=ROOT)
        except parameters.ParameterError as exc:
            raise BookError(f"{flag} {value}: expected {exc.expected}") from None
    out = []
    for src in sources:
        for key in RESERVED:
            if key not in src.parameters:
                raise BookError(f"notebook {src.name!r}: its parameters cell must define {key!r} "
                                f"(it defines {', '.join(src.parameters) or 'nothing'})")
        params: dict[str, Any] = {"profile": profile, "results_dir": results_dir}
        given = {key: raw for key, raw in pairs if key in src.parameters}
        try:
            values = _checked(src, {**src.parameters, **params}, given)
        except ValueError as exc:
            raise BookError(f"{exc} (notebook {src.name!r})") from None
        params.update({key: papermill_value(values[key]) for key in given})
        out.append((src, params))
    return out


def _checked(src: NotebookSource, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameter values (defaults overlaid with the ``-p`` values), each checked."""
    values: dict[str, Any] = {}
    for key, default in defaults.items():
        if key not in given:
            values[key] = (parameters.check_value(key, default, base=ROOT) if key in parameters.PARAMETERS
                           else default)
            continue
        raw = given[key]
        value = parse_value(raw) if isinstance(raw, str) else raw
        if key in parameters.PARAMETERS:
            if parameters.PARAMETERS[key].kind in ("str", "dir", "writable_dir") and isinstance(raw, str) \
                    and not isinstance(value, str) and value is not None:
                value = raw  # a folder or name that looks like a number is still a string
            values[key] = parameters.check_value(key, value, cli=True, base=ROOT)
            continue
        ok, value = _coerce(value, default, raw if isinstance(raw, str) else None)
        if not ok:
            raise BookError(f"-p {key} {raw!r}: notebook {src.name!r} expects type {type(default).__name__} "
                            f"(its default is {default!r})")
        values[key] = value
    parameters.check_parameters(values, grid=True, cli=True, base=ROOT)
    return values
