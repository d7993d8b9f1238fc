"""Tests for the synthetic sentiment task of pipeline 2 (spigot.pipelines.sem2sent.synthetic)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from spigot.data import (
    Sentence,
    check_tree,
    derive_semantic_graph,
    generate_treebank,
    is_projective,
    synthetic_vocabulary,
)
from spigot.pipelines.sem2sent import synthetic as syn
from spigot.pipelines.sem2sent.synthetic import (
    NEGATIVE_VERBS,
    NEGATORS,
    POSITIVE_VERBS,
    adverbial_verbs,
    attachment_candidates,
    generate_examples,
    graph_label,
    parser_treebank,
    polarity,
    sentiment_splits,
)


@pytest.fixture(scope="module")
def splits():
    return sentiment_splits(0, n_train=300, n_dev=100, n_test=100)


def _negator(e) -> int:
    found = [i for i, w in enumerate(e.words, start=1) if w in NEGATORS]
    assert len(found) <= 1
    return found[0] if found else 0


def _label_with_negator_on(e, verb: int) -> int:
    """The rule's label after re-attaching the example's negator to ``verb``."""
    heads = list(e.heads)
    heads[_negator(e) - 1] = verb
    return graph_label(e.words, derive_semantic_graph(e.words, e.pos, heads))


def test_module_does_not_import_torch():
    tree = ast.parse(Path(syn.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("torch") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("torch")


def test_deterministic_per_seed_and_seeds_differ():
    a = sentiment_splits(5, n_train=20, n_dev=8, n_test=8)
    assert sentiment_splits(5, n_train=20, n_dev=8, n_test=8) == a
    b = sentiment_splits(6, n_train=20, n_dev=8, n_test=8)
    assert [e.words for e in b[0]] != [e.words for e in a[0]]
    assert parser_treebank(5, n_train=10, n_dev=5) == parser_treebank(5, n_train=10, n_dev=5)
    # prefix property: fewer examples = the same first examples
    assert generate_examples(5, "x") == generate_examples(12, "x")[:5]


def test_splits_are_independent():
    tr, dv, te = sentiment_splits(1, n_train=20, n_dev=10, n_test=10)
    tr2, dv2, te2 = sentiment_splits(1, n_train=7, n_dev=10, n_test=10)
    assert (dv2, te2) == (dv, te) and tr2 == tr[:7]
    words = [tuple(e.words) for e in tr]
    assert not set(words) & {tuple(e.words) for e in dv + te}
    ids = [e.sent_id for e in tr + dv + te]
    assert len(set(ids)) == len(ids)
    pt, pd = parser_treebank(1, n_train=20, n_dev=10)
    assert not {tuple(s.words) for s in pt + pd} & set(words)


def test_labels_balanced(splits):
    for split in splits:
        assert abs(sum(e.label for e in split) / len(split) - 0.5) < 0.1
    assert {e.label for e in splits[0]} == {0, 1}


def test_rule_on_the_gold_graph_reproduces_every_label(splits):
    for split in splits:
        for e in split:
            assert graph_label(e.words, e.arcs) == e.label, e.sent_id


def test_graphs_and_trees_valid(splits):
    for e in (e for split in splits for e in split):
        n = len(e.words)
        assert 5 <= n <= 20 and len(e.pos) == len(e.heads) == len(e.deprels) == n
        assert check_tree(e.heads) is None and is_projective(e.heads)
        assert e.arcs == derive_semantic_graph(e.words, e.pos, e.heads)
        pairs = [(h, m) for h, m, _ in e.arcs]
        assert len(set(pairs)) == len(pairs)
        for h, m, _ in e.arcs:
            assert 0 <= h <= n and 1 <= m <= n and h != m
        polar = [i for i, w in enumerate(e.words, start=1) if polarity(w)]
        assert len(polar) == 1 and e.pos[polar[0] - 1] == "VERB"
        a = _negator(e)
        assert (a == 0) == (e.kind == "no_negator")
        if a:
            assert e.pos[a - 1] == "ADV" and (a, e.heads[a - 1], "ARG1") in e.arcs


def test_kinds_and_the_undetermined_fraction(splits):
    train = splits[0]
    kinds = Counter(e.kind for e in train)
    assert set(kinds) == {"ambiguous", "unambiguous", "no_negator"}
    assert abs(kinds["ambiguous"] / len(train) - 0.7) < 0.08
    for e in (e for split in splits for e in split):
        if e.kind == "no_negator":
            continue
        a = _negator(e)
        cands = attachment_candidates(e.pos, e.heads, e.deprels, a)
        assert e.heads[a - 1] in cands
        polar = next(i for i, w in enumerate(e.words, start=1) if polarity(w))
        if e.kind == "unambiguous":
            assert cands == [e.heads[a - 1]]
        else:
            # the string allows the negator on the polar verb and on another verb,
            # and the two attachments give different labels
            assert len(cands) >= 2 and polar in cands
            labels = {_label_with_negator_on(e, v) for v in cands}
            assert labels == {0, 1}


def test_string_heuristics_stay_well_below_the_graph(splits):
    """Attaching the negator to the nearest or to the farthest verb is close to a coin flip."""
    amb = [e for split in splits for e in split if e.kind == "ambiguous"]
    assert len(amb) > 200

    def accuracy(farthest: bool) -> float:
        ok = 0
        for e in amb:
            a = _negator(e)
            verbs = [i for i, p in enumerate(e.pos, start=1) if p == "VERB"]
            pick = max if farthest else min
            ok += _label_with_negator_on(e, pick(verbs, key=lambda v: (abs(v - a), -v))) == e.label
        return ok / len(amb)

    assert 0.35 < accuracy(farthest=False) < 0.65
    assert 0.35 < accuracy(farthest=True) < 0.65


def test_lexical_cue_direction():
    """With affinity 1 the negator's gold head is the only adverbial non-polar candidate."""
    adverbial = adverbial_verbs()
    for e in generate_examples(40, "cue", affinity=1.0, p_ambiguous=1.0, p_unambiguous=0.0):
        a = _negator(e)
        for v in attachment_candidates(e.pos, e.heads, e.deprels, a):
            if not polarity(e.words[v - 1]):
                assert (e.words[v - 1] in adverbial) == (v == e.heads[a - 1])


def test_parser_treebank_has_the_lexicons():
    train, dev = parser_treebank(0, n_train=150, n_dev=10)
    assert len(train) == 150 and len(dev) == 10
    assert all(isinstance(s, Sentence) and s.arcs is not None for s in train + dev)
    words = Counter(w for s in train for w in s.words)
    assert all(words[w] > 0 for w in NEGATORS)
    assert sum(words[w] > 0 for w in POSITIVE_VERBS + NEGATIVE_VERBS) >= 10
    for s in train[:30]:
        assert s.lemmas == [w.lower() for w in s.words]
        assert s.arcs == derive_semantic_graph(s.words, s.pos, s.heads)


def test_lexicons_are_new_words():
    vocab = {w.lower() for ws in synthetic_vocabulary().values() for w in ws}
    lexicon = set(POSITIVE_VERBS + NEGATIVE_VERBS + NEGATORS)
    assert len(lexicon) == len(POSITIVE_VERBS + NEGATIVE_VERBS + NEGATORS)
    assert not lexicon & vocab


def test_candidates_contain_the_gold_head():
    for s in generate_treebank(150, seed="cands", max_len=20, p_nonprojective=0.0):
        for a, p in enumerate(s.pos, start=1):
            if p == "ADV":
                assert s.heads[a - 1] in attachment_candidates(s.pos, s.heads, s.deprels, a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_len": 3},
        {"min_len": 12, "max_len": 10},
        {"p_ambiguous": 0.9, "p_unambiguous": 0.2},
        {"p_ambiguous": -0.1},
        {"affinity": 1.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate_examples(3, 0, **kwargs)
    with pytest.raises(ValueError):
        generate_examples(-1, 0)
