"""``vldlib.losses`` is :mod:`vldlib.core.losses`: the old import path, kept for users' notebooks."""
import sys

from vldlib.core import losses as _module

sys.modules[__name__] = _module
