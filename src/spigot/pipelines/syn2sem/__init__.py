"""Pipeline 1: syntactic-then-semantic dependency parsing through a hard tree.

* :mod:`~spigot.pipelines.syn2sem.config`: the modes and the ``[data]``, ``[model]``,
  ``[train]`` tables;
* :mod:`~spigot.pipelines.syn2sem.model`: :class:`Syn2Sem`, the coupled parsers;
* :mod:`~spigot.pipelines.syn2sem.task`: :class:`Syn2SemTask` (data, vocabularies, model;
  evaluate, predict, checkpoints) and :mod:`~spigot.pipelines.syn2sem.fit` (training);
* :mod:`~spigot.pipelines.syn2sem.data`: the corpora (CoNLL-U, SDP, PropBank, synthetic) and
  :mod:`~spigot.pipelines.syn2sem.outputs`: per-sentence scores;
* :mod:`~spigot.pipelines.syn2sem.experiment`: ``spigot experiment syn2sem``.
"""

from spigot.pipelines.syn2sem.config import MODES, Syn2SemConfig

CONFIG = Syn2SemConfig
TASK = "spigot.pipelines.syn2sem.task:Syn2SemTask"
EXPERIMENT = "spigot.pipelines.syn2sem.experiment:main"

__all__ = ["CONFIG", "EXPERIMENT", "MODES", "TASK", "Syn2SemConfig"]
