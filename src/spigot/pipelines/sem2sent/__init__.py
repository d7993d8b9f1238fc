"""Pipeline 2: a semantic dependency parser's hard labeled graph feeds a sentiment classifier.

* :mod:`~spigot.pipelines.sem2sent.config`: the modes and the ``[data]``, ``[model]``,
  ``[train]`` tables;
* :mod:`~spigot.pipelines.sem2sent.model`: :class:`Sem2Sent`, the parser and the classifier;
* :mod:`~spigot.pipelines.sem2sent.task`: :class:`Sem2SentTask` (data, vocabularies, model;
  evaluate, predict, checkpoints) and :mod:`~spigot.pipelines.sem2sent.fit` (training);
* :mod:`~spigot.pipelines.sem2sent.data`: SST and the parser's graphs, or
  :mod:`~spigot.pipelines.sem2sent.synthetic`, the embedded synthetic task;
* :mod:`~spigot.pipelines.sem2sent.experiment`: ``spigot experiment sem2sent``.
"""

from spigot.pipelines.sem2sent.config import MODES, Sem2SentConfig

CONFIG = Sem2SentConfig
TASK = "spigot.pipelines.sem2sent.task:Sem2SentTask"
EXPERIMENT = "spigot.pipelines.sem2sent.experiment:main"

__all__ = ["CONFIG", "EXPERIMENT", "MODES", "TASK", "Sem2SentConfig"]
