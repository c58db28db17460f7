"""Training one run: its config and hash (:mod:`.config`; the hashing rule :mod:`.schema`, typed
sub-configs :mod:`.options`), named profiles (:mod:`.profiles`), the stage loop shared by the main
and 5-shot stages (:mod:`.loop`), the 5-shot protocol (:mod:`.fewshot`), random state and
provenance (:mod:`.state`) and the trainer (:mod:`.trainer`, with its parts :mod:`.texts`,
:mod:`.stages`, :mod:`.fewshot_stage`, :mod:`.checkpoints`, :mod:`.record`).
The command line is :mod:`vldlib.cli.train`."""
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.trainer import Interrupted, retrieval_accuracy, train, train_validated

__all__ = ["TrainConfig", "config_hash", "train", "train_validated", "Interrupted", "retrieval_accuracy"]
