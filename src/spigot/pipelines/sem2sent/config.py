"""Configuration of pipeline 2 (``task = "sem2sent"``): its modes and its three tables.

Same layout as pipeline 1's (:mod:`spigot.pipelines.syn2sem.config`; reading, overrides and
TOML output: :mod:`spigot.config`). The embedded default is the synthetic task of
:mod:`spigot.pipelines.sem2sent.synthetic`; ``data.source = "sst"`` reads the binary Stanford
Sentiment Treebank and pre-trains the semantic parser on the PropBank graphs of UD English EWT
(``configs/sem2sent_sst.toml``).

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spigot.config import (
    ConfigError,
    LoopConfig,
    apply_overrides,
    check_choice,
    check_nonneg,
    check_positive,
)

__all__ = ["MODES", "DataConfig", "ModelConfig", "Sem2SentConfig", "TrainConfig"]

_PIPELINE_MODES = ("bilstm", "gold", "pipeline", "joint", "ste", "marginals", "spigot")


def _modes() -> tuple[str, ...]:
    from spigot.estimators import ESTIMATORS

    return _PIPELINE_MODES + tuple(e for e in ESTIMATORS if e not in _PIPELINE_MODES)


RESERVED_OPTIONS = {
    "ste": {"gamma": "train.eta"},
    "spigot": {
        "eta": "train.eta",
        "loss_scale": "the batch size (fixed)",
        "max_step": "train.max_step",
    },
}
"""Estimator options that pipeline 2 sets itself, not from ``train.estimator_options``."""

MODES = _modes()
"""Training modes of the graph-then-sentiment pipeline.

``bilstm``: the classifier alone (no graph: the floor); ``gold``: the gold graph at training
and test time (the ceiling; synthetic data only, SST has no gold graphs); ``pipeline``: the
pre-trained parser's argmax graph, the parser frozen; ``joint``: the parser keeps training on
its own loss (on ``train.parser_fraction`` of its data per epoch), the classifier reads its
argmax graph, no gradient through it; ``ste``, ``spigot``, ``marginals`` and every other
registered estimator: as ``joint``, plus the sentiment loss reaching the parser through that
estimator (``marginals``: the classifier reads the arc-label marginals, structured attention).
"""


@dataclass
class DataConfig:
    """``[data]``: the sentiment data, the parser's data, batching and embeddings.

    Attributes:
        source: ``"synthetic"`` (the embedded default, no files) or ``"sst"``.
        sst_train, sst_dev, sst_test: PTB-style SST tree files (``train.txt`` ...), read as
            binary SST (neutral sentences dropped: 6,920 / 872 / 1,821).
        parser_train, parser_dev: UD English EWT CoNLL-U files whose PropBank graphs
            (``propbank``) the semantic parser is pre-trained on, words only (no POS tags).
        propbank: the PropBank EWT archive (see :mod:`spigot.data.propbank`).
        synthetic_seed: seed of the synthetic data (the same for every run seed).
        synthetic_train, synthetic_dev, synthetic_test: sentiment examples.
        synthetic_parser_train, synthetic_parser_dev: the parser's synthetic graph bank.
        max_length: longest parser sentence (words); longer ones are skipped and counted.
        batch_size: sentiment examples per training batch (the parser's batches are as big).
        eval_batch_size: examples per evaluation batch.
        word_min_freq: training words (sentiment and parser) seen fewer times map to ``<unk>``.
        lowercase: lowercase words before the vocabulary lookup.
        glove: GloVe text file for both encoders' word embeddings (``""``: random).
    """

    source: str = "synthetic"
    sst_train: str = "../shared/data/sst/train.txt"
    sst_dev: str = "../shared/data/sst/dev.txt"
    sst_test: str = "../shared/data/sst/test.txt"
    parser_train: str = "../shared/data/ud-english-ewt/en_ewt-ud-train.conllu"
    parser_dev: str = "../shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"
    propbank: str = "../shared/data/propbank-ewt/propbank-ewt-gold_skel.tgz"
    synthetic_seed: int = 0
    synthetic_train: int = 2000
    synthetic_dev: int = 400
    synthetic_test: int = 400
    synthetic_parser_train: int = 2000
    synthetic_parser_dev: int = 400
    max_length: int = 160
    batch_size: int = 32
    eval_batch_size: int = 128
    word_min_freq: int = 1
    lowercase: bool = True
    glove: str = ""


@dataclass
class ModelConfig:
    """``[model]``: sizes of the semantic parser and of the classifier.

    Attributes:
        word_dim: word embeddings (replaced by GloVe's dimension when ``data.glove`` is set).
        parser_hidden, parser_layers: the parser's BiLSTM (units per direction, layers).
        mlp_dim, label_mlp_dim: the parser's arc and label MLP scorers.
        hidden: the classifier's 1-layer BiLSTM, units per direction.
        role_dim: role (label) embeddings ``e_l``.
        feature_dim: size of the word features ``f_i``.
        classifier_mlp_dim: hidden layer of the classifier's output MLP.
        dropout: dropout on the classifier's BiLSTM states and features.
        word_dropout: probability of replacing a training word by ``<unk>`` (both encoders).
    """

    word_dim: int = 100
    parser_hidden: int = 200
    parser_layers: int = 2
    mlp_dim: int = 100
    label_mlp_dim: int = 100
    hidden: int = 200
    role_dim: int = 50
    feature_dim: int = 100
    classifier_mlp_dim: int = 100
    dropout: float = 0.2
    word_dropout: float = 0.25


@dataclass
class TrainConfig(LoopConfig):
    """``[train]``: the keys of :class:`spigot.config.LoopConfig` (``lr``, ``clip``, ``eta``,
    ``estimator_options``, ``threads``, ``progress``, ``device``, ``precision``,
    ``accumulate``, ``checkpoint_every``), the parser's pre-training and its interleaved
    training. Every estimator's step sees each sentence's own loss (``loss_scale`` = batch
    size; ``spigot``'s ``loss_scale`` option is set so).

    Attributes:
        epochs: sentiment epochs, at most (early stopping on dev accuracy with ``patience``).
        patience: epochs without a better dev accuracy before stopping (0 = never).
        pretrain_epochs: the parser's pre-training epochs, at most (early stopping on its
            dev labeled F1 with ``pretrain_patience``); skipped with ``init_parser``.
        pretrain_patience: see ``pretrain_epochs``.
        init_parser: a checkpoint (``parser.pt`` of an earlier run) to start the parser from.
        parser_fraction: in the joint modes, the fraction of the parser's training sentences
            that each sentiment epoch also trains it on (batches interleaved evenly with the
            sentiment batches; the original code used 0.2).
        parser_weight: weight of the parser's loss in those steps.
    """

    epochs: int = 20
    patience: int = 5
    pretrain_epochs: int = 10
    pretrain_patience: int = 3
    init_parser: str = ""
    parser_fraction: float = 0.2
    parser_weight: float = 1.0


@dataclass
class Sem2SentConfig:
    """Pipeline 2: semantic graphs feeding a sentiment classifier.

    Attributes:
        task: ``"sem2sent"``.
        mode: one of :data:`MODES`.
        seed: seeds torch, numpy, random and the batching order.
        name: free label for the run.
    """

    task: str = "sem2sent"
    mode: str = "spigot"
    seed: int = 0
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Sem2SentConfig:
        """Check every value; raise :class:`ConfigError` naming the key."""
        check_choice("task", self.task, ("sem2sent",))
        check_choice("mode", self.mode, MODES)
        d, m, t = self.data, self.model, self.train
        check_choice("data.source", d.source, ("synthetic", "sst"))
        if self.mode == "gold" and d.source != "synthetic":
            raise ConfigError("mode 'gold' needs gold graphs: only data.source = 'synthetic'")
        for key in ("synthetic_train", "synthetic_dev", "synthetic_parser_train"):
            check_positive(f"data.{key}", getattr(d, key))
        for key in ("synthetic_test", "synthetic_parser_dev"):
            check_nonneg(f"data.{key}", getattr(d, key))
        for key in ("max_length", "batch_size", "eval_batch_size", "word_min_freq"):
            check_positive(f"data.{key}", getattr(d, key))
        for key in ("word_dim", "parser_hidden", "parser_layers", "mlp_dim", "label_mlp_dim"):
            check_positive(f"model.{key}", getattr(m, key))
        for key in ("hidden", "role_dim", "feature_dim", "classifier_mlp_dim"):
            check_positive(f"model.{key}", getattr(m, key))
        for key in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(m, key) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(m, key)}")
        t.check(self.mode, RESERVED_OPTIONS)
        check_nonneg("train.epochs", t.epochs)
        check_nonneg("train.patience", t.patience)
        check_nonneg("train.pretrain_epochs", t.pretrain_epochs)
        check_nonneg("train.pretrain_patience", t.pretrain_patience)
        if not 0.0 <= t.parser_fraction <= 1.0:
            raise ConfigError(f"train.parser_fraction must be in [0, 1], got {t.parser_fraction}")
        check_nonneg("train.parser_weight", t.parser_weight)
        return self

    def uses_parser(self) -> bool:
        """Whether the mode reads a parser's graph (all but ``bilstm`` and ``gold``)."""
        return self.mode not in ("bilstm", "gold")

    def parser_trains(self) -> bool:
        """Whether the parser keeps training during the sentiment stage (the joint modes)."""
        return self.uses_parser() and self.mode != "pipeline"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Sem2SentConfig:
        """A copy with top-level keys or dotted keys (``"train.epochs"``) changed."""
        return apply_overrides(self, changes)
