"""The data of pipeline 2: sentiment examples, the parser's graph bank, and their batches.

Both kinds of examples are :class:`~spigot.data.Sentence` objects, so that the batching of
pipeline 1 (:class:`~spigot.data.BucketIterator`) serves them; a sentiment example is a
:class:`SentimentSentence`: a sentence without POS tags (``pos = ["_"] * n``: the parser of this
pipeline reads words only), with its gold graph in ``arcs`` when there is one (synthetic data;
SST has none) and its ``label`` (0 negative, 1 positive).

* ``data.source = "synthetic"``: :func:`spigot.pipelines.sem2sent.synthetic.sentiment_splits`
  and :func:`~spigot.pipelines.sem2sent.synthetic.parser_treebank`, generated, no files;
* ``data.source = "sst"``: binary SST from the PTB-style tree files
  (:func:`spigot.data.read_sst_trees`, 6,920 / 872 / 1,821 sentences) and the PropBank graphs
  of UD English EWT train/dev for the parser (:func:`spigot.pipelines.syn2sem.data.read_corpus`
  with ``target = "propbank"``), their POS tags dropped.

:class:`Interleaved` pairs each sentiment batch of an epoch with at most one parser batch, so
that the joint modes train the parser on ``train.parser_fraction`` of its data per epoch.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from spigot.data import Sentence
from spigot.data._text import DataError
from spigot.pipelines.sem2sent.config import Sem2SentConfig

__all__ = [
    "Interleaved",
    "Sem2SentData",
    "SentimentSentence",
    "Step",
    "as_sentence",
    "load_splits",
]

NO_POS = "_"


@dataclasses.dataclass
class SentimentSentence(Sentence):
    """A sentence with a sentiment ``label`` (0 negative, 1 positive; -1 unknown)."""

    label: int = -1


class Sem2SentData(dict):
    """``{"train", "dev", "test"}`` :class:`SentimentSentence` lists, plus the parser's data.

    Attributes:
        parser: ``{"train", "dev"}`` sentences with gold semantic graphs (the parser's data).
        report: what was read and skipped (files, counts).
    """

    def __init__(
        self,
        splits: dict[str, list[SentimentSentence]],
        parser: dict[str, list[Sentence]],
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(splits)
        self.parser = parser
        self.report: dict[str, Any] = report or {}


def as_sentence(
    words: list[str],
    label: int = -1,
    arcs: list[tuple[int, int, str]] | None = None,
    sent_id: str = "",
) -> SentimentSentence:
    """A sentiment example as a :class:`SentimentSentence` without POS tags."""
    return SentimentSentence(
        words=list(words), pos=[NO_POS] * len(words), arcs=arcs, sent_id=sent_id, label=label
    )


def _words_only(s: Sentence) -> Sentence:
    """``s`` with its POS tags dropped (the parser of pipeline 2 reads words alone)."""
    return dataclasses.replace(s, pos=[NO_POS] * len(s.words))


def load_splits(config: Sem2SentConfig) -> Sem2SentData:
    """The sentiment splits, their labels and the parser's data of ``config``."""
    d = config.data
    if d.source == "synthetic":
        from spigot.pipelines.sem2sent.synthetic import parser_treebank, sentiment_splits

        splits = sentiment_splits(
            d.synthetic_seed,
            n_train=d.synthetic_train,
            n_dev=d.synthetic_dev,
            n_test=d.synthetic_test,
        )
        ptrain, pdev = parser_treebank(
            d.synthetic_seed, n_train=d.synthetic_parser_train, n_dev=d.synthetic_parser_dev
        )
        out = {
            name: [as_sentence(e.words, int(e.label), e.arcs, e.sent_id) for e in exs]
            for name, exs in zip(("train", "dev", "test"), splits, strict=True)
        }
        parser = {"train": [_words_only(s) for s in ptrain], "dev": [_words_only(s) for s in pdev]}
        return Sem2SentData(out, parser, {"source": "synthetic"})
    from spigot.data import read_propbank, read_sst_trees
    from spigot.data.download.paths import resolve_data_path
    from spigot.pipelines.syn2sem.data import read_corpus

    report: dict[str, Any] = {"source": "sst", "splits": {}, "parser": {}}
    out = {}
    for name in ("train", "dev", "test"):
        path = getattr(d, f"sst_{name}")
        exs = read_sst_trees(resolve_data_path(path), binary=True) if path else []
        out[name] = [
            as_sentence(e.tokens, int(e.label), None, f"sst-{name}-{i}") for i, e in enumerate(exs)
        ]
        report["splits"][name] = {"file": path, "sentences": len(exs)}
    if not out["train"] or not out["dev"]:
        raise DataError("data.sst_train and data.sst_dev must give sentences")
    index = read_propbank(resolve_data_path(d.propbank))
    opts = SimpleNamespace(
        target="propbank",
        propbank=d.propbank,
        drop_function_labels=False,
        on_invalid_tree="skip",
    )
    parser = {}
    for name in ("train", "dev"):
        rep: dict[str, Any] = {}
        sents = read_corpus(getattr(d, f"parser_{name}"), opts, propbank_index=index, report=rep)
        parser[name] = [_words_only(s) for s in sents]
        report["parser"][name] = {k: v for k, v in rep.items() if k != "skipped_ids"}
    return Sem2SentData(out, parser, report)


@dataclasses.dataclass
class Step:
    """One training step: a sentiment batch and, in the joint modes, maybe a parser batch."""

    sentiment: Any
    parser: Any = None

    def __len__(self) -> int:
        return len(self.sentiment)

    def to(self, device: Any) -> Step:
        """The step with both batches on ``device``."""
        return Step(
            self.sentiment.to(device), None if self.parser is None else self.parser.to(device)
        )


class Interleaved:
    """Sentiment batches, each paired with at most one parser batch (see the module doc).

    Epoch ``e`` takes ``round(fraction * P)`` of the ``P`` parser batches of that epoch
    (the parser iterator's own shuffled order, a seeded subset) and spreads them evenly over
    the ``S`` sentiment batches: parser batch ``j`` goes with sentiment batch
    ``floor(j * S / k)``. ``epoch`` advances with each full pass, as a
    :class:`~spigot.data.BucketIterator`'s, so that :class:`~spigot.training.Trainer` can
    resume it.
    """

    def __init__(self, sentiment: Any, parser: Any | None, fraction: float, seed: int) -> None:
        self.sentiment, self.parser = sentiment, parser
        self.fraction, self.seed = fraction, seed

    @property
    def epoch(self) -> int:
        return int(self.sentiment.epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.sentiment.epoch = value
        if self.parser is not None:
            self.parser.epoch = value

    def __len__(self) -> int:
        return len(self.sentiment)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.epoch_iter())

    def epoch_iter(
        self, *, start: int = 0, rank: int = 0, world_size: int = 1, multiple: int = 1
    ) -> list[Step]:
        """The current epoch's steps for one process, from its ``start``-th (the protocol of
        :meth:`spigot.data.BucketIterator.epoch_iter`, which :class:`spigot.training.Trainer`
        uses for mid-epoch resume and data-parallel shards); advances :attr:`epoch`."""
        from spigot.data.batching import shard_indices

        e = self.epoch
        plan = self.sentiment.batches()
        self.epoch = e + 1
        pairs: dict[int, list[int]] = {}
        if self.parser is not None and self.fraction > 0:
            pplan = self.parser.batches(e)
            k = min(len(pplan), max(1, round(self.fraction * len(pplan))))
            chosen = sorted(random.Random(f"{self.seed}-{e}").sample(range(len(pplan)), k))
            pairs = {math.floor(j * len(plan) / k): pplan[chosen[j]] for j in range(k)}
        take = shard_indices(
            len(plan), rank=rank, world_size=world_size, multiple=multiple, start=start
        )
        return [
            Step(
                self.sentiment._collate(plan[g]),
                self.parser._collate(pairs[g]) if g in pairs and self.parser is not None else None,
            )
            for g in take
        ]
