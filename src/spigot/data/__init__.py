"""Data layer of spigot: corpus readers/writers, synthetic treebank, vocabularies.

``import spigot`` does not import this package; use ``import spigot.data``.
Only :mod:`spigot.data.batching` (and :func:`load_glove` when called) imports
torch; the names below are loaded lazily so that ``import spigot.data`` stays
torch-free until a batching name is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._text import DataError
from .conllu import (
    FUNCTION_LABELS,
    Arc,
    CorpusFormatError,
    ReadStats,
    Sentence,
    check_tree,
    format_conllu,
    is_projective,
    iter_conllu,
    parse_conllu,
    read_conllu,
    write_conllu,
)
from .glove import GloveStats, load_glove, read_glove
from .propbank import (
    PropBankSentence,
    PropBankStats,
    attach_propbank,
    read_propbank,
    read_propbank_ewt,
    span_head,
)
from .sdp import TOP_LABEL, format_sdp, iter_sdp, parse_sdp, read_sdp, write_sdp
from .sst import SSTExample, parse_ptb_tree, read_sst_trees, read_sst_tsv, unescape_ptb
from .synthetic import (
    derive_semantic_graph,
    generate_sentence,
    generate_treebank,
    synthetic_splits,
    synthetic_vocabulary,
)
from .vocab import (
    NO_LABEL,
    PAD_ID,
    ROOT_ID,
    UNK_ID,
    LabelVocab,
    UnknownLabelError,
    Vocab,
    build_vocabs,
)

if TYPE_CHECKING:  # pragma: no cover
    from .batching import Batch, BucketIterator, bucket_batches, collate, filter_by_length

_LAZY = {
    "Batch": "batching",
    "BucketIterator": "batching",
    "bucket_batches": "batching",
    "collate": "batching",
    "filter_by_length": "batching",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Arc",
    "Batch",
    "BucketIterator",
    "CorpusFormatError",
    "DataError",
    "FUNCTION_LABELS",
    "GloveStats",
    "LabelVocab",
    "NO_LABEL",
    "PAD_ID",
    "ROOT_ID",
    "PropBankSentence",
    "PropBankStats",
    "ReadStats",
    "SSTExample",
    "Sentence",
    "TOP_LABEL",
    "UNK_ID",
    "UnknownLabelError",
    "Vocab",
    "attach_propbank",
    "bucket_batches",
    "build_vocabs",
    "check_tree",
    "collate",
    "derive_semantic_graph",
    "filter_by_length",
    "format_conllu",
    "format_sdp",
    "generate_sentence",
    "generate_treebank",
    "is_projective",
    "iter_conllu",
    "iter_sdp",
    "load_glove",
    "parse_conllu",
    "parse_ptb_tree",
    "parse_sdp",
    "read_conllu",
    "read_glove",
    "read_propbank",
    "read_propbank_ewt",
    "read_sdp",
    "read_sst_trees",
    "read_sst_tsv",
    "span_head",
    "synthetic_splits",
    "synthetic_vocabulary",
    "unescape_ptb",
    "write_conllu",
    "write_sdp",
]
