"""Diagnostics of pipeline-1 training: where the gradient on the syntactic arc scores comes
from (``train.log_grad_norms``), and how the syntactic stage ended (:func:`syntax_summary`).

In joint training the syntactic arc scores ``s [B, n+1, n+1]`` receive two gradients: the
semantic loss's, through the tree ``z`` and the estimator (straight-through, SPIGOT,
marginals), and the syntactic loss's (structured hinge or CRF). :class:`GradNormMonitor`
measures both per sentence with tensor hooks on two identity views of ``s``, one per path, so
the backward pass is not repeated: a few element-wise operations on ``[B, n+1, n+1]`` per
batch. It answers how the semantic gradient compares with the syntactic one, e.g. why
straight-through destroys the parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from spigot.training.state import stage_summary

__all__ = ["PATHS", "GradNormMonitor", "syntax_summary"]

PATHS = ("semantic", "syntactic")
"""The two paths into the syntactic arc scores."""


class GradNormMonitor:
    """Accumulates, per training sentence, ``||dL/ds_b||_2`` of each path and their cosine.

    ``L`` is the training loss as the trainer back-propagates it (a mean over the batch's
    words, the syntactic part times ``train.syntactic_weight``), so both norms have the same
    scale; the norms are taken over the arcs a sentence's tree may contain, before gradient
    clipping (which acts on the parameters' gradient).

    Use: :meth:`new_batch` at every training forward pass, :meth:`watch` on ``s`` before each
    path reads it, :meth:`summary` once per epoch (it also resets the sums).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.sums = dict.fromkeys(PATHS, 0.0)
        self.n_sentences = 0
        self.cos_sum = 0.0
        self.n_cos = 0
        self._pending: dict[str, Tensor] = {}

    def new_batch(self, n_sentences: int) -> None:
        """A training batch of ``n_sentences`` starts (sentences with no gradient on a path
        count as 0 for that path)."""
        self._pending = {}
        self.n_sentences += n_sentences

    def watch(self, s: Tensor, path: str, mask: Tensor) -> Tensor:
        """An identity view of ``s`` whose gradient is recorded under ``path``.

        Args:
            s: arc scores ``[B, n+1, n+1]``; returned as is if it needs no gradient.
            path: one of :data:`PATHS`.
            mask: ``[B, n+1, n+1]`` boolean, the arcs that count.
        """
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; use one of {PATHS}")
        if not s.requires_grad:
            return s
        view = s.view_as(s)

        def hook(grad: Tensor | None) -> None:
            if grad is None:  # e.g. the pipeline estimator sends no gradient
                return
            g = torch.where(mask, grad.detach(), 0)
            self.sums[path] += float(g.pow(2).sum(dim=(1, 2)).sqrt().sum())
            other = self._pending.pop(PATHS[1 - PATHS.index(path)], None)
            if other is None:
                self._pending[path] = g
                return
            norms = g.pow(2).sum(dim=(1, 2)).sqrt() * other.pow(2).sum(dim=(1, 2)).sqrt()
            both = norms > 0
            cos = (g * other).sum(dim=(1, 2))[both] / norms[both]
            self.cos_sum += float(cos.sum())
            self.n_cos += int(both.sum())

        view.register_hook(hook)
        return view

    def summary(self) -> dict[str, Any]:
        """The means since the last summary, then reset:

        * ``grad_semantic``, ``grad_syntactic``: mean per-sentence norm of each path's
          gradient on ``s``;
        * ``grad_ratio``: ``grad_semantic / grad_syntactic`` (None if the latter is 0);
        * ``grad_cosine``: mean cosine between the two, over the sentences where both are
          nonzero (None if there are none): negative means the semantic loss pushes the
          scores against the syntactic loss;
        * ``grad_sentences``: training sentences counted.
        """
        n = max(self.n_sentences, 1)
        sem, syn = self.sums["semantic"] / n, self.sums["syntactic"] / n
        out = {
            "grad_semantic": sem,
            "grad_syntactic": syn,
            "grad_ratio": sem / syn if syn > 0 else None,
            "grad_cosine": self.cos_sum / self.n_cos if self.n_cos else None,
            "grad_sentences": self.n_sentences,
        }
        self.reset()
        return out


def syntax_summary(history: Sequence[Any], max_epochs: int) -> dict[str, Any]:
    """The syntactic stage of ``history``: epochs run (of ``max_epochs``), whether it stopped
    early, and the epoch (the first of the best) whose weights it kept, with its ``dev_uas``
    (:func:`spigot.training.stage_summary`)."""
    return stage_summary(history, "syntax", "uas", max_epochs)
