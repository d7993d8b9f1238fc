"""Vocabularies: token vocabularies (PAD=0, UNK=1, ROOT=2) and label vocabularies.

* :class:`Vocab` maps tokens (words, POS tags) to ids.  Id 0 is padding, 1 the
  unknown token, 2 the artificial ``<root>`` token placed at position 0 of
  every batch row.  Unknown tokens map to ``UNK_ID``.
* :class:`LabelVocab` maps labels (dependency relations, semantic labels) to
  ids.  Id 0 is reserved for "no arc / padding" (ignored in losses); real
  labels start at 1.  An unknown label raises :class:`UnknownLabelError`
  unless the vocabulary was built with ``unk_label=...``, in which case the
  unknown label maps to that label's id (documented mapping, e.g. ``"dep"``
  for UD or ``"_UNK_"``).

Both save to and load from JSON.  This module does not import torch.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .conllu import Sentence

__all__ = [
    "PAD",
    "PAD_ID",
    "ROOT",
    "ROOT_ID",
    "UNK",
    "UNK_ID",
    "NO_LABEL",
    "LabelVocab",
    "UnknownLabelError",
    "Vocab",
    "build_vocabs",
]

PAD, UNK, ROOT = "<pad>", "<unk>", "<root>"
PAD_ID, UNK_ID, ROOT_ID = 0, 1, 2
NO_LABEL = "<none>"
"""Label at id 0 of every :class:`LabelVocab`: no arc / padding."""

PathLike = str | os.PathLike


class UnknownLabelError(KeyError):
    """A label is not in a :class:`LabelVocab` (and no ``unk_label`` is set)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class Vocab:
    """Token vocabulary with ``<pad>`` = 0, ``<unk>`` = 1, ``<root>`` = 2.

    Args:
        tokens: the non-special tokens in id order (ids start at 3).
        lower: lowercase tokens before lookup (and when building).
        counts: optional training counts per token (used for coverage stats).
    """

    specials = (PAD, UNK, ROOT)

    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        lower: bool = False,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.lower = lower
        self.itos: list[str] = list(self.specials)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        for t in tokens:
            t = self.normalize(t)
            if t not in self.stoi:
                self.stoi[t] = len(self.itos)
                self.itos.append(t)
        self.counts: dict[str, int] = dict(counts or {})

    def normalize(self, token: str) -> str:
        return token.lower() if self.lower else token

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        lower: bool = False,
    ) -> Vocab:
        """Build from a token stream, keeping tokens seen at least ``min_freq`` times.

        Tokens are ordered by decreasing frequency, ties alphabetically (so the
        result does not depend on input order); ``max_size`` caps the number of
        non-special tokens.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counter = Counter(t.lower() if lower else t for t in tokens)
        items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [t for t, c in items if c >= min_freq and t not in cls.specials]
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept, lower=lower, counts=dict(counter))

    @classmethod
    def from_sentences(
        cls,
        sentences: Iterable[Sentence],
        field: str = "words",
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        lower: bool = False,
    ) -> Vocab:
        """Build from a per-word field of sentences (``"words"``, ``"lemmas"``, ``"pos"``)."""
        return cls.build(
            (t for s in sentences for t in (getattr(s, field) or ())),
            min_freq=min_freq,
            max_size=max_size,
            lower=lower,
        )

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self.normalize(token) in self.stoi

    def __getitem__(self, token: str) -> int:
        """Id of ``token``, ``UNK_ID`` if unknown."""
        return self.stoi.get(self.normalize(token), UNK_ID)

    def index(self, token: str) -> int:
        """Same as ``vocab[token]``."""
        return self[token]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens`` (unknown -> ``UNK_ID``), length ``len(tokens)``."""
        get, norm = self.stoi.get, self.normalize
        return [get(norm(t), UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``."""
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "Vocab",
            "lower": self.lower,
            "tokens": self.itos[len(self.specials) :],
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        if data.get("type") != "Vocab":
            raise ValueError(f"not a Vocab JSON object (type={data.get('type')!r})")
        return cls(data["tokens"], lower=data.get("lower", False), counts=data.get("counts"))

    def save(self, path: PathLike) -> None:
        """Write the vocabulary as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.itos, self.lower) == (other.itos, other.lower)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, lower={self.lower})"


class LabelVocab:
    """Label vocabulary: id 0 = ``<none>`` (no arc / padding), labels from 1.

    Args:
        labels: labels in id order.
        unk_label: if given (and it must be one of ``labels``), unknown labels
            map to its id; otherwise looking up an unknown label raises
            :class:`UnknownLabelError`.
    """

    def __init__(self, labels: Iterable[str] = (), *, unk_label: str | None = None) -> None:
        self.itos: list[str] = [NO_LABEL]
        self.stoi: dict[str, int] = {NO_LABEL: 0}
        for lab in labels:
            if lab not in self.stoi:
                self.stoi[lab] = len(self.itos)
                self.itos.append(lab)
        if unk_label is not None and unk_label not in self.stoi:
            self.stoi[unk_label] = len(self.itos)
            self.itos.append(unk_label)
        self.unk_label = unk_label

    @classmethod
    def build(cls, labels: Iterable[str], *, unk_label: str | None = None) -> LabelVocab:
        """Build from a label stream; labels sorted by decreasing frequency, then name."""
        counter = Counter(labels)
        return cls(
            sorted(counter, key=lambda lab: (-counter[lab], lab)),
            unk_label=unk_label,
        )

    @classmethod
    def from_deprels(
        cls, sentences: Iterable[Sentence], *, unk_label: str | None = None
    ) -> LabelVocab:
        """Syntactic relation labels (``Sentence.deprels``)."""
        return cls.build((r for s in sentences for r in (s.deprels or ())), unk_label=unk_label)

    @classmethod
    def from_arcs(
        cls, sentences: Iterable[Sentence], *, unk_label: str | None = None
    ) -> LabelVocab:
        """Semantic arc labels (``Sentence.arcs``, including top-arc labels)."""
        return cls.build(
            (lab for s in sentences for _, _, lab in (s.arcs or ())), unk_label=unk_label
        )

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, label: object) -> bool:
        return label in self.stoi

    def __getitem__(self, label: str) -> int:
        """Id of ``label``.

        Raises:
            UnknownLabelError: unknown label and no ``unk_label`` configured.
        """
        i = self.stoi.get(label)
        if i is not None:
            return i
        if self.unk_label is not None:
            return self.stoi[self.unk_label]
        raise UnknownLabelError(
            f"unknown label {label!r} (vocabulary has {len(self) - 1} labels; "
            f"build the LabelVocab with unk_label=... to map unseen labels)"
        )

    def encode(self, labels: Sequence[str]) -> list[int]:
        return [self[lab] for lab in labels]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "LabelVocab", "labels": self.itos[1:], "unk_label": self.unk_label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelVocab:
        if data.get("type") != "LabelVocab":
            raise ValueError(f"not a LabelVocab JSON object (type={data.get('type')!r})")
        return cls(data["labels"], unk_label=data.get("unk_label"))

    def save(self, path: PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike) -> LabelVocab:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and (self.itos, self.unk_label) == (
            other.itos,
            other.unk_label,
        )

    def __repr__(self) -> str:
        return f"LabelVocab(size={len(self)}, unk_label={self.unk_label!r})"


def build_vocabs(
    sentences: Sequence[Sentence],
    *,
    min_freq: int = 2,
    lower: bool = True,
) -> dict[str, Vocab | LabelVocab]:
    """Convenience: all vocabularies of a training set.

    Returns:
        ``{"words": Vocab (min_freq, lower), "pos": Vocab, "deprels": LabelVocab,
        "labels": LabelVocab}`` (semantic labels).
    """
    return {
        "words": Vocab.from_sentences(sentences, "words", min_freq=min_freq, lower=lower),
        "pos": Vocab.from_sentences(sentences, "pos"),
        "deprels": LabelVocab.from_deprels(sentences),
        "labels": LabelVocab.from_arcs(sentences),
    }
