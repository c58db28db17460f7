"""``vldlib.teachers`` is :mod:`vldlib.models.teachers`: the old import path, kept for users' notebooks."""
import sys

from vldlib.models import teachers as _module

sys.modules[__name__] = _module
