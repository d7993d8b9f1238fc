"""Data of pipeline 1: the splits with their semantic target, and what reading them skipped.

``data.target`` (:class:`spigot.config.DataConfig`) chooses the semantic graphs:

* ``"enhanced"``: the graphs the files hold, the enhanced graph (DEPS) of CoNLL-U files, without
  function-word edges if ``data.drop_function_labels``, or the graph of ``.sdp`` files;
* ``"propbank"``: the PropBank predicate-argument graphs of UD English EWT
  (:func:`spigot.data.attach_propbank`, the rules of :func:`spigot.data.read_propbank_ewt`). The
  archive ``data.propbank`` is read once for all splits; sentences that do not align are skipped
  and counted by reason.

:func:`load_splits` returns the splits as a :class:`Splits` mapping whose :attr:`Splits.report`
says, per split, how many sentences were read, kept and skipped and why;
:meth:`spigot.pipelines.syn2sem.task.Syn2SemTask.fit` writes it to the run's log (a ``data`` record)
and ``results.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spigot.data import (
    PropBankStats,
    ReadStats,
    Sentence,
    attach_propbank,
    read_conllu,
    read_propbank,
    read_sdp,
    synthetic_splits,
)
from spigot.data.download.paths import resolve_data_path
from spigot.data.propbank import PropBankIndex
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.training import DataError

__all__ = ["GENRES", "Splits", "genre", "is_sdp_path", "load_splits", "read_corpus", "summary"]

GENRES = ("answers", "email", "newsgroup", "reviews", "weblog")
"""The five genres of UD English EWT (the prefix of each ``sent_id``)."""


class Splits(dict):
    """``{"train", "dev", "test"}`` sentence lists (``test`` may be empty), plus a report.

    Attributes:
        report: ``{"target": ..., "splits": {name: {...}}}``; per split, the file, the
            sentences read and kept, and the skipped ones by reason with their ids (empty for
            the synthetic treebank).
    """

    def __init__(self, splits: dict[str, list[Sentence]], report: dict[str, Any] | None = None):
        super().__init__(splits)
        self.report: dict[str, Any] = report or {}


def is_sdp_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an SDP 2015 file (``.sdp`` or ``.sdp.gz``)."""
    return str(path).lower().removesuffix(".gz").endswith(".sdp")


def genre(sent_id: str | None) -> str | None:
    """The genre of a UD EWT sentence: its ``sent_id`` up to the first ``-``
    (``answers``, ``email``, ``newsgroup``, ``reviews`` or ``weblog``); ``None`` without one."""
    if not sent_id or "-" not in sent_id:
        return None
    return sent_id.split("-", 1)[0]


def read_corpus(
    path: str | os.PathLike,
    data: Any,
    *,
    propbank_index: PropBankIndex | None = None,
    report: dict[str, Any] | None = None,
) -> list[Sentence]:
    """Read a ``.conllu``/``.conllu.gz`` or ``.sdp`` file with the options of ``data``.

    Args:
        path: the file.
        data: a :class:`spigot.config.DataConfig` (``target``, ``propbank``,
            ``drop_function_labels``, ``on_invalid_tree``).
        propbank_index: with ``data.target = "propbank"``, the index from
            :func:`spigot.data.read_propbank` (read from ``data.propbank`` if ``None``).
        report: a dict that receives what was read, kept and skipped (see :class:`Splits`).

    Raises:
        FileNotFoundError: no such file.
        DataError: no usable sentence, or a PropBank target asked of an SDP file.
    """
    p = resolve_data_path(path)
    if not p.is_file():
        hint = "" if p.is_absolute() else f" (relative paths are resolved against {Path.cwd()})"
        raise FileNotFoundError(f"data file not found: {p}{hint}")
    target = getattr(data, "target", "enhanced")
    rep: dict[str, Any] = report if report is not None else {}
    rep["file"] = str(p)
    if is_sdp_path(p):
        if target == "propbank":
            raise DataError(f"{p}: data.target = 'propbank' reads UD EWT CoNLL-U files, not SDP")
        sents = read_sdp(p)
        rep.update(sentences=len(sents), kept=len(sents), skipped={}, skipped_ids=[])
    else:
        rs = ReadStats()
        sents = read_conllu(
            p,
            drop_function_labels=data.drop_function_labels,
            on_invalid_tree=data.on_invalid_tree,
            stats=rs,
        )
        skipped_ids: list[tuple[str | None, str]] = [(i, "invalid tree") for i, _ in rs.skipped]
        if target == "propbank":
            index = propbank_index
            if index is None:
                index = read_propbank(resolve_data_path(data.propbank))
            st = PropBankStats()
            sents = attach_propbank(sents, index, stats=st, source=str(p))
            skipped_ids += st.skipped_ids
            rep.update(arcs=st.arcs, words=st.tokens)
        skipped: dict[str, int] = {}
        for _, reason in skipped_ids:
            skipped[reason] = skipped.get(reason, 0) + 1
        rep.update(
            sentences=rs.n_sentences + rs.n_skipped_invalid,
            kept=len(sents),
            skipped=dict(sorted(skipped.items())),
            skipped_ids=[list(x) for x in skipped_ids],
        )
    if not sents:
        raise DataError(f"{p}: no usable sentences")
    return sents


def load_splits(config: Syn2SemConfig) -> Splits:
    """The ``train``, ``dev`` and ``test`` sentences of ``config`` (``test`` may be empty),
    with the semantic graphs of ``data.target``; :attr:`Splits.report` says what was skipped."""
    d = config.data
    if d.source == "synthetic":
        tr, dv, te = synthetic_splits(
            d.synthetic_seed,
            d.synthetic_train,
            d.synthetic_dev,
            d.synthetic_test,
            min_len=d.synthetic_min_len,
            max_len=d.synthetic_max_len,
        )
        return Splits({"train": tr, "dev": dv, "test": te})  # generated: nothing to report
    index = None
    report: dict[str, Any] = {"target": d.target, "splits": {}}
    if d.target == "propbank":
        index = read_propbank(resolve_data_path(d.propbank))  # once for all splits
        report["propbank"] = d.propbank
    out: dict[str, list[Sentence]] = {}
    for name in ("train", "dev", "test"):
        path = getattr(d, name)
        if not path:
            out[name] = []
            continue
        rep: dict[str, Any] = {}
        out[name] = read_corpus(path, d, propbank_index=index, report=rep)
        report["splits"][name] = rep
    return Splits(out, report)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` (:attr:`Splits.report`) without the ids of the skipped sentences."""
    out = dict(report)
    if "splits" in out:
        out["splits"] = {
            name: {k: v for k, v in rep.items() if k != "skipped_ids"}
            for name, rep in out["splits"].items()
        }
    return out
