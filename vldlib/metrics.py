"""``vldlib.metrics`` is :mod:`vldlib.core.metrics`: the old import path, kept for users' notebooks."""
import sys

from vldlib.core import metrics as _module

sys.modules[__name__] = _module
