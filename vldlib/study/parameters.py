"""The notebooks' parameters, each declared once with its type, default and help: one schema for
the book driver, the chapters and the notebooks' parameters cells.

Every name that a chapter's (or the summary page's) ``parameters`` cell may define is declared
once in :data:`PARAMETERS` as a :class:`Param`: its type, whether ``None`` is allowed (``None``
meaning "the profile's default"), the valid choices, an example value, its default and its help
line. A chapter's notebook cell is :data:`SHARED` plus the chapter's own (``Chapter.parameters``,
:func:`declared`), written as :func:`parameters_cell` gives it (a test compares). The same check runs

- in the book driver (:mod:`vldlib.book`), for the defaults and every ``-p NAME VALUE`` of every
  selected notebook, **before any notebook executes**;
- inside each chapter notebook, in its first code cell (``open_chapter(name, globals(), page=True)``,
  :func:`check_parameters`), so a notebook executed directly by papermill or JupyterLab is checked
  the same way.

A bad value is one line naming the parameter, the value, the expected type and an example
(:class:`ParameterError`, a ``ValueError``). After the types, :func:`check_parameters` builds the
chapter's base config (:func:`vldlib.study.grid.make_grid`: profile, dataset, ``overrides``, ...
validated, no data loaded), so a bad override fails before anything trains as well.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vldlib.core.losses import LOSS_NAMES
from vldlib.data import DATASETS
from vldlib.study.datasets import dataset_grids
from vldlib.study.executors import EXECUTORS
from vldlib.study.grid import PAPER_DATASETS, make_grid, repeated
from vldlib.study.reference import FIELD_LOSS_METHODS, TABLE1_METHODS, TABLE5_ENRICHMENTS
from vldlib.train.config import DESCRIPTION_VARIANTS, STUDENTS, TEACHERS, TEXT_MODES
from vldlib.train.profiles import PROFILES

__all__ = ["Param", "ParameterError", "PARAMETERS", "GRID_NAMES", "SHARED", "declared", "parameters_cell",
           "check_value", "check_parameters"]

#: The kinds a parameter may have (``Param.kind``).
KINDS: tuple[str, ...] = ("str", "int", "float", "bool", "dir", "writable_dir", "list[int]", "list[str]",
                          "list[dir]", "dict", "dict[str, float]", "dict[str, dict]")
_TEXT = {"str": "a string", "int": "an integer", "float": "a number", "bool": "True or False", "dir": "an existing folder (a string)",
         "writable_dir": "a writable folder path (a string)", "list[int]": "a list of integers",
         "list[str]": "a list of strings", "list[dir]": "a list of existing folders", "dict": "a dict", "dict[str, float]": "a dict {name: number}",
         "dict[str, dict]": "a dict {label: {loss name: weight}}"}


class ParameterError(ValueError):
    """A notebook parameter with a value of the wrong type or outside its choices."""

    def __init__(self, name: str, value: Any, expected: str, example: str, *, cli: bool = False) -> None:
        self.name, self.value, self.expected, self.example, self.cli = name, value, expected, example, cli
        shown = f"-p {name} {value!r}" if cli else f"parameter {name} = {value!r}"
        how = f"-p {name} {_shell(example)}" if cli else f"{name} = {example}"
        super().__init__(f"{shown}: expected {expected}; for example {how}")

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return functools.partial(type(self), cli=self.cli), (self.name, self.value, self.expected, self.example)


@dataclass(frozen=True)
class Param:
    """The declared type of one notebook parameter.

    ``kind``: one of :data:`KINDS`; ``optional``: ``None`` is allowed (the profile's default);
    ``choices``: the valid strings (of the value, or of each list item / dict key);
    ``minimum``: for integers (and integer list items); ``example``: a value that works, as typed;
    ``distinct``: a list must not repeat an item (seeds and class splits: each is one experimental unit);
    ``default``: its value in a notebook's parameters cell; ``help``: the cell's comment on it.
    """

    kind: str
    example: str
    optional: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    distinct: bool = False
    default: Any = None
    help: str = ""

    def expected(self) -> str:
        text = _TEXT[self.kind]
        if self.minimum is not None:
            text += f" >= {self.minimum}"
        if self.choices:
            what = "each" if self.kind.startswith(("list", "dict")) else "one"
            text += f" ({what} of {', '.join(map(repr, self.choices))})"
        return text + (" or None" if self.optional else "")

    def check(self, name: str, value: Any, *, cli: bool = False, base: Path | None = None) -> Any:
        """The value, normalised (tuples as lists, ints as floats where numbers are asked);
        :class:`ParameterError` when it does not fit. ``base``: the folder relative paths are
        read from (the notebooks' cwd, the repository root; default the current folder)."""
        def fail() -> ParameterError:
            return ParameterError(name, value, self.expected(), self.example, cli=cli)

        if value is None:
            if self.optional:
                return None
            raise fail()
        k = self.kind
        if k in ("str", "dir", "writable_dir"):
            if not isinstance(value, str) or not value:
                raise fail()
            if self.choices and value not in self.choices:
                raise fail()
            path = Path(value) if base is None else Path(base) / value
            if k == "dir" and not path.is_dir():
                raise ParameterError(name, value, "an existing folder (this one does not exist)",
                                     self.example, cli=cli)
            if k == "writable_dir":
                _check_writable(name, value, path, self.example, cli)
            return value
        if k == "bool":
            if not isinstance(value, bool):
                raise fail()
            return value
        if k == "int":
            if not _is_int(value) or (self.minimum is not None and value < self.minimum):
                raise fail()
            return value
        if k == "float":
            if not _is_number(value) or (self.minimum is not None and value < self.minimum):
                raise fail()
            return float(value)
        if k.startswith("list"):
            if not isinstance(value, (list, tuple)) or not value:
                raise fail()
            items = list(value)
            if k == "list[int]" and not all(_is_int(v) and (self.minimum is None or v >= self.minimum)
                                            for v in items):
                raise fail()
            if k in ("list[str]", "list[dir]") and not all(isinstance(v, str) and v for v in items):
                raise fail()
            missing = [v for v in items if k == "list[dir]" and not (Path(base or ".") / v).is_dir()]
            if missing:
                raise ParameterError(name, value, f"a list of existing folders ({missing[0]} does not exist)",
                                     self.example, cli=cli)
            if self.choices and any(v not in self.choices for v in items):
                raise fail()
            twice = repeated(items) if self.distinct else []
            if twice:
                shown = ", ".join(map(repr, twice))
                raise ParameterError(name, value, f"{self.expected()}, each once ({shown} repeated: each is one "
                                     "experimental unit, a repeat counts the same run again)",
                                     repr(list(dict.fromkeys(items))), cli=cli)
            return items
        if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
            raise fail()
        if self.choices and any(key not in self.choices for key in value):
            raise fail()
        if k == "dict[str, float]":
            if not all(_is_number(v) for v in value.values()):
                raise fail()
            return {key: float(v) for key, v in value.items()}
        if k == "dict[str, dict]":
            if not all(isinstance(v, Mapping) for v in value.values()):
                raise fail()
        return dict(value)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _shell(example: str) -> str:
    return example if example.replace("-", "").replace("_", "").replace(".", "").replace("/", "").isalnum() \
        else f'"{example}"'


def _check_writable(name: str, value: str, path: Path, example: str, cli: bool) -> None:
    """A folder that exists and is writable, or whose nearest existing parent is (it will be created)."""
    path = path.absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ParameterError(name, value, f"a folder path ({probe} is a file)", example, cli=cli)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ParameterError(name, value, f"a writable folder ({probe} is read-only)", example, cli=cli)


_VARIANT_NAMES = ("none", *DESCRIPTION_VARIANTS)

#: Every parameter of the book's notebooks, declared once (the same name means the same thing
#: in every chapter). ``profile`` and ``results_dir`` are in every parameters cell.
PARAMETERS: dict[str, Param] = {
    "profile": Param("str", "smoke", choices=tuple(PROFILES),
                     default="offline", help='offline | paper | smoke'),
    "results_dir": Param("writable_dir", "results",
                         default="results", help='run store (relative to the repository root)'),
    "cache_dir": Param("writable_dir", "/tmp/vld-cache", optional=True,
                       default=None, help='teacher-feature cache; None: $VLD_CACHE or the user cache dir'),
    "smoke": Param("bool", "True",
                   default=False, help='True: tiny sizes (the smoke profile) to check that everything runs'),
    "dataset": Param("str", "fashion-mnist", optional=True, choices=tuple(DATASETS),
                     default=None, help='None: the profile\'s ("fashion-mnist" offline, "official" paper); "folder": your images'),
    "dataset_root": Param("dir", "/data/CaltechBirds", optional=True,
                          default=None, help='data folder; required for "official" (e.g. ".../CaltechBirds") and "folder"'),
    "dataset_roots": Param("list[dir]", "['/data/CaltechBirds', '/data/my_images']", optional=True,
                           default=None, help='several data folders (official or image folders): a Table 1 column each and their Average'),
    "teacher": Param("str", "conse", optional=True, choices=TEACHERS,
                     default=None, help='None: the profile\'s ("conse" proxy offline, "openclip" ViT-L/14 paper)'),
    "student": Param("str", "resnet18", optional=True, choices=STUDENTS,
                     default=None, help='None: the profile\'s ("small" offline, "resnet18" paper)'),
    "epochs": Param("int", "10", optional=True, minimum=1,
                    default=None, help="None: the profile's"),
    "per_class": Param("int", "300", optional=True, minimum=2,
                       default=None, help="Fashion-MNIST images per class; None: the profile's"),
    "seeds": Param("list[int]", "[0, 1, 2]", optional=True, minimum=0, distinct=True,
                   default=None, help="training seeds; None: the profile's replicates"),
    "split_seeds": Param("list[int]", "[0, 1]", optional=True, minimum=0, distinct=True,
                         default=None, help="class splits (which classes are seen); None: the profile's (official: its lists)"),
    "paper_dataset": Param("str", "Flower102", optional=True, choices=(*PAPER_DATASETS, "Average"),
                           default=None, help='the paper\'s column to show beside ours; None: matching folder or "Average"'),
    "overrides": Param("dict", "{'num_workers': 2}",
                       default={}, help='any other TrainConfig fields, e.g. {"teacher_options": {"pretrained": "/path/ckpt.pt"}, "num_workers": 0}'),
    "methods": Param("list[str]", "['cls', 'cls+imcst']", optional=True, choices=tuple(TABLE1_METHODS),
                     default=None, help='Table 1 rows to run (keys of vldlib.study.reference.TABLE1_METHODS); None: all'),
    "extra_methods": Param("dict[str, dict]", "{'mine': {'cls': 1.0, 'vlprox': 1.0}}",
                           default={}, help='more rows: {"label": {"cls": 1.0, "vlprox": 1.0}} (loss weights by name)'),
    "analysis": Param("bool", "False",
                      default=True, help='compute the feature analyses too (shares the runs with feature_errors)'),
    "mse_epochs": Param("list[int]", "[20, 40]", optional=True, minimum=1, distinct=True,
                        default=None, help="L_mse alone also trained this many epochs; None: 2x and 4x the profile's (none under paper)"),
    "ks": Param("list[int]", "[1, 10]", optional=True, minimum=1,
                default=None, help="L_vlprox k values besides the reference; None: [1, 2, 3] on Fashion-MNIST, [1, 10] (the paper's) otherwise"),
    "descriptions": Param("str", "main", optional=True, choices=(*DESCRIPTION_VARIANTS, "official"),
                          default="main", help='description set for the enriched texts; None: plain names only'),
    "weights": Param("dict[str, float]", "{'cls': 1.0, 'im_cst': 1.0}", optional=True, choices=LOSS_NAMES,
                     default=None, help='loss weights of the full method; None: L_cls + L_im-cst + L_vlprox + L_mse'),
    "variants": Param("list[str]", "['none', 'main']", optional=True, choices=_VARIANT_NAMES,
                      default=None, help='description sets; None: ["none", "main", "succinct", "detailed", "distinct"]'),
    "text_mode": Param("str", "first", optional=True, choices=TEXT_MODES,
                       default=None, help='"first" (the paper: one sentence per class) | "average"; None: the profile\'s'),
    "n_test_splits": Param("int", "8", minimum=1,
                           default=24, help="how many of the test splits to list (the chapters use the first 8, Table 1's main rows 24)"),
    "enrichments": Param("list[str]", "['no_enrichment', 'aux_captions']", optional=True,
                         choices=tuple(TABLE5_ENRICHMENTS), default=None, help="Table 5 rows; None: all seven"),
    "n_ctx": Param("int", "8", minimum=1,
                   default=8, help='CoOp context vectors (the paper: 8)'),
    "losses": Param("list[str]", "['cls', 'cls+rkd']", optional=True, choices=tuple(FIELD_LOSS_METHODS),
                    default=None, help="rows; None: all eight (L_cls alone, + each of the paper's three, + each of the field's four)"),
    "vit_model": Param("str", "'vit_tiny'", optional=True, choices=tuple(s for s in STUDENTS if s.startswith("vit")), default=None,
                       help="the ViT student; None: vit_b_32 on photos (the paper's), vit_tiny on 28 px Fashion-MNIST"),
    "vit_lr": Param("float", "0.002", optional=True, minimum=0,
                    default=None, help="the ViT's peak lr; None: the paper's 2e-4 (paper profile), 2e-3 offline"),
    "vit_fewshot_lr": Param("float", "0.001", optional=True, minimum=0,
                            default=None, help="the ViT's few-shot peak lr; None: the paper's 1e-4 (paper profile), 1e-3 offline"),
    "retrieval_alpha": Param("float", "1.0", minimum=0,
                             default=1.0, help="weight of the cache (Tip-Adapter's default and the official code's)"),
    "retrieval_beta": Param("float", "5.5", minimum=0,
                            default=5.5, help='sharpness of the affinity (same)'),
    "teacher_views": Param("int", "4", minimum=1,
                           default=2, help="stored augmented views per X_train image for the own-view rows (2: sized by the teacher's cost)"),
    "executor": Param("str", "ray", choices=EXECUTORS,
                      default="local", help='where missing runs train: "local" (this machine) or "ray" (one Ray task per run)'),
    "ray_address": Param("str", "auto", optional=True,
                         default=None, help='executor "ray": None starts a local Ray; or a cluster address ("auto", "ray://head:10001")'),
}

#: The parameters that shape a chapter's grid (:func:`vldlib.study.grid.make_grid`).
GRID_NAMES: tuple[str, ...] = ("profile", "smoke", "dataset", "dataset_root", "teacher", "student",
                               "epochs", "per_class", "seeds", "split_seeds", "cache_dir",
                               "paper_dataset", "overrides")


#: The parameters of every chapter's notebook, in the order of its parameters cell (then the chapter's own).
SHARED: tuple[str, ...] = ("profile", "results_dir", "cache_dir", "executor", "ray_address", "smoke", "dataset",
                           "dataset_root", "teacher", "student", "epochs", "per_class", "seeds", "split_seeds",
                           "paper_dataset", "overrides")


def declared(*names: str) -> dict[str, Param]:
    """``{name: its Param}`` for a chapter's own parameters (a ValueError names an undeclared one)."""
    missing = [n for n in names if n not in PARAMETERS]
    if missing:
        raise ValueError(f"parameter(s) {missing} not declared in vldlib.study.parameters.PARAMETERS; declare "
                         "each there (type, default, help) before a chapter takes it")
    return {n: PARAMETERS[n] for n in names}


def parameters_cell(own: Mapping[str, Param] | tuple[str, ...] = ()) -> str:
    """The source of a chapter notebook's ``parameters`` cell: :data:`SHARED`, then ``own``, one
    ``name = default  # help`` line each (papermill needs a literal cell; a test compares each
    notebook's cell with this text)."""
    names = [*SHARED, *[n for n in own if n not in SHARED]]
    return "\n".join(f"{n} = {_literal(PARAMETERS[n].default)}  # {PARAMETERS[n].help}" for n in names)


def _literal(value: Any) -> str:
    """A default as the cell writes it (strings in double quotes)."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def check_value(name: str, value: Any, *, cli: bool = False, base: Path | None = None) -> Any:
    """``value`` checked against the declared type of parameter ``name`` (normalised);
    :class:`ParameterError` if it does not fit, ``KeyError``-free: an undeclared name is a
    ValueError listing the declared ones."""
    if name not in PARAMETERS:
        raise ValueError(f"{'-p ' if cli else 'parameter '}{name}: not a declared notebook parameter; "
                         f"declared: {', '.join(PARAMETERS)} (vldlib.study.parameters)")
    return PARAMETERS[name].check(name, value, cli=cli, base=base)


def check_parameters(values: Mapping[str, Any], names: Any = None, *, grid: bool = True,
                     cli: bool = False, base: Path | None = None) -> dict[str, Any]:
    """Check the declared parameters among ``values`` (a notebook's ``globals()`` or the
    driver's parameters; ``names``: which keys to check, default every declared one present)
    and return them normalised. With ``grid`` and a grid parameter present beyond ``profile``,
    the base config is built too (:func:`make_grid`: every config field validated, no data).
    Raises :class:`ParameterError` / ``ValueError`` (one line) on the first problem."""
    keys = [k for k in (names if names is not None else PARAMETERS) if k in values]
    out = {k: check_value(k, values[k], cli=cli, base=base) for k in keys}
    if grid and "overrides" in out:
        kw = {k: out[k] for k in GRID_NAMES if k in out}
        try:
            make_grid(**kw)
            if len(out.get("dataset_roots") or []) >= 2:
                dataset_grids(out["dataset_roots"], kw)
        except ValueError as exc:
            shown = ", ".join(f"{k}={kw[k]!r}" for k in kw if k not in ("profile",) and kw[k] not in (None, {}, False))
            hint = ("; set the dataset_root parameter (-p dataset_root FOLDER)"
                    if "needs dataset_options={'root'" in str(exc) and kw.get("dataset_root") is None else "")
            raise ValueError(f"the parameters ({shown or 'defaults'}) give no valid config: {exc}{hint}") from None
    return out
