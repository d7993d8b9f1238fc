"""Pipeline 2's task: the data, vocabularies and :class:`~spigot.pipelines.sem2sent.model.
Sem2Sent` model of one run, with evaluation, prediction and checkpoints (training:
:mod:`spigot.pipelines.sem2sent.fit`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spigot.config import config_from_dict
from spigot.data import BucketIterator, LabelVocab, Sentence, Vocab, load_glove
from spigot.metrics import SemanticScorer
from spigot.pipelines.base import PipelineTask
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.pipelines.sem2sent.data import Sem2SentData, SentimentSentence, load_splits
from spigot.pipelines.sem2sent.model import Sem2Sent
from spigot.training import DataError, load_checkpoint, seed_everything, set_threads

__all__ = ["Sem2SentTask"]

logger = logging.getLogger("spigot")


class Sem2SentTask(PipelineTask):
    """Data, vocabularies and the :class:`Sem2Sent` model of one run.

    Build one from a config and its data (:meth:`from_splits`), train it (:meth:`fit`), or
    restore it from a checkpoint (:meth:`from_checkpoint`) to :meth:`evaluate` or
    :meth:`predict`.
    """

    name = "sem2sent"
    run_files = (
        "config.toml",
        "metrics.jsonl",
        "best.pt",
        "last.pt",
        "results.json",
        "parser.pt",
        "sentences.jsonl.gz",
    )

    def __init__(self, config: Sem2SentConfig, vocabs: dict[str, Any], model: Sem2Sent) -> None:
        self.config = config
        self.vocabs = vocabs
        self.model = model

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def load_splits(config: Sem2SentConfig) -> Sem2SentData:
        """The sentiment splits and the parser's data (:func:`.data.load_splits`)."""
        return load_splits(config)

    @classmethod
    def from_splits(cls, config: Sem2SentConfig, splits: Sem2SentData) -> Sem2SentTask:
        """Vocabularies from the sentiment and parser training data, and a fresh model."""
        return cls.from_config(config, splits["train"], splits.parser["train"])

    @classmethod
    def from_config(
        cls,
        config: Sem2SentConfig,
        train: Sequence[SentimentSentence],
        parser_train: Sequence[Sentence] = (),
    ) -> Sem2SentTask:
        """Vocabularies from ``train`` (and ``parser_train``) and a freshly initialised model
        (seeded). The parser's labels come from ``parser_train``, or from ``train``'s gold
        graphs without it."""
        config.validate()
        d = config.data
        if not train:
            raise DataError("the sentiment training data is empty")
        bad = sorted({s.label for s in train} - {0, 1})
        if bad:
            raise DataError(f"sentiment labels must be 0 or 1, got {bad}")
        graphs = list(parser_train) or [s for s in train if s.arcs is not None]
        if config.uses_parser() and not any(s.arcs for s in graphs):
            raise DataError(f"mode {config.mode!r} needs the parser's graphs: none were given")
        vocabs: dict[str, Any] = {
            "words": Vocab.from_sentences(
                [*train, *parser_train], "words", min_freq=d.word_min_freq, lower=d.lowercase
            ),
            "pos": Vocab.from_sentences(train, "pos"),
            "labels": LabelVocab.from_arcs([*graphs, *(s for s in train if s.arcs)]),
        }
        if len(vocabs["labels"]) < 2:
            vocabs["labels"] = LabelVocab.from_arcs([Sentence(words=["x"], arcs=[(0, 1, "ARG")])])
        seed_everything(config.seed)
        pretrained = None
        if d.glove:
            from spigot.data.download.paths import resolve_data_path

            glove = resolve_data_path(d.glove)
            if not glove.is_file():
                raise FileNotFoundError(f"GloVe file not found: {glove}")
            pretrained, _ = load_glove(glove, vocabs["words"], seed=config.seed)
        return cls(config, vocabs, cls._build_model(config, vocabs, pretrained))

    @staticmethod
    def _build_model(
        config: Sem2SentConfig, vocabs: dict[str, Any], pretrained: Any = None
    ) -> Sem2Sent:
        set_threads(config.train.threads)
        return Sem2Sent(config, len(vocabs["words"]), len(vocabs["labels"]), pretrained)

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        """The word embedding size (GloVe's when ``data.glove`` was set)."""
        return {"word_dim": int(self.model.encoder.word_emb.weight.shape[1])}

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> Sem2SentTask:
        """Rebuild the task from :meth:`checkpoint`'s payload (see ``load_checkpoint``)."""
        config = config_from_dict(payload["config"], Sem2SentConfig)
        vocabs = {
            k: (Vocab if v.get("type") == "Vocab" else LabelVocab).from_dict(v)
            for k, v in payload["vocabs"].items()
        }
        config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, word_dim=payload.get("word_dim", 100)),
        )
        model = cls._build_model(config, vocabs)
        model.load_state_dict(payload["state_dict"])
        return cls(config, vocabs, model)

    def load_parser(self, path: str | os.PathLike) -> None:
        """Copy the semantic parser of the checkpoint at ``path`` into this model; it must come
        from a run with the same vocabularies and parser sizes (else a ``ValueError`` says
        what differs)."""
        if self.model.parser is None:
            raise ValueError(f"mode {self.config.mode!r} has no parser to initialise")
        payload = load_checkpoint(path)
        if payload.get("task") != self.name:
            raise ValueError(f"{path}: a {payload.get('task')!r} checkpoint, not {self.name!r}")
        for key in ("words", "labels"):
            if payload["vocabs"].get(key) != self.vocabs[key].to_dict():
                raise ValueError(
                    f"{path}: its {key} vocabulary differs from this run's (the same data and "
                    "data.* settings are needed)"
                )
        prefix = "parser."
        state = {
            k[len(prefix) :]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)
        }
        if not state:
            raise ValueError(f"{path}: the checkpoint has no parser")
        ours, theirs = self.config.model, config_from_dict(payload["config"]).model
        diff = [
            f"model.{k}"
            for k in ("parser_hidden", "parser_layers", "mlp_dim", "label_mlp_dim")
            if getattr(ours, k) != getattr(theirs, k)
        ]
        if diff:
            raise ValueError(f"{path}: its parser differs in {', '.join(diff)}")
        self.model.parser.load_state_dict(state)

    # -- batches ---------------------------------------------------------------------------
    def batches(self, sentences: Sequence[Sentence], *, train: bool, parser: bool = False) -> Any:
        """Length-bucketed batches of sentiment sentences (or of the parser's sentences, with
        ``parser=True``); training batches reshuffle every epoch."""
        d = self.config.data
        return BucketIterator(
            sentences,
            self.vocabs["words"],
            self.vocabs["pos"],
            label_vocab=self.vocabs["labels"] if (parser or self.config.mode == "gold") else None,
            batch_size=d.batch_size if train else d.eval_batch_size,
            shuffle=train,
            seed=self.config.seed + (7919 if parser else 0),
            max_length=max(d.max_length, max((len(s) for s in sentences), default=1)),
            on_too_long="skip",
        )

    @staticmethod
    def labels_of(batch: Any) -> torch.Tensor:
        """``[B]`` gold sentiment labels of a batch of :class:`SentimentSentence`."""
        return torch.tensor([s.label for s in batch.sentences], device=batch.words.device)

    # -- evaluation and prediction ---------------------------------------------------------
    @torch.no_grad()
    def _predict(self, sentences: Sequence[SentimentSentence]) -> dict[int, int]:
        self.model.eval()
        out: dict[int, int] = {}
        for batch in self.batches(sentences, train=False):
            pred = self.model(batch)["logits"].argmax(-1).tolist()
            out.update(zip(batch.indices, pred, strict=True))
        return out

    def evaluate(
        self,
        sentences: Sequence[SentimentSentence],
        *,
        records: list[dict[str, Any]] | None = None,
        split: str = "",
        progress: bool = False,
    ) -> dict[str, float]:
        """Accuracy (a fraction) on labelled sentences; ``records`` receives one record per
        sentence (``split``, ``index``, ``gold``, ``pred``, ``correct``) in dataset order."""
        del progress  # evaluation is fast
        preds = self._predict(sentences)
        correct = 0
        for i, s in enumerate(sentences):
            ok = int(preds[i] == s.label)
            correct += ok
            if records is not None:
                rec = {"split": split, "index": i, "id": s.sent_id, "gold": s.label}
                records.append({**rec, "pred": preds[i], "correct": ok})
        return {"acc": correct / max(len(sentences), 1), "n_sentences": len(sentences)}

    @torch.no_grad()
    def evaluate_parser(self, sentences: Sequence[Sentence]) -> dict[str, float]:
        """The parser's labeled/unlabeled P/R/F1 on sentences with gold graphs (fractions)."""
        if self.model.parser is None:
            return {}
        self.model.eval()
        scorer, labels = SemanticScorer(), self.vocabs["labels"].itos
        for batch in self.batches(sentences, train=False):
            x, s = self.model.parser(batch.words, batch.pos, batch.lengths)
            arcs, lab = self.model.parser.decode(x, s, batch.lengths)
            per: list[list[tuple[int, int, str]]] = [[] for _ in range(len(batch))]
            for b, h, m in arcs.nonzero().tolist():
                per[b].append((h, m, labels[int(lab[b, h, m])]))
            for b, idx in enumerate(batch.indices):
                gold = sentences[idx].arcs
                if gold is not None:
                    scorer.update(gold, per[b])
        res = scorer.compute()
        return {k: v for k, v in res.items() if not k.startswith("n_")}

    def rule_accuracy(self, sentences: Sequence[SentimentSentence]) -> dict[str, float]:
        """On the synthetic task, ``{"rule_acc": ...}``: how often the task's label rule
        (:func:`spigot.pipelines.sem2sent.synthetic.graph_label`) applied to the parser's argmax
        graph gives the gold label: the accuracy the parser's graph allows a classifier that
        reads it perfectly (the gold graph gives 1). ``{}`` on other data or without a parser.
        """
        if self.config.data.source != "synthetic" or self.model.parser is None or not sentences:
            return {}
        from spigot.pipelines.sem2sent.synthetic import graph_label

        preds = self.predict(sentences)
        hits = sum(
            graph_label(s.words, p.arcs or []) == s.label
            for s, p in zip(sentences, preds, strict=True)
        )
        return {"rule_acc": hits / len(sentences)}

    @torch.no_grad()
    def predict(self, sentences: Sequence[SentimentSentence]) -> list[SentimentSentence]:
        """Copies of ``sentences`` with the predicted ``label`` and, in the modes that read a
        parser's graph, that parser's argmax graph in ``arcs`` (``None`` otherwise)."""
        preds = self._predict(sentences)
        graphs: dict[int, list[tuple[int, int, str]] | None] = {}
        m = self.model
        if m.parser is not None:
            labels = self.vocabs["labels"].itos
            m.eval()
            for batch in self.batches(sentences, train=False):
                _, _, S = m.parse(batch)
                z = m.graph.argmax(S, batch.lengths)
                per: list[list[tuple[int, int, str]]] = [[] for _ in range(len(batch))]
                for b, h, i, lab in z.nonzero().tolist():
                    per[b].append((h, i, labels[lab + 1]))
                graphs.update(zip(batch.indices, per, strict=True))
        return [
            dataclasses.replace(s, label=preds[i], arcs=graphs.get(i))
            for i, s in enumerate(sentences)
        ]

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        splits: Sem2SentData,
        out_dir: str | os.PathLike,
        *,
        progress: bool | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Train with the config's mode and write the run directory
        (:func:`spigot.pipelines.sem2sent.fit.fit`, which documents its files)."""
        from spigot.pipelines.sem2sent.fit import fit

        return fit(self, splits, out_dir, progress=progress, resume=resume)

    # -- the command line's data and outputs -----------------------------------------------
    def read_data(self, spec: str) -> list[SentimentSentence]:
        """The sentences of ``spigot evaluate/predict --data SPEC``: an SST tree file (binary
        labels) or ``synthetic:train|dev|test`` (this config's synthetic data)."""
        if spec.startswith("synthetic:"):
            split = spec.split(":", 1)[1]
            if split not in ("train", "dev", "test"):
                raise ValueError(f"--data {spec!r}: use synthetic:train, :dev or :test")
            cfg = self.config
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="synthetic"))
            return list(load_splits(cfg)[split])
        from spigot.data import read_sst_trees
        from spigot.pipelines.sem2sent.data import as_sentence

        return [
            as_sentence(e.tokens, int(e.label), None, f"{Path(spec).name}-{i}")
            for i, e in enumerate(read_sst_trees(spec, binary=True))
        ]

    def warn_unknown_labels(self, sentences: Sequence[Any], name: str) -> str | None:
        """Nothing to warn about: the two classes are always known."""
        return None

    def write_predictions(
        self,
        sentences: Sequence[SentimentSentence],
        spec: str,
        out: Path,
        *,
        progress: bool = False,
    ) -> str:
        """Write one ``label<TAB>sentence`` line per sentence to ``out``; return a report."""
        preds = self.predict(sentences)
        text = "".join(f"{s.label}\t{' '.join(s.words)}\n" for s in preds)
        out.write_text(text, encoding="utf-8")
        return f"wrote {len(preds)} predicted labels to {out}"
