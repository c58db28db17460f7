"""vldlib: the library behind vldbook, a study book of Li et al. (ICCV 2023),
"Distilling Large Vision-Language Model with Out-of-Distribution Generalizability".

Data flows one way (CONTRIBUTING.md has the map):
images (:mod:`vldlib.data`) -> teacher (:mod:`vldlib.models`, cached by :mod:`vldlib.features`)
-> trainer (:mod:`vldlib.train`, losses and metrics from :mod:`vldlib.core`, class texts from
:mod:`vldlib.text`) -> run store (:mod:`vldlib.runs`) -> chapters (:mod:`vldlib.study`) -> book
(:mod:`vldlib.book`). Shared helpers: :mod:`vldlib.io` (atomic writes), :mod:`vldlib.paths`,
:mod:`vldlib.device`. Old paths ``vldlib.losses``, ``vldlib.metrics``, ``vldlib.teachers`` and
``vldlib.students`` still import.
"""

__version__ = "0.1.0"
