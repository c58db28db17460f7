"""vldlib: the library behind vldbook, a study book of Li et al. (ICCV 2023),
"Distilling Large Vision-Language Model with Out-of-Distribution Generalizability".

Modules: losses, metrics (pure tensor functions); teachers, students, data (models and
data); features (teacher-feature cache); descriptions (LLM class descriptions);
train (the distillation trainer); runs (run store); book (notebook execution and book build).
"""

__version__ = "0.1.0"
