"""The neural building blocks that spigot's pipelines share (imported on demand: ``import
spigot`` does not). The pipelines themselves are in :mod:`spigot.pipelines`.

* :mod:`spigot.models.encoder`: embeddings with word dropout and a BiLSTM;
* :mod:`spigot.models.parsers`: MLP / biaffine arc scorers, a graph-based syntactic tree
  parser (structured hinge or tree CRF loss) and an arc-factored semantic graph parser;
* :mod:`spigot.models.coupling`: the head features ``sum_j z[j, i] W x_j`` through which a
  structure feeds the next layer, and the straight-through gradient scale;
* :mod:`spigot.models.diagnostics`: gradient norms per loss (the STE diagnosis).
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

__all__ = [
    "BiLSTMEncoder",
    "BiaffineArcScorer",
    "MLPArcScorer",
    "SemanticParser",
    "SyntacticParser",
    "make_scorer",
    "tree_arcs",
    "word_dropout",
]
