"""Pipeline 1's task: the data, vocabularies and :class:`~spigot.pipelines.syn2sem.model.
Syn2Sem` model of one run, with evaluation, prediction and checkpoints (training:
:mod:`spigot.pipelines.syn2sem.fit`). The command line (:mod:`spigot.cli`) and the experiment
runner (:mod:`spigot.pipelines.syn2sem.experiment`) use it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from spigot.config import config_from_dict
from spigot.data import BucketIterator, LabelVocab, Sentence, Vocab, load_glove
from spigot.metrics import AttachmentScorer, SemanticScorer
from spigot.pipelines.base import PipelineTask
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.pipelines.syn2sem.data import Splits, is_sdp_path, load_splits, read_corpus
from spigot.pipelines.syn2sem.model import Syn2Sem
from spigot.pipelines.syn2sem.outputs import sentence_record
from spigot.training import DataError, load_checkpoint, seed_everything, set_threads

__all__ = ["Syn2SemTask"]

logger = logging.getLogger("spigot")


class Syn2SemTask(PipelineTask):
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
        (:func:`spigot.pipelines.syn2sem.data.load_splits`)."""
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
            from spigot.data.download.paths import resolve_data_path

            glove = resolve_data_path(d.glove)
            if not glove.is_file():
                raise FileNotFoundError(f"GloVe file not found: {glove}")
            pretrained, stats = load_glove(glove, vocabs["words"], seed=config.seed)
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
    def checkpoint_extras(self) -> dict[str, Any]:
        """The word embedding size (GloVe's when ``data.glove`` was set)."""
        return {"word_dim": int(self.model.syntax.encoder.word_emb.weight.shape[1])}

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> Syn2SemTask:
        """Rebuild the task from :meth:`checkpoint`'s payload (see ``load_checkpoint``)."""
        if payload.get("kind") == "resume" or "state_dict" not in payload:
            raise ValueError(
                "not a model checkpoint (a last.pt resume checkpoint?): use a best.pt "
                "(spigot.pipelines.base.model_checkpoint checks a file)"
            )
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
        else raises a :class:`ValueError` that says what differs (the config keys, with their
        values in the checkpoint and here).
        """
        payload = load_checkpoint(path)
        if payload.get("kind") == "resume":
            raise ValueError(
                f"{path}: a resume checkpoint (last.pt), not a model: give the syntax.pt or "
                "best.pt of a finished run"
            )
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
        # the settings that shape the syntactic parser's weights
        theirs_m = payload.get("config", {}).get("model", {})
        ours_m = dataclasses.asdict(self.config.model)
        values = {
            "model.word_dim": (
                payload.get("word_dim", theirs_m.get("word_dim")),
                int(self.model.syntax.encoder.word_emb.weight.shape[1]),
            )
        }
        keys = ["pos_dim", "lstm_hidden", "lstm_layers", "mlp_dim", "syn_scorer"]
        keys += ["syntactic_labels"]
        if ours_m["syntactic_labels"] and theirs_m.get("syntactic_labels"):
            keys.append("label_mlp_dim")
        for k in keys:
            values[f"model.{k}"] = (theirs_m.get(k), ours_m[k])
        diff = [f"{k} is {a!r} there and {b!r} here" for k, (a, b) in values.items() if a != b]
        if not diff and ours_m["syntactic_labels"]:
            if payload["vocabs"].get("deprels") != self.vocabs["deprels"].to_dict():
                diff.append("the syntactic relation (deprels) vocabulary differs")
        if diff:
            raise ValueError(
                f"{path}: its syntactic parser does not fit this model.* configuration: "
                + "; ".join(diff)
            )
        try:
            self.model.syntax.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(
                f"{path}: its syntactic parser does not fit this model.* configuration: {first}"
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
        (:func:`spigot.pipelines.syn2sem.outputs.sentence_record`).
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
        """Train with the config's mode and write the run directory
        (:func:`spigot.pipelines.syn2sem.fit.fit`, which documents its files)."""
        from spigot.pipelines.syn2sem.fit import fit

        return fit(self, splits, out_dir, progress=progress, resume=resume)

    # -- the command line's data and outputs -----------------------------------------------
    def read_data(self, spec: str) -> list[Sentence]:
        """The sentences of ``spigot evaluate/predict --data SPEC``: a CoNLL-U or SDP file, or
        ``synthetic:train|dev|test`` (this config's synthetic treebank)."""
        if spec.startswith("synthetic:"):
            split = spec.split(":", 1)[1]
            if split not in ("train", "dev", "test"):
                raise ValueError(
                    f"--data {spec!r}: use synthetic:train, synthetic:dev or synthetic:test"
                )
            cfg = self.config
            if cfg.data.source != "synthetic":
                cfg = dataclasses.replace(
                    cfg, data=dataclasses.replace(cfg.data, source="synthetic")
                )
            sents = self.load_splits(cfg)[split]
            if not sents:
                raise ValueError(f"--data {spec!r}: the split is empty in this config")
            return sents
        return read_corpus(spec, self.config.data)

    def write_predictions(
        self, sentences: Sequence[Sentence], spec: str, out: Path, *, progress: bool = False
    ) -> str:
        """Parse ``sentences`` (read from ``spec``) and write them to ``out`` in the format of
        the input (SDP for ``.sdp`` files, else CoNLL-U); return a one-line report.

        A CoNLL-U input file is copied line by line with the predicted ``HEAD``, ``DEPREL``
        and ``DEPS`` spliced into its word lines, so that its comments (in their order),
        multiword-token lines and empty nodes are kept (:mod:`spigot.data.conllu_splice`).
        ``out`` is written atomically.
        """
        from spigot.data import format_conllu, format_sdp
        from spigot.data._text import iter_file_lines
        from spigot.data.conllu_splice import splice_conllu
        from spigot.training import atomic_write_text

        sdp = is_sdp_path(spec)
        preds = self.predict(sentences, sdp=sdp, progress=progress)
        if sdp:
            text = format_sdp(preds)
        elif spec.startswith("synthetic:"):
            text = format_conllu(preds)
        else:
            text = splice_conllu(iter_file_lines(spec), preds, source=spec)
        atomic_write_text(text, out)
        return f"wrote {len(preds)} sentences to {out} ({'SDP' if sdp else 'CoNLL-U'})"
