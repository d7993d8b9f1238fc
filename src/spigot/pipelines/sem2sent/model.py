"""Pipeline 2's model: a semantic parser's labeled graph feeds a sentiment classifier.

The parser (:class:`~spigot.models.parsers.SemanticParser` over words alone) scores every
labeled arc ``p -> i`` as ``S[p, i, l] = s[p, i] + t[p, i, l] - max_k t[p, i, k]`` (arc score
``s`` plus the label score ``t`` centred on its best label; the centring is a constant, so no
gradient flows through the max). Its argmax over :class:`~spigot.LabeledDependencyGraph` is
exactly the parser's own decoding: the arc is on iff ``s[p, i] > 0``, with the best label.
The classifier (after the original SPIGOT code) is a 1-layer BiLSTM ``h`` over the words and,
for each word ``i``,

    f_i = ReLU(b + W_self h_i + (sum_p a[p, i] W_head h_p + sum_{p,l} z[p, i, l] W_role e_l)
                                / max(1, sum_p a[p, i])),          a[p, i] = sum_l z[p, i, l]

(the heads ``p`` of ``i`` in the graph ``z [B, n+1, n+1, L]``, root included, and the roles
``l`` that ``i`` fills), then ``v = sum_i f_i``, an MLP and a softmax over the two classes.
How the graph is decided and what gradient passes through it is the ``mode``:

===========  =========================================  ==================================
mode         z (training / test)                        gradient to the parser's scores
===========  =========================================  ==================================
bilstm       none (``f_i = ReLU(b + W_self h_i)``)      no parser
gold         the gold graph (synthetic data only)       no parser
pipeline     argmax of the pre-trained, frozen parser   none
joint        argmax / argmax                            none (the parser trains on its own
                                                        loss, interleaved)
ste          argmax / argmax                            straight-through (times
                                                        ``train.eta`` if > 0)
spigot       argmax / argmax                            SPIGOT (projection per arc onto
                                                        ``{y >= 0, sum_l y_l <= 1}``)
marginals    arc-label marginals / marginals            exact (structured attention)
===========  =========================================  ==================================

Every other registered estimator is a joint mode too, with its default options.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spigot.estimators import ESTIMATORS, structured_argmax
from spigot.models.coupling import scale_gradient, with_loss_scale
from spigot.models.encoder import BiLSTMEncoder
from spigot.models.parsers import SemanticParser
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.structures import LabeledDependencyGraph
from spigot.training import DataError

__all__ = ["Sem2Sent", "labeled_scores"]

N_CLASSES = 2


def labeled_scores(arc: Tensor, label: Tensor) -> Tensor:
    """``S[b, p, i, l] = arc[b, p, i] + label[b, p, i, l] - max_k label[b, p, i, k]``.

    Args:
        arc: ``[B, n+1, n+1]`` arc scores; label: ``[B, n+1, n+1, L]`` label scores.

    Returns:
        ``[B, n+1, n+1, L]``, whose argmax graph has the arcs with ``arc > 0``, each with its
        best label (the max is treated as a constant: no gradient flows through it).
    """
    return arc.unsqueeze(-1) + label - label.detach().amax(dim=-1, keepdim=True)


class Sem2Sent(nn.Module):
    """The semantic parser (absent in modes ``bilstm`` and ``gold``) and the classifier.

    Args:
        config: the run configuration (``mode``, ``model`` sizes, ``train.eta``).
        n_words: word vocabulary size (shared by both encoders' lookups).
        n_labels: semantic label vocabulary size (with ``<none>``, id 0).
        pretrained: optional GloVe matrix ``[n_words, dim]`` for both encoders.
    """

    def __init__(
        self,
        config: Sem2SentConfig,
        n_words: int,
        n_labels: int,
        pretrained: Tensor | None = None,
    ) -> None:
        super().__init__()
        m, t = config.model, config.train
        self.mode = config.mode
        self.eta = t.eta if t.eta > 0 else None
        self.max_step = t.max_step
        self.estimator_options = dict(t.estimator_options)
        word_dim = pretrained.shape[1] if pretrained is not None else m.word_dim
        self.n_roles = n_labels - 1

        def encoder(hidden: int, layers: int, dropout: float) -> BiLSTMEncoder:
            return BiLSTMEncoder(
                n_words,
                1,
                word_dim=word_dim,
                pos_dim=0,
                hidden=hidden,
                layers=layers,
                dropout=dropout,
                word_dropout=m.word_dropout,
                pretrained=pretrained,
            )

        self.parser: SemanticParser | None = None
        if config.uses_parser():
            self.parser = SemanticParser(
                encoder(m.parser_hidden, m.parser_layers, 0.0),
                n_labels,
                mlp_dim=m.mlp_dim,
                label_mlp_dim=m.label_mlp_dim,
            )
        self.encoder = encoder(m.hidden, 1, m.dropout)
        d = self.encoder.output_dim
        self.w_self = nn.Linear(d, m.feature_dim)
        self.w_head = nn.Linear(d, m.feature_dim, bias=False)
        self.roles = nn.Embedding(self.n_roles, m.role_dim)
        self.w_role = nn.Linear(m.role_dim, m.feature_dim, bias=False)
        self.dropout = nn.Dropout(m.dropout)
        self.out = nn.Sequential(
            nn.Linear(m.feature_dim, m.classifier_mlp_dim),
            nn.ReLU(),
            nn.Dropout(m.dropout),
            nn.Linear(m.classifier_mlp_dim, N_CLASSES),
        )
        self.graph = LabeledDependencyGraph()
        self.parser_frozen = False

    # -- the parser ------------------------------------------------------------------------
    def freeze_parser(self) -> None:
        """Fix the parser's weights and keep it in eval mode (``pipeline``)."""
        assert self.parser is not None
        self.parser_frozen = True
        for p in self.parser.parameters():
            p.requires_grad_(False)
        self.parser.eval()

    def train(self, mode: bool = True) -> Sem2Sent:
        super().train(mode)
        if self.parser_frozen and self.parser is not None:
            self.parser.eval()
        return self

    def parse(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, arc scores [B, n+1, n+1], labeled scores [B, n+1, n+1, L])`` of the parser
        (``x``: its scorers' input, for :meth:`SemanticParser.loss`)."""
        assert self.parser is not None
        x, s = self.parser(batch.words, batch.pos, batch.lengths)
        return x, s, labeled_scores(s, self.parser.label_scorer(x))

    def parser_loss(self, batch: Any) -> Tensor:
        """The parser's loss on a batch of its own data, per word."""
        assert self.parser is not None
        if batch.arcs is None or batch.arc_labels is None:
            raise DataError("the parser's training batches need gold graphs with labels")
        x, s = self.parser(batch.words, batch.pos, batch.lengths)
        arc_loss, label_loss = self.parser.loss(x, s, batch.arcs, batch.arc_labels, batch.lengths)
        return (arc_loss + label_loss) / batch.lengths.sum().clamp(min=1)

    def decide_graph(self, batch: Any) -> Tensor | None:
        """The graph ``z [B, n+1, n+1, L]`` the classifier reads (see the module table)."""
        lengths = batch.lengths
        if self.mode == "bilstm":
            return None
        if self.mode == "gold":
            if batch.arcs is None or batch.arc_labels is None:
                raise DataError("mode 'gold' needs gold graphs (synthetic data only)")
            onehot = F.one_hot(batch.arc_labels, self.n_roles + 1)[..., 1:].to(batch.arcs.dtype)
            return onehot * batch.arcs.unsqueeze(-1)
        _, _, S = self.parse(batch)
        grad = self.training and torch.is_grad_enabled() and not self.parser_frozen
        if self.mode == "marginals":
            return structured_argmax(S, self.graph, estimator="marginals", lengths=lengths)
        if self.mode == "ste" and grad:
            S = scale_gradient(S, 1.0 if self.eta is None else self.eta)
            return structured_argmax(S, self.graph, estimator="ste", lengths=lengths)
        if self.mode == "spigot" and grad:
            # the loss is a mean over the batch: SPIGOT's step sees each sentence's own loss
            return structured_argmax(
                S,
                self.graph,
                estimator="spigot",
                lengths=lengths,
                eta=self.eta,
                loss_scale=float(len(lengths)),
                max_step=self.max_step,
                **self.estimator_options,
            )
        if self.mode in ESTIMATORS and self.mode not in ("pipeline", "joint") and grad:
            # any other registered estimator with train.estimator_options; its step sees each
            # sentence's own loss, as SPIGOT's does
            return with_loss_scale(
                lambda x: structured_argmax(
                    x, self.graph, estimator=self.mode, lengths=lengths, **self.estimator_options
                ),
                S,
                float(len(lengths)),
            )
        return structured_argmax(S, self.graph, estimator="pipeline", lengths=lengths)

    # -- the classifier --------------------------------------------------------------------
    def classify(self, batch: Any, z: Tensor | None) -> Tensor:
        """Class scores ``[B, 2]`` from the words and the graph ``z`` (``None``: no graph)."""
        h = self.dropout(self.encoder(batch.words, batch.pos, batch.lengths))  # [B, n+1, D]
        f = self.w_self(h)
        if z is not None:
            z = z.to(h.dtype)
            a = z.sum(-1)  # [B, n+1 (p), n+1 (i)]: the arc p -> i, whatever its label
            heads = torch.einsum("bpi,bpf->bif", a, self.w_head(h))
            roles = torch.einsum("bpil,lf->bif", z, self.w_role(self.roles.weight))
            f = f + (heads + roles) / a.sum(1).clamp(min=1).unsqueeze(-1)
        f = self.dropout(torch.relu(f)) * batch.mask.unsqueeze(-1).to(f.dtype)
        return self.out(f.sum(1))  # type: ignore[no-any-return]

    def forward(self, batch: Any) -> dict[str, Tensor | None]:
        """``{"logits": [B, 2], "z": the graph read or None}``."""
        z = self.decide_graph(batch)
        return {"logits": self.classify(batch, z), "z": z}

    def loss(self, step: Any, labels: Tensor, parser_weight: float = 1.0) -> tuple[Tensor, dict]:
        """Mean sentiment NLL of ``step.sentiment`` (+ ``parser_weight`` times the parser's
        per-word loss on ``step.parser`` in the joint modes), and the parts as floats."""
        out = self.forward(step.sentiment)
        loss = F.cross_entropy(out["logits"], labels)
        stats = {"sentiment": float(loss.detach())}
        if step.parser is not None and self.parser is not None and not self.parser_frozen:
            pl = self.parser_loss(step.parser)
            stats["parser"] = float(pl.detach())
            loss = loss + parser_weight * pl
        return loss, stats
