"""GloVe text-format embeddings aligned to a :class:`~spigot.data.vocab.Vocab`.

The file format is one word per line followed by its float components,
separated by single spaces (``.gz`` files are decompressed).  torch is only
imported inside :func:`load_glove`.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .conllu import CorpusFormatError
from .vocab import PAD_ID, Vocab

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["GloveStats", "load_glove", "read_glove"]

PathLike = str | os.PathLike


@dataclass
class GloveStats:
    """Coverage of a vocabulary by a GloVe file.

    Attributes:
        dim: vector dimension.
        n_file_words: lines (words) in the GloVe file.
        n_vocab: vocabulary size including the specials.
        n_found: non-special vocabulary entries that got a GloVe vector
            (``n_found_exact`` by exact match, the rest via lowercasing).
        type_coverage: ``n_found / (n_vocab - n_specials)``.
        token_coverage: fraction of training tokens (``Vocab.counts``) whose
            type got a vector; ``nan`` if the vocabulary has no counts.
        std: standard deviation of the matched GloVe values, used to scale
            the random vectors of unmatched entries.
    """

    dim: int
    n_file_words: int
    n_vocab: int
    n_found: int
    n_found_exact: int
    type_coverage: float
    token_coverage: float
    std: float


def _open(path: PathLike):
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8")
    return open(p, encoding="utf-8")  # noqa: SIM115


def read_glove(
    path: PathLike, words: set[str] | None = None, dim: int | None = None
) -> tuple[dict[str, np.ndarray], int, int]:
    """Read GloVe vectors, optionally only for ``words``.

    Args:
        path: GloVe text file, optionally gzipped.
        words: if given, only these words' vectors are parsed and returned.
        dim: expected dimension (default: taken from the first line).  Words
            that contain spaces (as in glove.840B) are handled when ``dim`` is
            known.

    Returns:
        ``(vectors, dim, n_lines)``: dict word -> float32 array ``[dim]``.

    Raises:
        CorpusFormatError: a line has the wrong number of values or a value is
            not a float (message names file and line); empty file.
    """
    source = str(path)
    vectors: dict[str, np.ndarray] = {}
    n_lines = 0
    with _open(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise CorpusFormatError(source, lineno, "line has no vector values")
            if len(parts) < dim + 1:
                raise CorpusFormatError(
                    source, lineno, f"expected a word and {dim} values, found {len(parts)} fields"
                )
            word = parts[0] if len(parts) == dim + 1 else " ".join(parts[:-dim])
            n_lines += 1
            if words is not None and word not in words:
                continue
            try:
                vec = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError:
                raise CorpusFormatError(
                    source, lineno, f"non-numeric vector value for word {word!r}"
                ) from None
            vectors.setdefault(word, vec)
    if n_lines == 0 or dim is None:
        raise CorpusFormatError(source, None, "file is empty (no vectors)")
    return vectors, dim, n_lines


def load_glove(
    path: PathLike,
    vocab: Vocab,
    *,
    seed: int = 0,
    dim: int | None = None,
) -> tuple[torch.Tensor, GloveStats]:
    """Embedding matrix for ``vocab`` from a GloVe file.

    Each vocabulary entry gets the vector of the same word, else of its
    lowercased form; entries without a vector (``<unk>``, ``<root>`` and
    unmatched words) get ``N(0, std^2)`` random vectors drawn with ``seed``,
    where ``std`` is the standard deviation of the matched GloVe values;
    ``<pad>`` (id 0) gets zeros.

    Args:
        path: GloVe text file (``.txt`` or ``.txt.gz``).
        vocab: the vocabulary to align to.
        seed: seed of the random vectors (numpy ``default_rng``).
        dim: expected dimension (default: from the file).

    Returns:
        ``(weights, stats)``: float32 tensor ``[len(vocab), dim]`` and
        :class:`GloveStats`.
    """
    import torch

    wanted = set(vocab.itos) | {w.lower() for w in vocab.itos}
    vectors, dim, n_lines = read_glove(path, wanted, dim)
    n_special = len(vocab.specials)
    found = np.zeros(len(vocab), dtype=bool)
    n_exact = 0
    weights = np.zeros((len(vocab), dim), dtype=np.float32)
    for i, w in enumerate(vocab.itos):
        if i < n_special:
            continue
        v = vectors.get(w)
        if v is not None:
            n_exact += 1
        else:
            v = vectors.get(w.lower())
        if v is not None:
            weights[i] = v
            found[i] = True
    std = float(weights[found].std()) if found.any() else 1.0
    if not math.isfinite(std) or std == 0.0:
        std = 1.0
    rng = np.random.default_rng(seed)
    random_rows = rng.standard_normal((len(vocab), dim)).astype(np.float32) * std
    weights[~found] = random_rows[~found]
    weights[PAD_ID] = 0.0
    n_found = int(found.sum())
    n_types = max(len(vocab) - n_special, 1)
    total = sum(vocab.counts.values())
    if total:
        covered = sum(
            c for t, c in vocab.counts.items() if found[vocab[t]] and vocab[t] >= n_special
        )
        token_cov = covered / total
    else:
        token_cov = float("nan")
    stats = GloveStats(
        dim=dim,
        n_file_words=n_lines,
        n_vocab=len(vocab),
        n_found=n_found,
        n_found_exact=n_exact,
        type_coverage=n_found / n_types,
        token_coverage=token_cov,
        std=std,
    )
    return torch.from_numpy(weights), stats
