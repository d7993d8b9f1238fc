"""Configuration of pipeline 1 (``task = "syn2sem"``): its modes and its three tables.

A configuration file has top-level keys (``task``, ``mode``, ``seed``, ``name``) and three
tables, ``[data]``, ``[model]`` and ``[train]``; every key is optional and falls back to the
dataclass default below (reading, overrides and TOML output: :mod:`spigot.config`). Example
(``configs/syn2sem_synthetic.toml``)::

    task = "syn2sem"
    mode = "spigot"
    seed = 0

    [data]
    synthetic_train = 1000

    [train]
    epochs = 8

The defaults of :class:`ModelConfig` and :class:`TrainConfig` follow the original SPIGOT code
(Peng, Thomson & Smith 2018): 2-layer BiLSTMs of 200 units per direction, MLPs of 100 units,
word embeddings of 100 (or GloVe 50d), POS embeddings of 50, Adam with learning rate 1e-3,
gradient clipping at 1.0, word dropout 0.25, model selection on dev labeled F1.

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

__all__ = [
    "COUPLINGS",
    "MODES",
    "TARGETS",
    "DataConfig",
    "ModelConfig",
    "Syn2SemConfig",
    "TrainConfig",
]

_PIPELINE_MODES = ("pipeline", "joint", "ste", "marginals", "spigot", "gold", "none")


def _modes() -> tuple[str, ...]:
    """Pipeline-1 modes: its own, plus every estimator registered when this module loads
    (trained jointly, the semantic loss reaching the parser through that estimator)."""
    from spigot.estimators import ESTIMATORS

    return _PIPELINE_MODES + tuple(e for e in ESTIMATORS if e not in _PIPELINE_MODES)


RESERVED_OPTIONS = {
    "ste": {"gamma": "train.eta"},
    "spigot": {
        "eta": "train.eta",
        "loss_scale": "train.eta_scale",
        "max_step": "train.max_step",
    },
}
"""Estimator options that pipeline 1 sets from its own keys, not ``train.estimator_options``."""

MODES = _modes()
"""Training modes of the syntactic-then-semantic pipeline.

``pipeline``, ``ste``, ``marginals`` and ``spigot`` are the estimators of
:func:`spigot.structured_argmax`; ``joint`` trains the syntactic parser on its own loss while
the semantic parser reads its argmax tree with no gradient through it (the pipeline estimator
in multitask training); ``gold`` feeds the gold tree to the semantic parser (at training *and*
test time: an oracle) and ``none`` feeds no tree (a semantic parser alone).
"""

COUPLINGS = ("semantic", "syntactic")
"""Values of ``model.coupling`` (see :class:`ModelConfig`)."""

TARGETS = ("enhanced", "propbank")
"""Values of ``data.target`` (see :class:`DataConfig`)."""


@dataclass
class DataConfig:
    """Where the sentences come from and how they are batched.

    Attributes:
        source: ``"synthetic"`` (the generated treebank of :mod:`spigot.data.synthetic`, no
            files needed) or ``"files"`` (``train``/``dev``/``test`` paths).
        train, dev, test: corpus files, ``.conllu`` (optionally ``.gz``) or ``.sdp``. CoNLL-U
            gives the basic tree (syntax) and the enhanced graph (semantics); SDP files have
            no tree (only ``mode = "none"`` can train on them). Relative paths are resolved
            against the current directory. ``test`` may be empty.
        drop_function_labels: drop enhanced CoNLL-U edges with function labels (``punct``,
            ``case``, ``det``, ...), which gives a DM-like graph.
        on_invalid_tree: ``"raise"`` or ``"skip"`` a CoNLL-U sentence whose tree is invalid.
        synthetic_seed: seed of the synthetic treebank (the same for every run seed).
        synthetic_train, synthetic_dev, synthetic_test: number of synthetic sentences.
        synthetic_min_len, synthetic_max_len: synthetic sentence lengths (words).
        max_length: longest sentence allowed (words).
        on_too_long: ``"raise"`` a clear error for a longer sentence, or ``"skip"`` it (the
            number skipped is reported).
        batch_size: sentences per training batch.
        batch_tokens: also cap the padded tokens per batch (0 = no cap).
        eval_batch_size: sentences per evaluation batch.
        word_min_freq: training words seen fewer times map to ``<unk>``.
        lowercase: lowercase words before the vocabulary lookup.
        glove: GloVe text file (``.txt`` or ``.txt.gz``) to initialise the word embeddings
            (``""``: random initialisation). Its dimension overrides ``model.word_dim``.
        target: the semantic graphs to learn. ``"enhanced"``: the graphs the files hold (the
            enhanced graph, DEPS, of CoNLL-U files; the graph of ``.sdp`` files).
            ``"propbank"``: the PropBank predicate-argument graphs of UD English EWT
            (:func:`spigot.data.read_propbank_ewt`), which replace DEPS; sentences that do not
            align with PropBank are skipped, counted and reported in the run log. Needs
            CoNLL-U files of UD EWT and ``propbank``.
        propbank: with ``target = "propbank"``, the ``propbank-ewt-gold_skel.tgz`` archive (or
            a directory of extracted ``.gold_skel`` files), read once for all splits.
    """

    source: str = "synthetic"
    train: str = ""
    dev: str = ""
    test: str = ""
    drop_function_labels: bool = True
    on_invalid_tree: str = "raise"
    synthetic_seed: int = 0
    synthetic_train: int = 2000
    synthetic_dev: int = 300
    synthetic_test: int = 300
    synthetic_min_len: int = 5
    synthetic_max_len: int = 30
    max_length: int = 160
    on_too_long: str = "raise"
    batch_size: int = 32
    batch_tokens: int = 0
    eval_batch_size: int = 64
    word_min_freq: int = 2
    lowercase: bool = True
    glove: str = ""
    target: str = "enhanced"
    propbank: str = ""


@dataclass
class ModelConfig:
    """Sizes and choices of the syntactic and semantic parsers (each has its own encoder).

    Attributes:
        word_dim: word embedding size (replaced by the GloVe dimension when ``data.glove``).
        pos_dim: POS-tag embedding size (0: no POS tags).
        lstm_hidden: BiLSTM units per direction.
        lstm_layers: BiLSTM layers.
        mlp_dim: hidden units of the arc scorers.
        label_mlp_dim: hidden units of the label scorers.
        coupling: whose encoder states the tree ``z`` weights for the semantic parser.
            ``"semantic"`` (default, the original code): the semantic encoder reads words and
            POS only, and each word's arc and label scorers read ``[h_i; sum_j z[j, i] W h_j]``
            with ``h`` the *semantic* encoder's states, so the semantic loss reaches the
            syntactic parser only through ``z``. ``"syntactic"``: ``sum_j z[j, i] W h_j`` with
            ``h`` the *syntactic* encoder's states joins the semantic encoder's input; the
            semantic loss then also trains the syntactic encoder through ``W h``, even when no
            gradient passes through ``z`` (the behaviour before this option existed).
        coupling_dim: size of ``W h_j``, the head representation that each word of the
            semantic parser receives (weighted by the tree ``z``).
        dropout: dropout on the BiLSTM outputs and between layers.
        word_dropout: probability of replacing a training word by ``<unk>``.
        syn_scorer: ``"mlp"`` (Kiperwasser & Goldberg) or ``"biaffine"`` (Dozat & Manning).
        sem_scorer: ``"mlp"`` (NeurboParser's basic model) or ``"biaffine"``.
        syntactic_labels: also predict syntactic relation labels (LAS).
        projective: decode projective trees (Eisner) instead of non-projective ones (CLE).
        single_root: exactly one word attaches to the root.
        freeze_embeddings: keep pre-trained (GloVe) word embeddings fixed.
    """

    word_dim: int = 100
    pos_dim: int = 50
    lstm_hidden: int = 200
    lstm_layers: int = 2
    mlp_dim: int = 100
    label_mlp_dim: int = 100
    coupling: str = "semantic"
    coupling_dim: int = 100
    dropout: float = 0.0
    word_dropout: float = 0.25
    syn_scorer: str = "mlp"
    sem_scorer: str = "mlp"
    syntactic_labels: bool = False
    projective: bool = False
    single_root: bool = True
    freeze_embeddings: bool = False


@dataclass
class TrainConfig(LoopConfig):
    """The optimisation loop: the keys of :class:`spigot.config.LoopConfig` (``lr``, ``clip``,
    ``eta``, ``estimator_options``, ``threads``, ``progress``, ``device``, ``precision``,
    ``accumulate``, ``checkpoint_every``) and pipeline 1's own.

    Attributes:
        epochs: training epochs (of the joint / semantic stage).
        pretrain_epochs: syntactic-only epochs before joint training; in ``mode = "pipeline"``
            the syntactic stage runs ``pretrain_epochs`` epochs, or ``epochs`` if 0. With
            ``pretrain_patience`` this is the maximum.
        pretrain_patience: stop the syntactic stage after this many epochs without a better
            dev UAS (0 = run all its epochs). The stage always ends with its best dev-UAS
            weights, which ``pipeline`` then freezes: a converged parser.
        patience: stop after this many epochs without a better dev score (0 = never).
        syntactic_loss: ``"hinge"`` (structured hinge, Hamming cost 1 per wrong arc) or
            ``"crf"`` (tree CRF negative log-likelihood).
        syntactic_weight: weight of the syntactic loss in joint (multitask) training.
        init_syntax: path of a checkpoint (``best.pt`` or ``syntax.pt`` of an earlier run with
            the same data and model sizes) whose syntactic parser initialises this run's
            before training; ``""`` = none. In ``mode = "pipeline"`` the syntactic stage then
            runs only ``pretrain_epochs`` more epochs (0: the loaded parser is frozen as is).
        eta_scale: which gradient SPIGOT's step (and the rule for ``eta``) sees:
            ``"sentence"`` (default), the gradient of each sentence's summed loss as in the
            original code (``loss_scale`` = words in the batch, see :mod:`spigot.estimators`),
            or ``"batch"``, the gradient of the training loss as it is (a mean over the words
            of the batch), for which ``eta`` is almost always 1. The other registered
            estimators' steps (``lam``, ``gamma``) see the same gradient
            (:func:`spigot.models.coupling.with_loss_scale`); ``spigot``'s ``loss_scale``
            option is this key.
        log_grad_norms: log per epoch (an ``{"event": "grad_norms"}`` record of the metrics
            log) the mean per-sentence norm of the gradient reaching the syntactic arc scores
            from the semantic loss (through ``z``) and from the syntactic loss, and their
            cosine (:mod:`spigot.models.diagnostics`).
    """

    epochs: int = 10
    pretrain_epochs: int = 0
    pretrain_patience: int = 0
    patience: int = 0
    syntactic_loss: str = "hinge"
    syntactic_weight: float = 1.0
    init_syntax: str = ""
    eta_scale: str = "sentence"
    log_grad_norms: bool = False


@dataclass
class Syn2SemConfig:
    """Pipeline 1: syntactic-then-semantic dependency parsing.

    Attributes:
        task: ``"syn2sem"``.
        mode: one of :data:`MODES`.
        seed: seeds torch, numpy, random and the batching order.
        name: free label for the run (used in output directory names).
    """

    task: str = "syn2sem"
    mode: str = "spigot"
    seed: int = 0
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Syn2SemConfig:
        """Check every value; raise :class:`ConfigError` naming the key."""
        check_choice("task", self.task, ("syn2sem",))
        check_choice("mode", self.mode, MODES)
        d, m, t = self.data, self.model, self.train
        check_choice("data.source", d.source, ("synthetic", "files"))
        check_choice("data.on_invalid_tree", d.on_invalid_tree, ("raise", "skip"))
        check_choice("data.on_too_long", d.on_too_long, ("raise", "skip"))
        check_choice("data.target", d.target, TARGETS)
        if d.target == "propbank":
            if d.source != "files":
                raise ConfigError("data.target = 'propbank' needs data.source = 'files' (UD EWT)")
            if not d.propbank:
                raise ConfigError(
                    "data.propbank must name the PropBank archive when data.target = 'propbank'"
                )
        if d.source == "files":
            for key in ("train", "dev"):
                if not getattr(d, key):
                    raise ConfigError(f"data.{key} must be a file path when data.source = 'files'")
        for key in ("batch_size", "eval_batch_size", "max_length", "word_min_freq"):
            check_positive(f"data.{key}", getattr(d, key))
        for key in ("synthetic_dev",):
            check_positive(f"data.{key}", getattr(d, key))
        if d.source == "synthetic":
            check_positive("data.synthetic_train", d.synthetic_train)
            if not 3 <= d.synthetic_min_len <= d.synthetic_max_len:
                raise ConfigError(
                    "need 3 <= data.synthetic_min_len <= data.synthetic_max_len, got "
                    f"{d.synthetic_min_len} and {d.synthetic_max_len}"
                )
        check_nonneg("data.batch_tokens", d.batch_tokens)
        check_nonneg("data.synthetic_test", d.synthetic_test)
        for key in ("word_dim", "lstm_hidden", "lstm_layers", "mlp_dim", "label_mlp_dim"):
            check_positive(f"model.{key}", getattr(m, key))
        check_positive("model.coupling_dim", m.coupling_dim)
        check_nonneg("model.pos_dim", m.pos_dim)
        for key in ("dropout", "word_dropout"):
            v = getattr(m, key)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {v}")
        check_choice("model.syn_scorer", m.syn_scorer, ("mlp", "biaffine"))
        check_choice("model.sem_scorer", m.sem_scorer, ("mlp", "biaffine"))
        check_choice("model.coupling", m.coupling, COUPLINGS)
        t.check(self.mode, RESERVED_OPTIONS)
        check_nonneg("train.epochs", t.epochs)
        check_nonneg("train.pretrain_epochs", t.pretrain_epochs)
        check_nonneg("train.pretrain_patience", t.pretrain_patience)
        check_nonneg("train.patience", t.patience)
        check_nonneg("train.syntactic_weight", t.syntactic_weight)
        check_choice("train.syntactic_loss", t.syntactic_loss, ("hinge", "crf"))
        check_choice("train.eta_scale", t.eta_scale, ("batch", "sentence"))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def syntactic_epochs(self) -> int:
        """Epochs of the syntax-only stage: ``train.pretrain_epochs``, or in ``pipeline`` mode
        without ``train.init_syntax`` and without pre-training, ``train.epochs``."""
        if self.mode == "none":
            return 0
        t = self.train
        if self.mode == "pipeline" and not t.init_syntax and t.pretrain_epochs == 0:
            return t.epochs
        return t.pretrain_epochs

    def replace(self, **changes: Any) -> Syn2SemConfig:
        """A copy with top-level keys or dotted keys (``"train.epochs"``) changed."""
        return apply_overrides(self, changes)
