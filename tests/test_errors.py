"""The project's exceptions cross process boundaries intact.

A run that fails in the local executor's worker process reaches the driver pickled. An exception
whose ``__init__`` takes other arguments than its message cannot be rebuilt there by default: the
pool then breaks ("a process in the process pool was terminated abruptly") and every run still
pending is lost with the real message. Each class below rebuilds from its own arguments."""
from __future__ import annotations

import importlib
import inspect
import multiprocessing
import pickle
import pkgutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

import vldlib
from vldlib.book.errors import NotebookFailed
from vldlib.core.checks import NonFiniteInput, check_finite
from vldlib.diskspace import DiskFullError
from vldlib.models.weights import MissingWeightsError
from vldlib.study.executors import GridRunError, RunFailure
from vldlib.study.parameters import ParameterError

SAMPLES = [
    NonFiniteInput("teacher contains NaN or inf values", "teacher"),
    GridRunError([RunFailure("cls 0 1", "abc123", "Diverged: at epoch 2")], 3),
    DiskFullError("no space left on /data: 1 MiB free, 2 MiB needed; free space", "/data"),
    MissingWeightsError("ViT-L-14", "openai", "no network", "/cache", "timm/vit"),
    ParameterError("seeds", [0, 0], "a list of distinct integers", "[0, 1]", cli=True),
    NotebookFailed("main_results", 3, "runs = ch.show_runs()", "ValueError: bad", Path("/tmp/kept.ipynb"), 4),
]


def _own_exception_classes() -> set[type]:
    found = set()
    for info in pkgutil.walk_packages(vldlib.__path__, "vldlib."):
        module = importlib.import_module(info.name)
        found |= {c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, BaseException) and c.__module__.startswith("vldlib.")}
    return found


def test_every_exception_with_its_own_arguments_has_a_sample_here():
    """A new exception class with a custom ``__init__`` must be added to SAMPLES (and rebuild)."""
    custom = {c for c in _own_exception_classes()
              if any("__init__" in k.__dict__ for k in c.__mro__ if k.__module__.startswith("vldlib."))}
    assert custom == {type(e) for e in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_exception_survives_pickling_with_its_message_and_fields(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    fields = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    assert {k: getattr(back, k) for k in fields} == fields


def test_a_worker_processes_failure_reaches_the_driver_as_itself():
    """The local executor's pool (spawned workers): the worker's NonFiniteInput arrives as itself,
    and the pool survives for the next job."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(NonFiniteInput, match="teacher contains NaN") as info:
            pool.submit(check_finite, torch.tensor([float("nan")]), "teacher").result(timeout=120)
        assert info.value.name == "teacher"
        assert pool.submit(check_finite, torch.ones(2), "teacher").result(timeout=120) is None
