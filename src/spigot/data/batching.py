"""Length-bucketed batching and collation of :class:`Sentence` lists into tensors.

Tensor layout of a :class:`Batch` with ``B`` sentences and ``n`` = longest
sentence (in words): position 0 of every row is the artificial root
(``ROOT_ID`` in the word and POS rows), words occupy positions ``1..len``,
the rest is padding (id 0).

============== ================ ====== ===========================================
field          shape            dtype  content
============== ================ ====== ===========================================
words          [B, n+1]         long   word ids (0 = pad, 2 = root at position 0)
pos            [B, n+1]         long   POS ids
heads          [B, n+1]         long   syntactic head of each word; 0 at position
                                       0 and on padding
deprels        [B, n+1]         long   relation ids (0 at position 0 / padding)
lengths        [B]              long   number of words, root excluded
mask           [B, n+1]         bool   True at word positions 1..len
arcs           [B, n+1, n+1]    float  1.0 where semantic arc h -> m
                                       (``arcs[b, h, m]``; h = 0 marks a top)
arc_labels     [B, n+1, n+1]    long   label id of arc h -> m, 0 where no arc
                                       or padding (= ignore)
============== ================ ====== ===========================================

``heads``/``deprels`` are ``None`` if some sentence has no tree (SDP data),
``arcs`` is ``None`` if some sentence has no graph, ``deprels`` and
``arc_labels`` are ``None`` when no label vocabulary is given.  When a
sentence has two labels on one ``(h, m)`` pair, ``arc_labels`` keeps the
first in ``Sentence.arcs`` order.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .conllu import Sentence
from .vocab import ROOT_ID, LabelVocab, Vocab

__all__ = [
    "Batch",
    "BucketIterator",
    "EpochPass",
    "batch_device",
    "bucket_batches",
    "collate",
    "filter_by_length",
    "shard_indices",
]

DEFAULT_MAX_LENGTH = 160

_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar(
    "spigot_batch_device", default=None
)


@contextlib.contextmanager
def batch_device(device: torch.device | str | None) -> Iterator[None]:
    """Within the block, a :class:`BucketIterator` built without ``device`` moves its batches
    to ``device`` (``None``: leave them on the CPU).

    :class:`spigot.training.Trainer` sets it around training and evaluation, so the
    iterators a pipeline builds for its dev set follow the model's device.
    """
    token = _DEVICE.set(torch.device(device) if device is not None else None)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def shard_indices(
    n: int, *, rank: int = 0, world_size: int = 1, multiple: int = 1, start: int = 0
) -> list[int]:
    """Positions (in an epoch's order of ``n`` batches) of the batches process ``rank`` of
    ``world_size`` takes, from its ``start``-th on.

    The epoch is first padded to a multiple of ``world_size * multiple`` batches by repeating
    its first batches (wrap-around, as torch's ``DistributedSampler`` repeats samples), so
    that every process runs the same number of optimizer steps of ``multiple`` batches each;
    then process ``r`` takes global batches ``r, r + world_size, r + 2 world_size, ...``. With
    ``world_size = multiple = 1`` this is ``range(start, n)``.

    Args:
        n: batches in the epoch.
        rank, world_size: this process and the number of processes.
        multiple: batches per optimizer step and process (gradient accumulation).
        start: local batches already done (a resumed epoch).

    Returns:
        Global batch positions, each in ``0..n-1``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    if multiple < 1 or start < 0:
        raise ValueError(f"need multiple >= 1 and start >= 0, got {multiple} and {start}")
    if n == 0:
        return []
    group = world_size * multiple
    total = -(-n // group) * group
    return [g % n for g in range(rank, total, world_size)][start:]


@dataclass
class Batch:
    """A collated batch; see the module docstring for shapes.

    Attributes:
        sentences: the source sentences, in batch order.
        indices: their positions in the dataset given to the iterator (or
            ``0..B-1`` for :func:`collate`).
    """

    words: torch.Tensor
    pos: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    heads: torch.Tensor | None = None
    deprels: torch.Tensor | None = None
    arcs: torch.Tensor | None = None
    arc_labels: torch.Tensor | None = None
    sentences: list[Sentence] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.words.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """Copy of the batch with all tensors on ``device``."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            words=self.words.to(device),
            pos=self.pos.to(device),
            lengths=self.lengths.to(device),
            mask=self.mask.to(device),
            heads=mv(self.heads),
            deprels=mv(self.deprels),
            arcs=mv(self.arcs),
            arc_labels=mv(self.arc_labels),
            sentences=self.sentences,
            indices=self.indices,
        )


def collate(
    sentences: Sequence[Sentence],
    word_vocab: Vocab,
    pos_vocab: Vocab,
    *,
    deprel_vocab: LabelVocab | None = None,
    label_vocab: LabelVocab | None = None,
    indices: Sequence[int] | None = None,
) -> Batch:
    """Collate sentences into a :class:`Batch` of padded tensors.

    Args:
        sentences: B >= 1 sentences.
        word_vocab, pos_vocab: token vocabularies (unknown tokens -> UNK).
        deprel_vocab: if given, fills ``Batch.deprels``.
        label_vocab: if given, fills ``Batch.arc_labels`` (raises
            :class:`~spigot.data.vocab.UnknownLabelError` for unknown labels
            unless the vocabulary has ``unk_label``).
        indices: dataset positions stored in ``Batch.indices``.

    Returns:
        :class:`Batch`; ``n`` = longest sentence in words.
    """
    if not sentences:
        raise ValueError("collate() needs at least one sentence")
    B = len(sentences)
    n = max(len(s) for s in sentences)
    words = torch.zeros(B, n + 1, dtype=torch.long)
    pos = torch.zeros(B, n + 1, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
    mask = torch.arange(n + 1).unsqueeze(0).le(lengths.unsqueeze(1))
    mask[:, 0] = False
    has_tree = all(s.heads is not None for s in sentences)
    has_graph = all(s.arcs is not None for s in sentences)
    heads = torch.zeros(B, n + 1, dtype=torch.long) if has_tree else None
    deprels = (
        torch.zeros(B, n + 1, dtype=torch.long)
        if has_tree and deprel_vocab is not None and all(s.deprels is not None for s in sentences)
        else None
    )
    arcs = torch.zeros(B, n + 1, n + 1) if has_graph else None
    arc_labels = (
        torch.zeros(B, n + 1, n + 1, dtype=torch.long)
        if has_graph and label_vocab is not None
        else None
    )
    for b, s in enumerate(sentences):
        k = len(s)
        words[b, 0] = ROOT_ID
        pos[b, 0] = ROOT_ID
        if k == 0:
            continue
        words[b, 1 : k + 1] = torch.tensor(word_vocab.encode(s.words))
        pos[b, 1 : k + 1] = torch.tensor(pos_vocab.encode(s.pos or ["_"] * k))
        if heads is not None:
            heads[b, 1 : k + 1] = torch.tensor(s.heads)
        if deprels is not None:
            deprels[b, 1 : k + 1] = torch.tensor(deprel_vocab.encode(s.deprels))  # type: ignore[union-attr, arg-type]
        if arcs is not None and s.arcs:
            for h, m, lab in s.arcs:
                if not (0 <= h <= k and 1 <= m <= k):
                    raise ValueError(
                        f"sentence {s.sent_id!r}: arc {(h, m, lab)} out of range for {k} words"
                    )
                if arcs[b, h, m] == 0 and arc_labels is not None:
                    arc_labels[b, h, m] = label_vocab[lab]  # type: ignore[index]
                arcs[b, h, m] = 1.0
    return Batch(
        words=words,
        pos=pos,
        lengths=lengths,
        mask=mask,
        heads=heads,
        deprels=deprels,
        arcs=arcs,
        arc_labels=arc_labels,
        sentences=list(sentences),
        indices=list(indices) if indices is not None else list(range(B)),
    )


def filter_by_length(
    sentences: Sequence[Sentence],
    max_length: int = DEFAULT_MAX_LENGTH,
    on_too_long: Literal["raise", "skip"] = "raise",
) -> tuple[list[int], list[str | None]]:
    """Indices of sentences with at most ``max_length`` words.

    Returns:
        ``(kept_indices, skipped_sent_ids)``.

    Raises:
        ValueError: with ``on_too_long="raise"``, for the first sentence longer
            than ``max_length`` (message names its id, position and length).
    """
    if on_too_long not in ("raise", "skip"):
        raise ValueError(f"on_too_long must be 'raise' or 'skip', got {on_too_long!r}")
    kept: list[int] = []
    skipped: list[str | None] = []
    for i, s in enumerate(sentences):
        if len(s) > max_length:
            if on_too_long == "raise":
                raise ValueError(
                    f"sentence {s.sent_id!r} (index {i}) has {len(s)} words, more than "
                    f"max_length={max_length}; raise max_length or pass on_too_long='skip'"
                )
            skipped.append(s.sent_id)
        else:
            kept.append(i)
    return kept, skipped


def bucket_batches(
    lengths: Sequence[int],
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> list[list[int]]:
    """Group sentence indices into batches of similar length.

    Indices are sorted by length (ties broken randomly with ``seed`` when
    ``shuffle``), cut greedily into batches holding at most ``batch_size``
    sentences and at most ``batch_tokens`` *padded* tokens, i.e.
    ``len(batch) * (longest + 1)`` counting the root (a single sentence larger
    than ``batch_tokens`` gets a batch of its own); then the batch order is
    shuffled with ``seed``.  With neither limit given, ``batch_size = 32``.

    Args:
        lengths: sentence lengths in words.

    Returns:
        list of batches, each a list of indices into ``lengths``, sorted by length.
    """
    if batch_size is None and batch_tokens is None:
        batch_size = 32
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_tokens is not None and batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        too_many = batch_size is not None and len(current) + 1 > batch_size
        too_big = batch_tokens is not None and (len(current) + 1) * (new_longest + 1) > batch_tokens
        if current and (too_many or too_big):
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


class BucketIterator:
    """Iterate over length-bucketed, collated batches; reshuffles every epoch.

    Epoch ``e`` (counting from 0, advanced by each full ``iter()``) uses seed
    ``seed + e`` for its bucketing, so runs are reproducible.

    Args:
        sentences: the dataset.
        word_vocab, pos_vocab, deprel_vocab, label_vocab: see :func:`collate`.
        batch_size, batch_tokens: see :func:`bucket_batches`.
        shuffle: shuffle ties and batch order (False: deterministic, sorted).
        seed: base seed.
        max_length: longest sentence allowed (words).
        on_too_long: ``"raise"`` a ValueError naming the sentence, or ``"skip"``
            it (``n_skipped`` / ``skipped_ids`` tell which).
        device: move batches to this device (default: the device of the enclosing
            :func:`batch_device` block, if any).

    An epoch can also be taken in part: :meth:`epoch_iter` skips the batches a resumed epoch
    has done and shards the epoch over the processes of a data-parallel run, without collating
    the batches it leaves out.
    """

    def __init__(
        self,
        sentences: Sequence[Sentence],
        word_vocab: Vocab,
        pos_vocab: Vocab,
        *,
        deprel_vocab: LabelVocab | None = None,
        label_vocab: LabelVocab | None = None,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        max_length: int = DEFAULT_MAX_LENGTH,
        on_too_long: Literal["raise", "skip"] = "raise",
        device: torch.device | str | None = None,
    ) -> None:
        self.sentences = sentences
        self.word_vocab, self.pos_vocab = word_vocab, pos_vocab
        self.deprel_vocab, self.label_vocab = deprel_vocab, label_vocab
        self.batch_size, self.batch_tokens = batch_size, batch_tokens
        self.shuffle, self.seed, self.device = shuffle, seed, device
        self.kept, self.skipped_ids = filter_by_length(sentences, max_length, on_too_long)
        self.epoch = 0

    @property
    def n_skipped(self) -> int:
        """Number of sentences dropped for being longer than ``max_length``."""
        return len(self.skipped_ids)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """Index batches (dataset positions) for ``epoch`` (default: current)."""
        e = self.epoch if epoch is None else epoch
        local = bucket_batches(
            [len(self.sentences[i]) for i in self.kept],
            batch_size=self.batch_size,
            batch_tokens=self.batch_tokens,
            shuffle=self.shuffle,
            seed=self.seed + e,
        )
        return [[self.kept[j] for j in b] for b in local]

    def __len__(self) -> int:
        return len(self.batches(0))

    def _collate(self, idx: list[int]) -> Batch:
        batch = collate(
            [self.sentences[i] for i in idx],
            self.word_vocab,
            self.pos_vocab,
            deprel_vocab=self.deprel_vocab,
            label_vocab=self.label_vocab,
            indices=idx,
        )
        device = self.device if self.device is not None else _DEVICE.get()
        return batch if device is None else batch.to(device)

    def epoch_iter(
        self, *, start: int = 0, rank: int = 0, world_size: int = 1, multiple: int = 1
    ) -> EpochPass:
        """The current epoch's batches for one process, from its ``start``-th; advances
        :attr:`epoch` at once (as a full ``iter()`` does).

        The order is the epoch's (seed ``seed + epoch``), so ``start = k`` gives exactly the
        batches an uninterrupted pass yields after its first ``k``; ``rank``, ``world_size``
        and ``multiple`` select this process's share (:func:`shard_indices`). Skipped batches
        are not collated.
        """
        plan = self.batches()
        self.epoch += 1
        take = shard_indices(
            len(plan), rank=rank, world_size=world_size, multiple=multiple, start=start
        )
        return EpochPass(self, [plan[g] for g in take])

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.epoch_iter())


class EpochPass:
    """One pass of a :class:`BucketIterator`: a sized iterable of collated batches."""

    def __init__(self, source: BucketIterator, plan: list[list[int]]) -> None:
        self.source, self.plan = source, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.plan:
            yield self.source._collate(idx)
