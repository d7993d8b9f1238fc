"""Pipeline 1: syntactic-then-semantic dependency parsing through a hard tree.

A syntactic parser scores arcs ``s`` and decides a tree ``z`` in the middle of the network;
each word ``i`` of the semantic parser then receives the representation of its syntactic head,
``sum_j z[j, i] * W h_j``. By default (``model.coupling = "semantic"``, as the original code)
``h`` is the semantic parser's own encoder states and the result joins ``h_i`` at the input of
its scorers, so the semantic loss reaches the syntactic parser only through ``z``
(:mod:`spigot.models.coupling`). How it passes through ``z`` is the ``mode``:

===========  ============================================  ================================
mode         z (training / test)                            gradient to the syntactic scores
===========  ============================================  ================================
pipeline     argmax of a syntactic parser trained first     none (the parser is frozen)
             and then frozen
joint        argmax / argmax                                none (the parser trains on its
                                                            own loss only)
ste          argmax / argmax                                straight-through (times
                                                            ``train.eta`` if > 0)
spigot       argmax / argmax                                SPIGOT (projection on the trees'
                                                            relaxed polytope)
marginals    arc marginals / arc marginals                  exact (structured attention)
gold         gold tree / gold tree (an oracle)              none
none         no tree (semantic parser alone)                none
===========  ============================================  ================================

Joint modes (all but ``pipeline`` and ``none``) keep the syntactic loss on with weight
``train.syntactic_weight``; ``train.pretrain_epochs`` syntactic-only epochs may come first
(early-stopped on dev UAS with ``train.pretrain_patience``). :class:`Syn2SemTask` holds the
data, vocabularies and model and drives training, evaluation and prediction; the command line
(:mod:`spigot.cli`) and the experiment runner (:mod:`spigot.experiments.syn2sem`) use it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spigot.config import Syn2SemConfig, config_from_dict, dump_toml
from spigot.data import BucketIterator, LabelVocab, Sentence, Vocab, load_glove
from spigot.estimators import ESTIMATORS, structured_argmax
from spigot.metrics import AttachmentScorer, SemanticScorer
from spigot.models.coupling import HeadFeatures, scale_gradient
from spigot.models.diagnostics import GradNormMonitor, syntax_summary
from spigot.models.encoder import BiLSTMEncoder
from spigot.models.parsers import SemanticParser, SyntacticParser, tree_arcs
from spigot.models.syn2sem_data import Splits, is_sdp_path, load_splits, read_corpus, summary
from spigot.models.syn2sem_outputs import SENTENCES_FILE, sentence_record, write_sentences
from spigot.structures import DependencyTree
from spigot.training import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DataError,
    EpochStats,
    JsonlLog,
    Trainer,
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint,
    seed_everything,
    set_threads,
)

__all__ = ["Syn2Sem", "Syn2SemTask", "is_sdp_path", "read_corpus"]

logger = logging.getLogger("spigot")


class Syn2Sem(nn.Module):
    """The coupled model: a syntactic parser, the coupling ``W`` and a semantic parser.

    Args:
        config: the run configuration (``mode``, ``model`` sizes and coupling, ``train.eta``,
            ``train.eta_scale``, ``train.log_grad_norms``).
        n_words, n_pos: token vocabulary sizes (shared by both encoders' lookups).
        n_labels: semantic label vocabulary size (with ``<none>``).
        n_deprels: syntactic relation vocabulary size (with ``<none>``), used when
            ``model.syntactic_labels``.
        pretrained: optional GloVe matrix ``[n_words, dim]`` for both encoders.
    """

    def __init__(
        self,
        config: Syn2SemConfig,
        n_words: int,
        n_pos: int,
        n_labels: int,
        n_deprels: int = 0,
        pretrained: Tensor | None = None,
    ) -> None:
        super().__init__()
        m = config.model
        self.mode = config.mode
        self.eta = config.train.eta if config.train.eta > 0 else None
        self.eta_scale = config.train.eta_scale
        word_dim = int(pretrained.shape[1]) if pretrained is not None else m.word_dim

        def encoder(extra_dim: int) -> BiLSTMEncoder:
            return BiLSTMEncoder(
                n_words,
                n_pos,
                word_dim=word_dim,
                pos_dim=m.pos_dim,
                hidden=m.lstm_hidden,
                layers=m.lstm_layers,
                extra_dim=extra_dim,
                dropout=m.dropout,
                word_dropout=m.word_dropout,
                pretrained=pretrained,
                freeze=m.freeze_embeddings,
            )

        self.tree = DependencyTree(projective=m.projective, single_root=m.single_root)
        self.syntax = SyntacticParser(
            encoder(0),
            scorer=m.syn_scorer,
            mlp_dim=m.mlp_dim,
            tree=self.tree,
            n_labels=n_deprels if m.syntactic_labels else 0,
            label_mlp_dim=m.label_mlp_dim,
        )
        self.coupled = self.mode != "none"
        self.coupling_source = m.coupling
        through_syntax = self.coupled and m.coupling == "syntactic"
        through_semantics = self.coupled and m.coupling == "semantic"
        self.semantics = SemanticParser(
            encoder(m.coupling_dim if through_syntax else 0),
            n_labels,
            scorer=m.sem_scorer,
            mlp_dim=m.mlp_dim,
            label_mlp_dim=m.label_mlp_dim,
            feature_dim=m.coupling_dim if through_semantics else 0,
        )
        source = self.syntax if through_syntax else self.semantics
        self.coupling = (
            HeadFeatures(source.encoder.output_dim, m.coupling_dim) if self.coupled else None
        )
        self.syntax_frozen = False
        self.grad_monitor = GradNormMonitor() if config.train.log_grad_norms else None

    # -- pieces ----------------------------------------------------------------------------
    def freeze_syntax(self) -> None:
        """Fix the syntactic parser (pipeline stage 2): no gradient, always in eval mode."""
        self.syntax_frozen = True
        for p in self.syntax.parameters():
            p.requires_grad_(False)
        self.syntax.eval()

    def train(self, mode: bool = True) -> Syn2Sem:
        super().train(mode)
        if self.syntax_frozen:
            self.syntax.eval()
        return self

    def syntactic(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(h, s)``: syntactic BiLSTM states and arc scores."""
        if self.syntax_frozen:
            with torch.no_grad():
                return self.syntax(batch.words, batch.pos, batch.lengths)
        return self.syntax(batch.words, batch.pos, batch.lengths)

    def decide_tree(self, s: Tensor, batch: Any) -> Tensor:
        """The tree ``z`` the semantic parser reads (hard or marginals, see the module table)."""
        lengths = batch.lengths
        if self.mode == "gold":
            if batch.heads is None:
                raise DataError("mode 'gold' needs gold syntactic trees in the data")
            return tree_arcs(batch.heads, lengths, s)
        if self.mode == "marginals":
            return structured_argmax(s, self.tree, estimator="marginals", lengths=lengths)
        if self.mode == "ste" and self.training and torch.is_grad_enabled():
            gamma = 1.0 if self.eta is None else self.eta  # train.eta scales the gradient
            s = scale_gradient(s, gamma)
            return structured_argmax(s, self.tree, estimator="ste", lengths=lengths)
        if self.mode == "spigot" and self.training and torch.is_grad_enabled():
            # the losses are means over the batch's words: "sentence" gives SPIGOT the
            # gradient of each sentence's summed loss, as in the original code
            scale = float(lengths.sum()) if self.eta_scale == "sentence" else 1.0
            return structured_argmax(
                s, self.tree, estimator="spigot", lengths=lengths, eta=self.eta, loss_scale=scale
            )
        if self.mode in ESTIMATORS and self.training and torch.is_grad_enabled():
            # any other registered estimator (ste-marginals, perturbed, imle, blackbox, ...),
            # with its default options
            return structured_argmax(s, self.tree, estimator=self.mode, lengths=lengths)
        # pipeline and joint (no gradient through z), and the hard modes at test time
        return structured_argmax(s, self.tree, estimator="pipeline", lengths=lengths)

    def head_features(self, h: Tensor, z: Tensor) -> Tensor:
        """``[B, n+1, coupling_dim]``: ``sum_j z[j, i] * W h_j`` for every word ``i``."""
        assert self.coupling is not None
        return self.coupling(h, z)

    def semantic(
        self, batch: Any, z: Tensor | None, h: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(r, sem)``: the semantic scorers' input ``[B, n+1, D']`` and arc scores
        ``[B, n+1, n+1]``, reading the tree ``z [B, n+1, n+1]`` (``None`` in mode ``none``)
        and, with ``model.coupling = "syntactic"``, the syntactic states ``h [B, n+1, D]``."""
        words, pos, lengths = batch.words, batch.pos, batch.lengths
        if z is None:
            return self.semantics(words, pos, lengths)
        if self.coupling_source == "syntactic":
            assert h is not None
            return self.semantics(words, pos, lengths, extra=self.head_features(h, z))
        r = self.semantics.encode(words, pos, lengths)
        return self.semantics.score(r, self.head_features(r, z))

    def _watch(self, s: Tensor, path: str, batch: Any) -> Tensor:
        """``s`` itself, or a view of it whose gradient the grad-norm monitor records."""
        if self.grad_monitor is None or not (self.training and torch.is_grad_enabled()):
            return s
        return self.grad_monitor.watch(s, path, self.tree.mask(s, batch.lengths))

    def _new_batch(self, batch: Any) -> None:
        if self.grad_monitor is not None and self.training and torch.is_grad_enabled():
            self.grad_monitor.new_batch(len(batch.lengths))

    def forward(self, batch: Any) -> dict[str, Tensor | None]:
        """All scores of a batch: ``h, s`` (syntax), ``z``, ``r, sem`` (semantics)."""
        h = s = z = None
        self._new_batch(batch)
        if self.coupled:
            h, s = self.syntactic(batch)
            z = self.decide_tree(self._watch(s, "semantic", batch), batch)
        r, sem = self.semantic(batch, z, h)
        return {"h": h, "s": s, "z": z, "r": r, "sem": sem}

    # -- losses ----------------------------------------------------------------------------
    def _syntactic_loss(self, h: Tensor, s: Tensor, batch: Any, kind: str) -> Tensor:
        if batch.heads is None:
            raise DataError("training the syntactic parser needs gold trees in the data")
        gold = tree_arcs(batch.heads, batch.lengths, s)
        loss = self.syntax.loss(s, gold, batch.lengths, kind).sum()
        if self.syntax.label_scorer is not None:
            if batch.deprels is None:
                raise DataError("model.syntactic_labels needs relation labels in the data")
            loss = loss + self.syntax.label_loss(h, batch.heads, batch.deprels, batch.mask)
        return loss

    def syntactic_loss(self, batch: Any, kind: str = "hinge") -> tuple[Tensor, dict[str, float]]:
        """Syntax-only training loss, per word of the batch."""
        self._new_batch(batch)
        h, s = self.syntax(batch.words, batch.pos, batch.lengths)
        s = self._watch(s, "syntactic", batch)
        loss = self._syntactic_loss(h, s, batch, kind) / batch.lengths.sum()
        return loss, {"syntax": float(loss.detach())}

    def loss(
        self, batch: Any, kind: str = "hinge", syntactic_weight: float = 1.0
    ) -> tuple[Tensor, dict[str, float]]:
        """Semantic loss (+ weighted syntactic loss in joint modes), per word of the batch."""
        if batch.arcs is None or batch.arc_labels is None:
            raise DataError("training the semantic parser needs semantic graphs in the data")
        out = self.forward(batch)
        n_words = batch.lengths.sum()
        arc_loss, label_loss = self.semantics.loss(
            out["r"], out["sem"], batch.arcs, batch.arc_labels, batch.lengths
        )
        loss = (arc_loss + label_loss) / n_words
        stats = {"semantics": float(loss.detach())}
        joint = self.coupled and not self.syntax_frozen and syntactic_weight > 0
        if joint:
            s = self._watch(out["s"], "syntactic", batch)
            syn = self._syntactic_loss(out["h"], s, batch, kind) / n_words
            loss = loss + syntactic_weight * syn
            stats["syntax"] = float(syn.detach())
        return loss, stats

    # -- prediction ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, Tensor | None]:
        """Predicted ``heads [B, n+1]`` (None in mode ``none``), ``deprels`` (ids or None),
        semantic ``arcs`` (0/1) and ``labels`` (ids) ``[B, n+1, n+1]``."""
        out = self.forward(batch)
        heads = deprels = None
        if out["s"] is not None:
            z = out["z"]
            if self.mode in ("marginals", "gold"):
                z = self.tree.argmax(out["s"], batch.lengths)
            heads = z.argmax(dim=1)
            deprels = self.syntax.predict_labels(out["h"], heads, batch.mask)
        arcs, labels = self.semantics.decode(out["r"], out["sem"], batch.lengths)
        return {"heads": heads, "deprels": deprels, "arcs": arcs, "labels": labels}


class Syn2SemTask:
    """Data, vocabularies and the :class:`Syn2Sem` model of one run.

    Build one from a config (:meth:`from_config`), train it (:meth:`fit`), or restore it from
    a checkpoint (:meth:`from_checkpoint`) to :meth:`evaluate` or :meth:`predict`.
    """

    name = "syn2sem"

    def __init__(
        self,
        config: Syn2SemConfig,
        vocabs: dict[str, Any],
        model: Syn2Sem,
    ) -> None:
        self.config = config
        self.vocabs = vocabs
        self.model = model
        self.glove_stats: Any = None

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def load_splits(config: Syn2SemConfig) -> Splits:
        """``{"train", "dev", "test"}`` sentences (``test`` may be empty) with the semantic
        graphs of ``data.target``; their ``report`` says what was skipped
        (:func:`spigot.models.syn2sem_data.load_splits`)."""
        return load_splits(config)

    @classmethod
    def from_config(cls, config: Syn2SemConfig, train: Sequence[Sentence]) -> Syn2SemTask:
        """Vocabularies from ``train`` and a freshly initialised model (seeded)."""
        config.validate()
        d = config.data
        if not train:
            raise DataError("the training data is empty")
        if config.mode != "none":
            missing = sum(s.heads is None for s in train)
            if missing:
                raise DataError(
                    f"mode {config.mode!r} trains a syntactic parser, but {missing} of "
                    f"{len(train)} training sentences have no syntactic tree (SDP files have "
                    "none); use CoNLL-U data or mode = 'none'"
                )
        missing = sum(s.arcs is None for s in train)
        if missing:
            raise DataError(
                f"{missing} of {len(train)} training sentences have no semantic graph "
                "(the DEPS column of CoNLL-U is empty)"
            )
        vocabs: dict[str, Any] = {
            "words": Vocab.from_sentences(
                train, "words", min_freq=d.word_min_freq, lower=d.lowercase
            ),
            "pos": Vocab.from_sentences(train, "pos"),
            "labels": LabelVocab.from_arcs(train),
            "deprels": LabelVocab.from_deprels(train),
        }
        if len(vocabs["labels"]) < 2:
            raise DataError("the training data has no semantic arcs (no labels to learn)")
        seed_everything(config.seed)
        pretrained, stats = None, None
        if d.glove:
            if not Path(d.glove).is_file():
                raise FileNotFoundError(f"GloVe file not found: {d.glove}")
            pretrained, stats = load_glove(d.glove, vocabs["words"], seed=config.seed)
            logger.info(
                "GloVe %s: %dd, %.1f%% of word types and %.1f%% of tokens covered",
                d.glove,
                stats.dim,
                100 * stats.type_coverage,
                100 * stats.token_coverage,
            )
        model = cls._build_model(config, vocabs, pretrained)
        task = cls(config, vocabs, model)
        task.glove_stats = stats
        return task

    @staticmethod
    def _build_model(
        config: Syn2SemConfig, vocabs: dict[str, Any], pretrained: Tensor | None = None
    ) -> Syn2Sem:
        set_threads(config.train.threads)
        return Syn2Sem(
            config,
            len(vocabs["words"]),
            len(vocabs["pos"]),
            len(vocabs["labels"]),
            len(vocabs["deprels"]),
            pretrained=pretrained,
        )

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """The checkpoint payload (config, vocabularies, weights, ``extra``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "task": self.name,
            "config": self.config.to_dict(),
            "vocabs": {k: v.to_dict() for k, v in self.vocabs.items()},
            "word_dim": int(self.model.syntax.encoder.word_emb.weight.shape[1]),
            "state_dict": self.model.state_dict(),
            **extra,
        }

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write the checkpoint atomically."""
        atomic_torch_save(self.checkpoint(**extra), path)

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> Syn2SemTask:
        """Rebuild the task from :meth:`checkpoint`'s payload (see ``load_checkpoint``)."""
        raw = payload["config"]
        if "coupling" not in raw.get("model", {}):  # written before model.coupling existed
            raw = {**raw, "model": {**raw.get("model", {}), "coupling": "syntactic"}}
        config = config_from_dict(raw, Syn2SemConfig)
        vocabs = {}
        for k, v in payload["vocabs"].items():
            vocabs[k] = (Vocab if v.get("type") == "Vocab" else LabelVocab).from_dict(v)
        config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, word_dim=payload.get("word_dim", 100)),
        )
        model = cls._build_model(config, vocabs)
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return cls(config, vocabs, model)

    def load_syntax(self, path: str | os.PathLike) -> None:
        """Copy the syntactic parser of the checkpoint at ``path`` into this model.

        The checkpoint must come from a run with the same word and POS vocabularies (the same
        training data and ``data`` settings) and the same syntactic parser sizes; anything
        else raises a :class:`ValueError` that says what differs.
        """
        payload = load_checkpoint(path)
        if payload.get("task") != self.name:
            raise ValueError(f"{path}: a {payload.get('task')!r} checkpoint, not {self.name!r}")
        for key in ("words", "pos"):
            theirs = payload["vocabs"].get(key)
            if theirs != self.vocabs[key].to_dict():
                raise ValueError(
                    f"{path}: its {key} vocabulary differs from this run's (train it on the "
                    "same training data with the same data.* settings)"
                )
        prefix = "syntax."
        state = {
            k[len(prefix) :]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)
        }
        if not state:
            raise ValueError(f"{path}: the checkpoint has no syntactic parser (mode 'none'?)")
        try:
            self.model.syntax.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: its syntactic parser does not fit this model.* configuration: {exc}"
            ) from None

    # -- batches ---------------------------------------------------------------------------
    def batches(self, sentences: Sequence[Sentence], *, train: bool) -> BucketIterator:
        """Length-bucketed batches; training batches carry label ids and reshuffle."""
        d = self.config.data
        labeled = self.config.model.syntactic_labels
        return BucketIterator(
            sentences,
            self.vocabs["words"],
            self.vocabs["pos"],
            deprel_vocab=self.vocabs["deprels"] if train and labeled else None,
            label_vocab=self.vocabs["labels"] if train else None,
            batch_size=d.batch_size if train else d.eval_batch_size,
            batch_tokens=(d.batch_tokens or None) if train else None,
            shuffle=train,
            seed=self.config.seed,
            max_length=d.max_length,
            on_too_long=d.on_too_long,  # type: ignore[arg-type]
        )

    def unknown_labels(self, sentences: Sequence[Sentence]) -> Counter[str]:
        """Gold semantic labels (not top arcs) absent from the training label vocabulary."""
        vocab = self.vocabs["labels"]
        return Counter(
            lab for s in sentences for h, _, lab in (s.arcs or ()) if h != 0 and lab not in vocab
        )

    def warn_unknown_labels(self, sentences: Sequence[Sentence], name: str) -> str | None:
        """Log (and return) a message if ``sentences`` have labels the model cannot predict."""
        unk = self.unknown_labels(sentences)
        if not unk:
            return None
        shown = ", ".join(f"{lab!r} ({c})" for lab, c in unk.most_common(5))
        more = f" and {len(unk) - 5} more" if len(unk) > 5 else ""
        msg = (
            f"{name}: {sum(unk.values())} gold arcs have {len(unk)} labels unseen in training "
            f"({shown}{more}); the model cannot predict them, so they count as errors"
        )
        logger.warning(msg)
        return msg

    # -- evaluation and prediction ---------------------------------------------------------
    def _run(
        self, sentences: Sequence[Sentence], progress: bool = False, desc: str = "eval"
    ) -> tuple[dict[int, dict[str, Any]], int]:
        """Predictions per dataset index, and the number of sentences skipped (too long)."""
        it = self.batches(sentences, train=False)
        if self.config.mode == "gold" and any(sentences[i].heads is None for i in it.kept):
            raise DataError("mode 'gold' reads gold trees, but some sentences have none")
        labels = self.vocabs["labels"].itos
        deprels = self.vocabs["deprels"].itos
        self.model.eval()
        out: dict[int, dict[str, Any]] = {}
        iterable: Any = it
        if progress:
            from tqdm.auto import tqdm

            iterable = tqdm(it, total=len(it), desc=desc, leave=False, dynamic_ncols=True)
        for batch in iterable:
            pred = self.model.predict(batch)
            arcs = pred["arcs"].nonzero().tolist()
            lab = pred["labels"]
            per: list[list[tuple[int, int, str]]] = [[] for _ in range(len(batch))]
            for b, h, m in arcs:
                per[b].append((h, m, labels[int(lab[b, h, m])]))
            heads = pred["heads"].tolist() if pred["heads"] is not None else None
            rels = pred["deprels"].tolist() if pred["deprels"] is not None else None
            for b, idx in enumerate(batch.indices):
                k = int(batch.lengths[b])
                out[idx] = {
                    "arcs": sorted(per[b], key=lambda a: (a[1], a[0])),
                    "heads": heads[b][1 : k + 1] if heads is not None else None,
                    "deprels": [deprels[r] for r in rels[b][1 : k + 1]] if rels else None,
                }
        return out, it.n_skipped

    def evaluate(
        self,
        sentences: Sequence[Sentence],
        *,
        semantics: bool = True,
        progress: bool = False,
        exclude_pos: Sequence[str] = (),
        records: list[dict[str, Any]] | None = None,
        split: str = "",
    ) -> dict[str, float]:
        """SDP labeled/unlabeled P/R/F1 and exact match, UAS/LAS (fractions in [0, 1]).

        Sentences without a gold graph (tree) do not count for the semantic (syntactic)
        scores; ``n_skipped`` counts sentences dropped for being too long. A ``records`` list
        receives the counts of every scored sentence, in dataset order, tagged with ``split``
        (:func:`spigot.models.syn2sem_outputs.sentence_record`).
        """
        preds, n_skipped = self._run(sentences, progress)
        sem, syn = SemanticScorer(), AttachmentScorer(exclude_pos)
        labeled = self.model.syntax.label_scorer is not None
        if records is not None:
            records.extend(
                sentence_record(
                    sentences[i],
                    p["arcs"],
                    p["heads"],
                    split=split,
                    index=i,
                    exclude_pos=exclude_pos,
                )
                for i, p in sorted(preds.items())
                if sentences[i].arcs is not None
            )
        for i, p in preds.items():
            gold = sentences[i]
            if semantics and gold.arcs is not None:
                sem.update(gold.arcs, p["arcs"])
            if gold.heads is not None and p["heads"] is not None:
                syn.update(
                    gold.heads,
                    p["heads"],
                    gold.deprels if labeled else None,
                    p["deprels"] if labeled else None,
                    gold.pos,
                )
        res: dict[str, float] = {}
        if semantics and sem.n_sentences:
            res.update({k: v for k, v in sem.compute().items() if not k.startswith("n_")})
        if syn.n_sentences:
            a = syn.compute()
            res.update({"uas": a["uas"], "las": a["las"]})
        else:
            res.update({"uas": float("nan"), "las": float("nan")})
        res["n_sentences"] = len(preds)
        res["n_skipped"] = n_skipped
        return res

    def predict(
        self, sentences: Sequence[Sentence], *, sdp: bool = False, progress: bool = False
    ) -> list[Sentence]:
        """Copies of ``sentences`` with predicted heads (CoNLL-U) and semantic arcs.

        With ``sdp=True`` the copies keep no tree (SDP has none) and their predicate flags are
        recomputed from the predicted arcs. Sentences skipped for being too long keep no
        predictions (``heads``/``arcs`` ``None``).
        """
        preds, n_skipped = self._run(sentences, progress, desc="predict")
        if n_skipped:
            logger.warning(
                "%d sentences longer than data.max_length=%d were not parsed",
                n_skipped,
                self.config.data.max_length,
            )
        out = []
        for i, s in enumerate(sentences):
            p = preds.get(i)
            extra = dict(s.extra)
            if sdp:
                extra["pred"] = ["-"] * len(s)
                out.append(dataclasses.replace(s, arcs=p["arcs"] if p else None, extra=extra))
                continue
            heads = p["heads"] if p else None
            rels = (p["deprels"] or ["_"] * len(s)) if heads is not None else None
            out.append(
                dataclasses.replace(
                    s, heads=heads, deprels=rels, arcs=p["arcs"] if p else None, extra=extra
                )
            )
        return out

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        splits: dict[str, list[Sentence]],
        out_dir: str | os.PathLike,
        *,
        progress: bool | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Train with the config's mode; write the run directory; return the final results.

        The run directory gets ``config.toml``, ``metrics.jsonl`` (one record per epoch plus
        the final scores, and a ``data`` record with what reading the files skipped),
        ``best.pt`` (best dev labeled F1, written atomically), ``syntax.pt`` (the syntactic
        parser after the syntactic stage, if one ran), ``results.json`` and
        ``sentences.jsonl.gz`` (per-sentence counts of the dev and test scores of the best
        model, :mod:`spigot.models.syn2sem_outputs`). While the run is in progress,
        ``last.pt`` holds everything needed to continue it after a crash or a kill (written
        atomically after every epoch and removed at the end).

        Args:
            splits: ``{"train", "dev", "test"}`` sentences (a
                :class:`~spigot.models.syn2sem_data.Splits` adds its report to the log).
            out_dir: the run directory.
            progress: progress bars (default: ``train.progress``).
            resume: continue the interrupted run in ``out_dir`` from its ``last.pt``, which
                must have been written with the same config; the result is the same as if the
                run had never stopped.
        """
        cfg, t = self.config, self.config.train
        progress = t.progress if progress is None else progress
        out = Path(out_dir)
        last_path = out / "last.pt"
        state: dict[str, Any] | None = None
        if resume:
            state = self.resume_state(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dump_toml(cfg), out / "config.toml")
        log = JsonlLog(out / "metrics.jsonl", append=state is not None)
        seed_everything(cfg.seed)
        train_it = self.batches(splits["train"], train=True)
        if train_it.n_skipped:
            logger.warning(
                "skipped %d training sentences longer than data.max_length=%d",
                train_it.n_skipped,
                cfg.data.max_length,
            )
        if not train_it.kept:
            raise DataError("no training sentence is left after the length filter")
        for name in ("dev", "test"):
            self.warn_unknown_labels(splits.get(name) or [], name)
        dev = splits["dev"]
        n_params = sum(p.numel() for p in self.model.parameters())
        log.write(
            {
                "event": "start",
                "resumed": state is not None,
                "task": self.name,
                "mode": cfg.mode,
                "seed": cfg.seed,
                "n_train": len(train_it.kept),
                "n_dev": len(dev),
                "n_test": len(splits.get("test") or []),
                "n_skipped_train": train_it.n_skipped,
                "n_parameters": n_params,
                "vocab_sizes": {k: len(v) for k, v in self.vocabs.items()},
            }
        )
        report = getattr(splits, "report", None)
        if report:
            log.write({"event": "data", **report})
        trainer = Trainer(
            self.model, lr=t.lr, clip=t.clip, patience=t.patience, log=log, progress=progress
        )
        history: list[Any] = []
        start = time.perf_counter()
        phase = "semantics" if cfg.mode in ("pipeline", "none") else "joint"
        # a run resumed in its second stage has its first stage's history in the state
        done_before: list[dict[str, Any]] = state["stage_history"] if state else []
        resume_stage = state["trainer"]["phase"] if state else None
        elapsed_before = state["elapsed"] if state else 0.0

        monitor = self.model.grad_monitor

        def on_epoch(stage_history: list[Any]) -> Callable[[dict[str, Any]], None]:
            def save(trainer_state: dict[str, Any]) -> None:
                if monitor is not None:
                    e = {k: trainer_state[k] for k in ("phase", "epoch")}
                    log.write({"event": "grad_norms", **e, **monitor.summary()})
                payload = {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "task": self.name,
                    "kind": "resume",
                    "config": cfg.to_dict(),
                    "trainer": trainer_state,
                    "stage_history": [dataclasses.asdict(e) for e in stage_history],
                    "elapsed": elapsed_before + time.perf_counter() - start,
                }
                atomic_torch_save(payload, last_path)

            return save

        if t.init_syntax and cfg.mode != "none" and state is None:
            self.load_syntax(t.init_syntax)
            log.write({"event": "init_syntax", "path": t.init_syntax})
        # stage 1: syntax alone (pipeline stage 1, or pre-training of the joint modes)
        n_syntax = cfg.syntactic_epochs()
        if resume_stage == phase:  # the syntactic stage had finished
            history.extend(EpochStats(**e) for e in done_before)
        elif n_syntax > 0:
            syntax_trainer = Trainer(
                self.model,
                lr=t.lr,
                clip=t.clip,
                patience=t.pretrain_patience,
                log=log,
                progress=progress,
            )
            res = syntax_trainer.fit(
                train_it,
                lambda b: self.model.syntactic_loss(b, t.syntactic_loss),
                lambda: self.evaluate(dev, semantics=False),
                epochs=n_syntax,
                select="uas",
                phase="syntax",
                parameters=self.model.syntax.parameters(),
                on_epoch=on_epoch([]),
                resume=state["trainer"] if state else None,
            )
            history.extend(res.history)
            # the best syntactic parser, reusable by other runs through train.init_syntax
            self.save(out / "syntax.pt", epoch=res.best_epoch, phase="syntax", dev=res.best_metrics)
            log.write({"event": "syntax_stage", **syntax_summary(res.history, n_syntax)})
        if cfg.mode == "pipeline":
            self.model.freeze_syntax()
        # stage 2: semantics (joint with syntax except in pipeline / none / gold-without-loss)
        best_path = out / "best.pt"

        def on_best(epoch: int, metrics: Any) -> None:
            self.save(best_path, epoch=epoch, phase=phase, dev=dict(metrics))

        res = trainer.fit(
            train_it,
            lambda b: self.model.loss(b, t.syntactic_loss, t.syntactic_weight),
            lambda: self.evaluate(dev),
            epochs=t.epochs,
            select="lf",
            phase=phase,
            on_best=on_best,
            on_epoch=on_epoch(list(history)),
            resume=state["trainer"] if resume_stage == phase else None,
        )
        history.extend(res.history)
        if res.best_epoch == 0:  # no semantic epoch ran: save the model as it is
            on_best(0, {})
        train_seconds = elapsed_before + time.perf_counter() - start
        per_sentence: list[dict[str, Any]] = []  # counts of the dev-selected model
        final = {"dev": self.evaluate(dev, records=per_sentence, split="dev")}
        if splits.get("test"):
            final["test"] = self.evaluate(splits["test"], records=per_sentence, split="test")
        write_sentences(per_sentence, out / SENTENCES_FILE)
        epoch_seconds = [e.seconds for e in history]
        n_sent = sum(e.sentences for e in history)
        results = {
            "task": self.name,
            "mode": cfg.mode,
            "seed": cfg.seed,
            "best_epoch": res.best_epoch,
            "stopped_early": res.stopped_early,
            "dev": final["dev"],
            "test": final.get("test"),
            "epochs_run": len(history),
            "syntax_stage": syntax_summary(history, n_syntax) if n_syntax > 0 else None,
            "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds) if history else 0.0,
            "sentences_per_second": n_sent / sum(epoch_seconds) if history else 0.0,
            "train_seconds": train_seconds,
            "curve": [
                {"phase": e.phase, "epoch": e.epoch, "loss": e.loss, **e.metrics} for e in history
            ],
            "checkpoint": str(best_path),
            "sentences": SENTENCES_FILE,
            "data": summary(report or {}),
        }
        log.write({"event": "final", **{k: v for k, v in results.items() if k != "curve"}})
        atomic_write_text(json.dumps(_finite(results), indent=2) + "\n", out / "results.json")
        last_path.unlink(missing_ok=True)
        return results

    def resume_state(self, out_dir: str | os.PathLike) -> dict[str, Any]:
        """The ``last.pt`` payload of the interrupted run in ``out_dir``.

        Raises:
            FileNotFoundError: there is no ``last.pt`` (the run finished or never started).
            ValueError: it was written with another configuration.
        """
        path = Path(out_dir) / "last.pt"
        if not path.is_file():
            done = (Path(out_dir) / "results.json").is_file()
            raise FileNotFoundError(
                f"nothing to resume in {out_dir}: no last.pt"
                + (" (the run has finished: see results.json)" if done else "")
            )
        payload = load_checkpoint(path)
        if payload.get("kind") != "resume":
            raise ValueError(f"{path} is not a resume checkpoint")
        ours, theirs = _flat(self.config.to_dict()), _flat(payload["config"])
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            raise ValueError(
                f"cannot resume {out_dir}: it was started with other settings "
                f"({', '.join(diff)} differ)"
            )
        return payload


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _finite(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x
