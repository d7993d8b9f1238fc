"""Embedded default data of pipeline 2: a seeded synthetic sentiment task decided by the graph.

Sentences come from the synthetic treebank generator of
:mod:`spigot.data.synthetic` (same grammar, lengths 5..20, projective trees),
post-processed by replacing a few content-word forms with words from three
small lexicons:

* polar verbs, :data:`POSITIVE_VERBS` (``praised``, ``loved``, ...) and
  :data:`NEGATIVE_VERBS` (``hated``, ``feared``, ...);
* negators, :data:`NEGATORS` (``never``, ``not``, ``hardly``, ``barely``),
  used as adverbs: in the DM-like graph an adverb is a predicate whose ``ARG1``
  is the verb it modifies, so a negator is a *semantic head* of the verb it
  negates.

Only verb and adverb forms are replaced, and the semantic graph depends on
the words of prepositions, subordinators and conjunctions only; adverbs are
re-attached (below) and the graph of every sentence is
:func:`~spigot.data.synthetic.derive_semantic_graph` of its final tree.

**Label rule** (:func:`graph_label`, a function of the words and the graph
only): every example has exactly one polar verb ``v``, of polarity ``s(v) =
+1`` (positive lexicon) or ``-1`` (negative lexicon); ``v`` is *negated* when
one of its semantic heads is a negator (an arc ``(a, v, "ARG1")`` with
``words[a]`` in :data:`NEGATORS`); the label is ``1`` (positive) iff
``s(v) * (-1) ** negated > 0``.  It is noise-free: applied to the gold graph
it reproduces every label.  (Written as a sum over polar words, the rule
would cover several polar words; the generator places exactly one, so there
are no ties.)

Every example is one of three kinds (``SentimentExample.kind``):

* ``"ambiguous"`` (default 70%): the sentence has a negator that the grammar
  could attach to the polar verb *or* to another verb with the same string
  (an adverb on the right edge after an embedded relative or subordinate
  clause, ``V1 N [V2 N] ADV``, or between a subject's relative clause and
  the main verb, ``N [V2 N] ADV V1``; see :func:`attachment_candidates`).
  With probability 1/2 the polar verb is the negator's gold head (label
  flipped), otherwise another candidate verb (not flipped).  The label of
  these examples cannot be determined from the string: the decisive relation
  is the single negator -> verb arc;
* ``"unambiguous"`` (15%): a negator with a single possible verb (mostly a
  left adverb, ``AUX ADV V``, or a single verb on the right edge); the polar
  verb is that verb (flipped) or another verb (not flipped);
* ``"no_negator"`` (15%): no negator, a random verb is polar.

The polarity is a fair coin independent of everything else, so labels are
balanced.  Positions say nothing about the decisive arc: the base generator
prefers the outermost verb (3 to 1 on ambiguous adverbs), so every adverb is
re-attached to a uniformly chosen verb among the candidates its string
allows (a tree of the same grammar, the graph re-derived), and on
ambiguous examples the nearest and the outermost candidate are each the gold
head about half of the time.  What a reader of the string can use is a
**lexical cue**, on purpose: half of the neutral verb forms (every other
frequency rank of the base vocabulary, :func:`adverbial_verbs`) are
*adverbial*; on ambiguous examples each candidate verb other than the polar
one is re-drawn adverbial with probability ``affinity`` (default 0.75) if it
is the negator's gold head and ``1 - affinity`` if not.  The cue is spread
over 200 verb forms, so a parser pretrained with explicit arcs
(:func:`parser_treebank`) learns it much more easily than a classifier that
sees one label bit per sentence, and it keeps the Bayes rate of the decisive
arc (hence of a pipeline or joint model) near ``affinity``, below 100%.

Measured on ``sentiment_splits(0)`` (default sizes 2000/400/400; the balance,
the kinds and the rule are also checked by ``tests/test_sem2sent_synthetic.py``):

* label balance (positive): train 49.6%, dev 47.2%, test 52.7%;
* kinds on train: 70.5% ambiguous (label undetermined without the negator
  arc), 15.0% unambiguous, 14.5% without negator;
* the rule on the gold graph: 100% on every split (tested);
* string heuristics (the negator on the nearest or the farthest verb) are
  right on 35-65% of the ambiguous examples (tested), against 100% for the
  rule on the gold graph.

Classifiers on this data: ``spigot experiment sem2sent --config
configs/sem2sent_synthetic.toml`` (seeds 0-2, 2026-12-01) gives the words-only
``bilstm`` 51.2 dev / 48.9 test and the gold-graph classifier 96.0 / 96.4
(``docs/results_sem2sent.md``).

Generating the default data (2800 examples plus 2400 parser sentences) takes
10-20 s: rejection sampling tries about 5 base sentences per example.

This module does not import torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ...data import Arc, Sentence, check_tree, is_projective
from ...data.synthetic import (
    _LEFT_ORDER,  # the grammar's linearization keys (same grammar, same orders)
    _RIGHT_ORDER,
    derive_semantic_graph,
    generate_sentence,
    synthetic_vocabulary,
)

__all__ = [
    "KINDS",
    "NEGATIVE_VERBS",
    "NEGATORS",
    "POSITIVE_VERBS",
    "SentimentExample",
    "adverbial_verbs",
    "attachment_candidates",
    "generate_examples",
    "graph_label",
    "negated_verbs",
    "parser_treebank",
    "polarity",
    "sentiment_splits",
]

POSITIVE_VERBS: tuple[str, ...] = ("praised", "loved", "admired", "enjoyed", "welcomed", "liked")
"""Verb forms of positive polarity."""
NEGATIVE_VERBS: tuple[str, ...] = ("hated", "feared", "blamed", "mocked", "rejected", "resented")
"""Verb forms of negative polarity."""
NEGATORS: tuple[str, ...] = ("never", "not", "hardly", "barely")
"""Adverb forms that flip the polarity of the verb they modify (their ``ARG1``)."""
KINDS: tuple[str, ...] = ("ambiguous", "unambiguous", "no_negator")
"""Example kinds, see the module docstring."""

_POLARITY = {**{w: 1 for w in POSITIVE_VERBS}, **{w: -1 for w in NEGATIVE_VERBS}}
_NEGATORS = frozenset(NEGATORS)
_MIN_LEN, _MAX_LEN = 5, 20
_MAX_TRIES = 2000  # rejection sampling: sentences tried per example


@dataclass
class SentimentExample:
    """One sentence of the sentiment task.

    Attributes:
        words: word forms, length n.
        label: 1 = positive, 0 = negative.
        arcs: gold semantic graph ``(head, modifier, label)`` (1-based, head 0 =
            top), or ``None`` when unknown (e.g. a real sentiment corpus).
        pos: gold POS tags, length n, or ``None``.
        sent_id: identifier.
        heads: gold syntactic tree (0 = root, 1-based), or ``None``.
        deprels: gold syntactic relations, or ``None``.
        kind: one of :data:`KINDS` for synthetic examples, ``""`` otherwise.
    """

    words: list[str]
    label: int
    arcs: list[Arc] | None = None
    pos: list[str] | None = None
    sent_id: str = ""
    heads: list[int] | None = None
    deprels: list[str] | None = None
    kind: str = ""


def polarity(word: str) -> int:
    """``+1`` / ``-1`` for a positive / negative polar verb form, else ``0``."""
    return _POLARITY.get(word.lower(), 0)


def negated_verbs(words: list[str], arcs: list[Arc]) -> set[int]:
    """Words (1-based) that have a negator among their semantic heads (an ``ARG1`` arc)."""
    return {
        m for h, m, lab in arcs if h > 0 and lab == "ARG1" and words[h - 1].lower() in _NEGATORS
    }


def graph_label(words: list[str], arcs: list[Arc]) -> int:
    """The label rule: sign of the polar words' polarities, each flipped when negated.

    ``score = sum_w s(w) * (-1) ** [w has a negator semantic head]`` over the
    polar words ``w``; the label is ``1`` iff ``score > 0`` (``0`` on a tie,
    which synthetic examples never have: they have exactly one polar verb).
    """
    negated = negated_verbs(words, arcs)
    score = 0
    for i, w in enumerate(words, start=1):
        s = polarity(w)
        score += -s if i in negated else s
    return int(score > 0)


def _children(heads: list[int], h: int) -> list[int]:
    return [m for m, x in enumerate(heads, start=1) if x == h]


def _keys_in_order(heads: list[int], deprels: list[str], h: int) -> bool:
    """Whether the children of ``h`` are in the generator's linearization order."""
    kids = _children(heads, h)
    left = [_LEFT_ORDER[deprels[c - 1]] for c in kids if c < h]
    right = [_RIGHT_ORDER[deprels[c - 1]] for c in kids if c > h]
    return left == sorted(left) and right == sorted(right)


def _crosses(heads: list[int], word: int, head: int) -> bool:
    """Whether the arc ``head -> word`` crosses an arc of ``heads`` other than word's own."""
    lo, hi = min(word, head), max(word, head)
    for m, h in enumerate(heads, start=1):
        if m == word:
            continue
        l2, r2 = min(h, m), max(h, m)
        if lo < l2 < hi < r2 or l2 < lo < r2 < hi:
            return True
    return False


def attachment_candidates(
    pos: list[str], heads: list[int], deprels: list[str], adverb: int
) -> list[int]:
    """Verbs the adverb ``adverb`` (1-based, ``advmod``) could attach to, same string.

    A verb ``v`` is a candidate when the tree with ``heads[adverb] = v`` is one
    the grammar of :mod:`spigot.data.synthetic` can generate (projectively
    linearized): a valid projective tree, the children of ``v`` in the
    grammar's linearization order, and at most two adverbs per verb.  The gold
    head is a candidate when the gold tree is projective.  The candidate set
    does not depend on where the adverb is attached in ``heads``.

    Returns:
        sorted 1-based positions of the candidate verbs.
    """
    gold = heads[adverb - 1]
    fast = is_projective(heads) and adverb not in heads  # a projective tree, adverb is a leaf
    out: list[int] = []
    for v, p in enumerate(pos, start=1):
        if p != "VERB" or v == adverb:
            continue
        if v != gold:
            n_adv = sum(deprels[c - 1] == "advmod" for c in _children(heads, v))
            if n_adv >= 2:
                continue
        new = list(heads)
        new[adverb - 1] = v
        if fast:
            ok = not _crosses(heads, adverb, v)
        else:
            ok = check_tree(new) is None and is_projective(new)
        if ok and _keys_in_order(new, deprels, v):
            out.append(v)
    return out


def _verb_classes(vocab: dict[str, list[str]]) -> tuple[list[list[str]], list[list[float]]]:
    """Neutral verb forms split by frequency-rank parity: [non-adverbial, adverbial]."""
    forms: list[list[str]] = [[], []]
    cum: list[list[float]] = [[], []]
    totals = [0.0, 0.0]
    for rank, w in enumerate(vocab["VERB"]):
        cls = int(rank % 2 == 0)
        totals[cls] += 1.0 / (rank + 1) ** 1.1  # the base generator's Zipf weights
        forms[cls].append(w)
        cum[cls].append(totals[cls])
    return forms, cum


def adverbial_verbs() -> frozenset[str]:
    """Neutral verb forms of the *adverbial* class (they attract ambiguous negators)."""
    forms, _ = _verb_classes(synthetic_vocabulary())
    return frozenset(forms[1])


def _choose_kind(rng: random.Random, p_ambiguous: float, p_unambiguous: float) -> str:
    u = rng.random()
    if u < p_ambiguous:
        return "ambiguous"
    if u < p_ambiguous + p_unambiguous:
        return "unambiguous"
    return "no_negator"


def _example(
    rng: random.Random,
    vocab: dict[str, list[str]],
    classes: tuple[list[list[str]], list[list[float]]],
    kind: str,
    *,
    min_len: int,
    max_len: int,
    affinity: float,
    sent_id: str,
) -> tuple[Sentence, int]:
    """Generate one sentence of ``kind`` with its label (rejection sampling on the tree)."""
    for _ in range(_MAX_TRIES):
        s = generate_sentence(
            rng, min_len=min_len, max_len=max_len, p_nonprojective=0.0, vocab=vocab
        )
        assert s.pos is not None and s.heads is not None and s.deprels is not None
        pos, heads, deprels = s.pos, list(s.heads), s.deprels
        adverbs = [i for i, p in enumerate(pos, start=1) if p == "ADV"]
        # every adverb attaches to a uniformly chosen verb among those the string allows
        for a in adverbs:
            heads[a - 1] = rng.choice(attachment_candidates(pos, heads, deprels, a))
        if kind == "no_negator":
            negator, cands = 0, []
            break
        pool = []
        for a in adverbs:
            c = attachment_candidates(pos, heads, deprels, a)
            if (len(c) >= 2) == (kind == "ambiguous"):
                pool.append((a, c))
        if pool:
            negator, cands = rng.choice(pool)
            heads[negator - 1] = rng.choice(cands)  # uniform given the rest of the tree
            break
    else:
        raise ValueError(
            f"no sentence of kind {kind!r} in {_MAX_TRIES} tries with lengths {min_len}..{max_len}"
        )
    words = list(s.words)
    verbs = [i for i, p in enumerate(pos, start=1) if p == "VERB"]
    sign = rng.choice((1, -1))
    negated = rng.random() < 0.5
    if kind == "no_negator":
        polar, negated = rng.choice(verbs), False
    elif kind == "ambiguous":
        gold = heads[negator - 1]
        polar = gold if negated else rng.choice([v for v in cands if v != gold])
        forms, cum = classes
        for v in cands:  # the lexical cue: negators prefer adverbial verbs
            if v != polar:
                adverbial = (rng.random() < affinity) == (v == gold)
                words[v - 1] = rng.choices(forms[adverbial], cum_weights=cum[adverbial])[0]
    else:
        gold = heads[negator - 1]
        others = [v for v in verbs if v != gold]
        if negated or not others:
            polar, negated = gold, True
        else:
            polar = rng.choice(others)
    words[polar - 1] = rng.choice(POSITIVE_VERBS if sign > 0 else NEGATIVE_VERBS)
    if negator:
        words[negator - 1] = rng.choice(NEGATORS)
    label = int((sign > 0) != negated)
    sent = Sentence(
        words=words,
        lemmas=[w.lower() for w in words],
        pos=list(pos),
        heads=heads,
        deprels=list(deprels),
        arcs=derive_semantic_graph(words, pos, heads),
        sent_id=sent_id,
    )
    return sent, label


def _check_args(
    n: int, min_len: int, max_len: int, p_ambiguous: float, p_unambiguous: float, affinity: float
) -> None:
    if n < 0:
        raise ValueError(f"number of examples must be >= 0, got {n}")
    if not 5 <= min_len <= max_len:
        raise ValueError(f"need 5 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if not (p_ambiguous >= 0.0 and p_unambiguous >= 0.0 and p_ambiguous + p_unambiguous <= 1.0):
        raise ValueError(
            "need p_ambiguous, p_unambiguous >= 0 with sum <= 1, "
            f"got {p_ambiguous}, {p_unambiguous}"
        )
    if not 0.0 <= affinity <= 1.0:
        raise ValueError(f"affinity must be in [0, 1], got {affinity}")


def generate_examples(
    n: int,
    seed: int | str = 0,
    *,
    id_prefix: str = "sent",
    min_len: int = _MIN_LEN,
    max_len: int = _MAX_LEN,
    p_ambiguous: float = 0.7,
    p_unambiguous: float = 0.15,
    affinity: float = 0.75,
) -> list[SentimentExample]:
    """Generate ``n`` sentiment examples, deterministically for ``seed``.

    Args:
        n: number of examples (>= 0).
        seed: int or str seed; the same seed always gives the same examples.
        id_prefix: ``sent_id`` is ``f"{id_prefix}-{seed}-{i:06d}"``.
        min_len, max_len: sentence length range (5 <= min_len <= max_len).
        p_ambiguous: probability of the ``"ambiguous"`` kind (the label
            depends on a negator attachment the string leaves open).
        p_unambiguous: probability of the ``"unambiguous"`` kind (a negator
            with a single possible verb); the rest has no negator.
        affinity: strength of the lexical cue (probability that a candidate
            verb's class agrees with the negator's attachment); 0.5 = no cue.

    Returns:
        list of :class:`SentimentExample` with gold graphs, trees and kinds.
    """
    _check_args(n, min_len, max_len, p_ambiguous, p_unambiguous, affinity)
    rng = random.Random(f"spigot-sem2sent-{seed}")
    vocab = synthetic_vocabulary()
    classes = _verb_classes(vocab)
    out: list[SentimentExample] = []
    for i in range(n):
        kind = _choose_kind(rng, p_ambiguous, p_unambiguous)
        s, label = _example(
            rng,
            vocab,
            classes,
            kind,
            min_len=min_len,
            max_len=max_len,
            affinity=affinity,
            sent_id=f"{id_prefix}-{seed}-{i:06d}",
        )
        out.append(
            SentimentExample(
                words=s.words,
                label=label,
                arcs=s.arcs,
                pos=s.pos,
                sent_id=s.sent_id or "",
                heads=s.heads,
                deprels=s.deprels,
                kind=kind,
            )
        )
    return out


def sentiment_splits(
    seed: int | str = 0,
    n_train: int = 2000,
    n_dev: int = 400,
    n_test: int = 400,
    **kwargs: float,
) -> tuple[list[SentimentExample], list[SentimentExample], list[SentimentExample]]:
    """Independent train/dev/test sentiment examples for one seed.

    Each split has its own derived seed (``f"{seed}-train"`` etc.), so changing
    ``n_train`` does not change dev or test.  ``kwargs`` go to
    :func:`generate_examples` (``min_len``, ``max_len``, ``p_ambiguous``,
    ``p_unambiguous``, ``affinity``).

    Returns:
        ``(train, dev, test)`` lists of :class:`SentimentExample`.
    """
    return tuple(  # type: ignore[return-value]
        generate_examples(n, f"{seed}-{name}", id_prefix="sent", **kwargs)  # type: ignore[arg-type]
        for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test))
    )


def parser_treebank(
    seed: int | str = 0,
    n_train: int = 2000,
    n_dev: int = 400,
    **kwargs: float,
) -> tuple[list[Sentence], list[Sentence]]:
    """The semantic-graph bank the parser of pipeline 2 is pretrained on.

    The same grammar, lexicons and mixture of kinds as the sentiment examples
    (so the parser sees the polar verbs, the negators and the lexical cue of
    the adverbial verbs with explicit arcs), from seeds disjoint from
    :func:`sentiment_splits` (``f"parser-{seed}-train"``, ``...-dev``); the
    stand-in for the PropBank graphs of EWT.  ``kwargs`` as for
    :func:`generate_examples`.

    Returns:
        ``(train, dev)`` lists of :class:`~spigot.data.Sentence` with words,
        lemmas, POS, trees and semantic graphs (no labels).
    """
    return tuple(  # type: ignore[return-value]
        [
            Sentence(
                words=e.words,
                lemmas=[w.lower() for w in e.words],
                pos=e.pos,
                heads=e.heads,
                deprels=e.deprels,
                arcs=e.arcs,
                sent_id=e.sent_id,
            )
            for e in generate_examples(
                n,
                f"parser-{seed}-{name}",
                id_prefix="sem",
                **kwargs,  # type: ignore[arg-type]
            )
        ]
        for name, n in (("train", n_train), ("dev", n_dev))
    )
