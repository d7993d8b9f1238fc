"""Neural models of spigot's NLP pipelines (imported on demand: ``import spigot`` does not).

* :mod:`spigot.models.encoder`: embeddings with word dropout and a BiLSTM;
* :mod:`spigot.models.parsers`: MLP / biaffine arc scorers, a graph-based syntactic tree
  parser (structured hinge or tree CRF loss) and an arc-factored semantic graph parser;
* :mod:`spigot.models.syn2sem`: pipeline 1, syntactic-then-semantic parsing coupled through
  a hard tree (:class:`Syn2Sem`) and its task wrapper (:class:`Syn2SemTask`).
"""

from spigot.models.encoder import BiLSTMEncoder, word_dropout
from spigot.models.parsers import (
    BiaffineArcScorer,
    MLPArcScorer,
    SemanticParser,
    SyntacticParser,
    make_scorer,
    tree_arcs,
)
from spigot.models.syn2sem import Syn2Sem, Syn2SemTask

__all__ = [
    "BiLSTMEncoder",
    "BiaffineArcScorer",
    "MLPArcScorer",
    "SemanticParser",
    "Syn2Sem",
    "Syn2SemTask",
    "SyntacticParser",
    "make_scorer",
    "tree_arcs",
    "word_dropout",
]
