"""Pipeline 1's model: syntactic-then-semantic dependency parsing through a hard tree.

A syntactic parser scores arcs ``s`` and decides a tree ``z`` in the middle of the network;
each word ``i`` of the semantic parser then receives the representation of its syntactic head,
``sum_j z[j, i] * W h_j``. By default (``model.coupling = "semantic"``, as the original code)
``h`` is the semantic parser's own encoder states and the result joins ``h_i`` at the input of
its scorers, so the semantic loss reaches the syntactic parser only through ``z``
(:mod:`spigot.models.coupling`). How it passes through ``z`` is the ``mode``:

===========  ============================================  ================================
mode         z (training / test)                            gradient to the syntactic scores
===========  ============================================  ================================
pipeline     argmax of a syntactic parser trained first     none (the parser is frozen)
             and then frozen
joint        argmax / argmax                                none (the parser trains on its
                                                            own loss only)
ste          argmax / argmax                                straight-through (times
                                                            ``train.eta`` if > 0)
spigot       argmax / argmax                                SPIGOT (projection on the trees'
                                                            relaxed polytope)
marginals    arc marginals / arc marginals                  exact (structured attention)
gold         gold tree / gold tree (an oracle)              none
none         no tree (semantic parser alone)                none
===========  ============================================  ================================

Joint modes (all but ``pipeline`` and ``none``) keep the syntactic loss on with weight
``train.syntactic_weight``; ``train.pretrain_epochs`` syntactic-only epochs may come first
(early-stopped on dev UAS with ``train.pretrain_patience``).
:class:`~spigot.pipelines.syn2sem.task.Syn2SemTask` holds the data, vocabularies and this
model and drives training, evaluation and prediction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spigot.estimators import ESTIMATORS, structured_argmax
from spigot.models.coupling import HeadFeatures, scale_gradient, with_loss_scale
from spigot.models.diagnostics import GradNormMonitor
from spigot.models.encoder import BiLSTMEncoder
from spigot.models.parsers import SemanticParser, SyntacticParser, tree_arcs
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.structures import DependencyTree
from spigot.training import DataError

__all__ = ["Syn2Sem"]


class Syn2Sem(nn.Module):
    """The coupled model: a syntactic parser, the coupling ``W`` and a semantic parser.

    Args:
        config: the run configuration (``mode``, ``model`` sizes and coupling, ``train.eta``,
            ``train.eta_scale``, ``train.log_grad_norms``).
        n_words, n_pos: token vocabulary sizes (shared by both encoders' lookups).
        n_labels: semantic label vocabulary size (with ``<none>``).
        n_deprels: syntactic relation vocabulary size (with ``<none>``), used when
            ``model.syntactic_labels``.
        pretrained: optional GloVe matrix ``[n_words, dim]`` for both encoders.
    """

    def __init__(
        self,
        config: Syn2SemConfig,
        n_words: int,
        n_pos: int,
        n_labels: int,
        n_deprels: int = 0,
        pretrained: Tensor | None = None,
    ) -> None:
        super().__init__()
        m = config.model
        self.mode = config.mode
        self.eta = config.train.eta if config.train.eta > 0 else None
        self.max_step = config.train.max_step
        self.eta_scale = config.train.eta_scale
        self.estimator_options = dict(config.train.estimator_options)
        word_dim = int(pretrained.shape[1]) if pretrained is not None else m.word_dim

        def encoder(extra_dim: int) -> BiLSTMEncoder:
            return BiLSTMEncoder(
                n_words,
                n_pos,
                word_dim=word_dim,
                pos_dim=m.pos_dim,
                hidden=m.lstm_hidden,
                layers=m.lstm_layers,
                extra_dim=extra_dim,
                dropout=m.dropout,
                word_dropout=m.word_dropout,
                pretrained=pretrained,
                freeze=m.freeze_embeddings,
            )

        self.tree = DependencyTree(projective=m.projective, single_root=m.single_root)
        self.syntax = SyntacticParser(
            encoder(0),
            scorer=m.syn_scorer,
            mlp_dim=m.mlp_dim,
            tree=self.tree,
            n_labels=n_deprels if m.syntactic_labels else 0,
            label_mlp_dim=m.label_mlp_dim,
        )
        self.coupled = self.mode != "none"
        self.coupling_source = m.coupling
        through_syntax = self.coupled and m.coupling == "syntactic"
        through_semantics = self.coupled and m.coupling == "semantic"
        self.semantics = SemanticParser(
            encoder(m.coupling_dim if through_syntax else 0),
            n_labels,
            scorer=m.sem_scorer,
            mlp_dim=m.mlp_dim,
            label_mlp_dim=m.label_mlp_dim,
            feature_dim=m.coupling_dim if through_semantics else 0,
        )
        source = self.syntax if through_syntax else self.semantics
        self.coupling = (
            HeadFeatures(source.encoder.output_dim, m.coupling_dim) if self.coupled else None
        )
        self.syntax_frozen = False
        self.grad_monitor = GradNormMonitor() if config.train.log_grad_norms else None

    # -- pieces ----------------------------------------------------------------------------
    def freeze_syntax(self) -> None:
        """Fix the syntactic parser (pipeline stage 2): no gradient, always in eval mode."""
        self.syntax_frozen = True
        for p in self.syntax.parameters():
            p.requires_grad_(False)
        self.syntax.eval()

    def train(self, mode: bool = True) -> Syn2Sem:
        super().train(mode)
        if self.syntax_frozen:
            self.syntax.eval()
        return self

    def syntactic(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(h, s)``: syntactic BiLSTM states and arc scores."""
        if self.syntax_frozen:
            with torch.no_grad():
                return self.syntax(batch.words, batch.pos, batch.lengths)
        return self.syntax(batch.words, batch.pos, batch.lengths)

    def decide_tree(self, s: Tensor, batch: Any) -> Tensor:
        """The tree ``z`` the semantic parser reads (hard or marginals, see the module table)."""
        lengths = batch.lengths
        if self.mode == "gold":
            if batch.heads is None:
                raise DataError("mode 'gold' needs gold syntactic trees in the data")
            return tree_arcs(batch.heads, lengths, s)
        if self.mode == "marginals":
            return structured_argmax(s, self.tree, estimator="marginals", lengths=lengths)
        if self.mode == "ste" and self.training and torch.is_grad_enabled():
            gamma = 1.0 if self.eta is None else self.eta  # train.eta scales the gradient
            s = scale_gradient(s, gamma)
            return structured_argmax(s, self.tree, estimator="ste", lengths=lengths)
        if self.mode == "spigot" and self.training and torch.is_grad_enabled():
            # the losses are means over the batch's words: "sentence" gives SPIGOT the
            # gradient of each sentence's summed loss, as in the original code
            scale = float(lengths.sum()) if self.eta_scale == "sentence" else 1.0
            return structured_argmax(
                s,
                self.tree,
                estimator="spigot",
                lengths=lengths,
                eta=self.eta,
                loss_scale=scale,
                max_step=self.max_step,
                **self.estimator_options,
            )
        generic = self.mode in ESTIMATORS and self.mode != "pipeline"
        if generic and self.training and torch.is_grad_enabled():
            # any other registered estimator (ste-marginals, perturbed, imle, blackbox, ...)
            # with train.estimator_options; like SPIGOT's, its step sees each sentence's
            # summed loss with eta_scale = "sentence"
            scale = float(lengths.sum()) if self.eta_scale == "sentence" else 1.0
            return with_loss_scale(
                lambda x: structured_argmax(
                    x, self.tree, estimator=self.mode, lengths=lengths, **self.estimator_options
                ),
                s,
                scale,
            )
        # pipeline and joint (no gradient through z), and the hard modes at test time
        return structured_argmax(s, self.tree, estimator="pipeline", lengths=lengths)

    def head_features(self, h: Tensor, z: Tensor) -> Tensor:
        """``[B, n+1, coupling_dim]``: ``sum_j z[j, i] * W h_j`` for every word ``i``."""
        assert self.coupling is not None
        return self.coupling(h, z)

    def semantic(
        self, batch: Any, z: Tensor | None, h: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(r, sem)``: the semantic scorers' input ``[B, n+1, D']`` and arc scores
        ``[B, n+1, n+1]``, reading the tree ``z [B, n+1, n+1]`` (``None`` in mode ``none``)
        and, with ``model.coupling = "syntactic"``, the syntactic states ``h [B, n+1, D]``."""
        words, pos, lengths = batch.words, batch.pos, batch.lengths
        if z is None:
            return self.semantics(words, pos, lengths)
        if self.coupling_source == "syntactic":
            assert h is not None
            return self.semantics(words, pos, lengths, extra=self.head_features(h, z))
        r = self.semantics.encode(words, pos, lengths)
        return self.semantics.score(r, self.head_features(r, z))

    def _watch(self, s: Tensor, path: str, batch: Any) -> Tensor:
        """``s`` itself, or a view of it whose gradient the grad-norm monitor records."""
        if self.grad_monitor is None or not (self.training and torch.is_grad_enabled()):
            return s
        return self.grad_monitor.watch(s, path, self.tree.mask(s, batch.lengths))

    def _new_batch(self, batch: Any) -> None:
        if self.grad_monitor is not None and self.training and torch.is_grad_enabled():
            self.grad_monitor.new_batch(len(batch.lengths))

    def forward(self, batch: Any) -> dict[str, Tensor | None]:
        """All scores of a batch: ``h, s`` (syntax), ``z``, ``r, sem`` (semantics)."""
        h = s = z = None
        self._new_batch(batch)
        if self.coupled:
            h, s = self.syntactic(batch)
            z = self.decide_tree(self._watch(s, "semantic", batch), batch)
        r, sem = self.semantic(batch, z, h)
        return {"h": h, "s": s, "z": z, "r": r, "sem": sem}

    # -- losses ----------------------------------------------------------------------------
    def _syntactic_loss(self, h: Tensor, s: Tensor, batch: Any, kind: str) -> Tensor:
        if batch.heads is None:
            raise DataError("training the syntactic parser needs gold trees in the data")
        gold = tree_arcs(batch.heads, batch.lengths, s)
        loss = self.syntax.loss(s, gold, batch.lengths, kind).sum()
        if self.syntax.label_scorer is not None:
            if batch.deprels is None:
                raise DataError("model.syntactic_labels needs relation labels in the data")
            loss = loss + self.syntax.label_loss(h, batch.heads, batch.deprels, batch.mask)
        return loss

    def syntactic_loss(self, batch: Any, kind: str = "hinge") -> tuple[Tensor, dict[str, float]]:
        """Syntax-only training loss, per word of the batch."""
        self._new_batch(batch)
        h, s = self.syntax(batch.words, batch.pos, batch.lengths)
        s = self._watch(s, "syntactic", batch)
        loss = self._syntactic_loss(h, s, batch, kind) / batch.lengths.sum()
        return loss, {"syntax": float(loss.detach())}

    def loss(
        self, batch: Any, kind: str = "hinge", syntactic_weight: float = 1.0
    ) -> tuple[Tensor, dict[str, float]]:
        """Semantic loss (+ weighted syntactic loss in joint modes), per word of the batch."""
        if batch.arcs is None or batch.arc_labels is None:
            raise DataError("training the semantic parser needs semantic graphs in the data")
        out = self.forward(batch)
        n_words = batch.lengths.sum()
        arc_loss, label_loss = self.semantics.loss(
            out["r"], out["sem"], batch.arcs, batch.arc_labels, batch.lengths
        )
        loss = (arc_loss + label_loss) / n_words
        stats = {"semantics": float(loss.detach())}
        joint = self.coupled and not self.syntax_frozen and syntactic_weight > 0
        if joint:
            s = self._watch(out["s"], "syntactic", batch)
            syn = self._syntactic_loss(out["h"], s, batch, kind) / n_words
            loss = loss + syntactic_weight * syn
            stats["syntax"] = float(syn.detach())
        return loss, stats

    # -- prediction ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, Tensor | None]:
        """Predicted ``heads [B, n+1]`` (None in mode ``none``), ``deprels`` (ids or None),
        semantic ``arcs`` (0/1) and ``labels`` (ids) ``[B, n+1, n+1]``."""
        out = self.forward(batch)
        heads = deprels = None
        if out["s"] is not None:
            z = out["z"]
            if self.mode in ("marginals", "gold"):
                z = self.tree.argmax(out["s"], batch.lengths)
            heads = z.argmax(dim=1)
            deprels = self.syntax.predict_labels(out["h"], heads, batch.mask)
        arcs, labels = self.semantics.decode(out["r"], out["sem"], batch.lengths)
        return {"heads": heads, "deprels": deprels, "arcs": arcs, "labels": labels}
