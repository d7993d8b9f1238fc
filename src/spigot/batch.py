"""Batching plain token-id lists for models with a latent structure over words (torch only).

:func:`collate_tokens` pads sentences of token ids behind a root token, the layout every arc
structure expects (node 0 is the root, words are ``1..lengths[b]``), and carries any labels
along. The NLP pipeline's batching (``spigot.data``) is richer; this needs nothing but torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenBatch:
    """A padded batch of sentences.

    Attributes:
        ids: ``[B, n+1]`` long: the root id at position 0, then the words, then ``pad_id``.
        lengths: ``[B]`` long: words per sentence (the root not counted), ``1..n``.
        mask: ``[B, n+1]`` bool: true on the root and the words.
        labels: ``[B]`` tensor of the labels given (any numeric type), or ``None``.
    """

    ids: Tensor
    lengths: Tensor
    mask: Tensor
    labels: Tensor | None = None

    def to(self, device: torch.device | str) -> TokenBatch:
        """The same batch on ``device``."""
        labels = None if self.labels is None else self.labels.to(device)
        return TokenBatch(
            self.ids.to(device), self.lengths.to(device), self.mask.to(device), labels
        )


def collate_tokens(
    sentences: Sequence[Sequence[int]],
    labels: Sequence[Any] | Tensor | None = None,
    *,
    root_id: int = 1,
    pad_id: int = 0,
    device: torch.device | str | None = None,
) -> TokenBatch:
    """Pad token-id lists into a :class:`TokenBatch` with a root token in front.

    Args:
        sentences: ``B`` non-empty sequences of integer token ids (without the root).
        labels: optional, one per sentence (ints, floats or a ``[B, ...]`` tensor).
        root_id, pad_id: the ids of the root token and of padding (distinct).
        device: where to put the tensors.

    Returns:
        ``TokenBatch(ids [B, n+1], lengths [B], mask [B, n+1], labels [B] or None)`` with
        ``n`` the longest sentence; ``lengths`` goes straight to a structure or
        :func:`spigot.structured_argmax`.
    """
    if root_id == pad_id:
        raise ValueError(f"`root_id` and `pad_id` must differ, both are {root_id}")
    if len(sentences) == 0:
        raise ValueError("`sentences` must hold at least one sentence")
    for i, sent in enumerate(sentences):
        if len(sent) == 0:
            raise ValueError(f"sentence {i} is empty: every sentence needs at least one word")
    B, n = len(sentences), max(len(s) for s in sentences)
    ids = torch.full((B, n + 1), pad_id, dtype=torch.long)
    ids[:, 0] = root_id
    for i, sent in enumerate(sentences):
        try:
            ids[i, 1 : len(sent) + 1] = torch.as_tensor(list(sent), dtype=torch.long)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"sentence {i} must hold integer token ids: {err}") from err
    lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
    mask = torch.arange(n + 1).view(1, -1) <= lengths.view(-1, 1)
    lab = None
    if labels is not None:
        lab = labels if isinstance(labels, Tensor) else torch.as_tensor(labels)
        if lab.shape[0] != B:
            raise ValueError(f"`labels` must have one entry per sentence ({B}), got {lab.shape[0]}")
    batch = TokenBatch(ids, lengths, mask, lab)
    return batch if device is None else batch.to(device)
