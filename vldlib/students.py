"""``vldlib.students`` is :mod:`vldlib.models.students`: the old import path, kept for users' notebooks."""
import sys

from vldlib.models import students as _module

sys.modules[__name__] = _module
