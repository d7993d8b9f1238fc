"""Sentence encoders: word (+ POS) embeddings with word dropout, then a BiLSTM."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spigot.data.vocab import PAD_ID, ROOT_ID, UNK_ID

__all__ = ["BiLSTMEncoder", "word_dropout"]


def word_dropout(words: Tensor, p: float, training: bool) -> Tensor:
    """Replace each real word id by ``UNK_ID`` with probability ``p`` (training only).

    Padding and the root token are never replaced.
    """
    if not training or p <= 0:
        return words
    real = (words != PAD_ID) & (words != ROOT_ID)
    drop = (torch.rand(words.shape, device=words.device) < p) & real
    return words.masked_fill(drop, UNK_ID)


class BiLSTMEncoder(nn.Module):
    """``[word_emb; pos_emb; extra] -> BiLSTM -> [B, n+1, 2 * hidden]``.

    Position 0 of every row is the root token (see :mod:`spigot.data.batching`); it is encoded
    like a word, so arc scorers get a representation of the root too.

    Args:
        n_words, n_pos: vocabulary sizes.
        word_dim, pos_dim: embedding sizes (``pos_dim = 0``: no POS tags).
        hidden: LSTM units per direction; layers: stacked BiLSTM layers.
        extra_dim: size of an extra per-word input concatenated to the embeddings (e.g. the
            syntactic head representation of the semantic parser); 0 = none.
        dropout: dropout on the LSTM output and between its layers.
        word_dropout: probability of replacing a training word by ``<unk>``.
        pretrained: optional ``[n_words, word_dim]`` initial word embeddings (GloVe).
        freeze: keep the pre-trained embeddings fixed.
    """

    def __init__(
        self,
        n_words: int,
        n_pos: int,
        *,
        word_dim: int = 100,
        pos_dim: int = 50,
        hidden: int = 200,
        layers: int = 2,
        extra_dim: int = 0,
        dropout: float = 0.0,
        word_dropout: float = 0.25,
        pretrained: Tensor | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if pretrained is not None:
            if tuple(pretrained.shape) != (n_words, word_dim):
                raise ValueError(
                    f"pretrained embeddings have shape {tuple(pretrained.shape)}, expected "
                    f"{(n_words, word_dim)}"
                )
            # a copy: from_pretrained would make the caller's tensor the parameter itself, so
            # training would write into it (and two encoders built from one matrix would share
            # their embeddings)
            self.word_emb = nn.Embedding.from_pretrained(
                pretrained.detach().to(torch.float32, copy=True), freeze=freeze, padding_idx=PAD_ID
            )
        else:
            self.word_emb = nn.Embedding(n_words, word_dim, padding_idx=PAD_ID)
            nn.init.normal_(self.word_emb.weight, std=0.1)
            with torch.no_grad():
                self.word_emb.weight[PAD_ID].zero_()
        self.pos_emb = nn.Embedding(n_pos, pos_dim, padding_idx=PAD_ID) if pos_dim > 0 else None
        self.extra_dim = extra_dim
        self.word_dropout = word_dropout
        self.lstm = nn.LSTM(
            word_dim + pos_dim + extra_dim,
            hidden,
            num_layers=layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * hidden

    def forward(
        self, words: Tensor, pos: Tensor, lengths: Tensor, extra: Tensor | None = None
    ) -> Tensor:
        """Encode ``words``/``pos`` ``[B, n+1]`` (root at 0) of ``lengths`` ``[B]`` words.

        Returns:
            ``[B, n+1, 2 * hidden]``; padding positions are zero.
        """
        w = word_dropout(words, self.word_dropout, self.training)
        parts = [self.word_emb(w)]
        if self.pos_emb is not None:
            parts.append(self.pos_emb(pos))
        if self.extra_dim:
            if extra is None:
                raise ValueError("this encoder expects an `extra` input")
            parts.append(extra)
        x = torch.cat(parts, dim=-1)
        total = x.shape[1]
        packed = pack_padded_sequence(
            x, (lengths + 1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        return self.dropout(out)
