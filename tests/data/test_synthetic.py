"""Tests for the synthetic treebank."""

from __future__ import annotations

from collections import Counter

import pytest

from spigot.data import (
    check_tree,
    derive_semantic_graph,
    generate_treebank,
    is_projective,
    synthetic_splits,
    synthetic_vocabulary,
)
from spigot.data.synthetic import FUNCTION_POS


@pytest.fixture(scope="module")
def treebank():
    return generate_treebank(1000, seed=3)


def test_deterministic_for_a_seed(treebank):
    again = generate_treebank(1000, seed=3)
    assert again == treebank
    other = generate_treebank(1000, seed=4)
    assert [s.words for s in other] != [s.words for s in treebank]
    # prefix property: fewer sentences = same first sentences
    assert generate_treebank(10, seed=3) == treebank[:10]


def test_trees_are_valid_single_root(treebank):
    for s in treebank:
        assert check_tree(s.heads) is None, s.sent_id
        assert sum(h == 0 for h in s.heads) == 1
        assert len(s.heads) == len(s.words) == len(s.pos) == len(s.deprels)
        assert s.deprels[s.heads.index(0)] == "root"


def test_graphs_have_no_self_loops_or_duplicates_or_function_word_arguments(treebank):
    for s in treebank:
        n = len(s)
        pairs = [(h, m) for h, m, _ in s.arcs]
        assert len(pairs) == len(set(pairs))
        for h, m, _ in s.arcs:
            assert h != m
            assert 0 <= h <= n and 1 <= m <= n
            assert s.pos[m - 1] not in FUNCTION_POS
        assert len(s.tops) == 1 and s.heads[s.tops[0] - 1] == 0


def test_lengths_within_range_and_varied(treebank):
    lengths = [len(s) for s in treebank]
    assert min(lengths) >= 5 and max(lengths) <= 30
    assert len(set(lengths)) >= 20
    short = generate_treebank(200, seed=1, min_len=8, max_len=12)
    assert all(len(s) <= 12 for s in short)
    assert sum(len(s) >= 8 for s in short) >= 190


def test_some_but_few_nonprojective(treebank):
    rate = sum(not is_projective(s.heads) for s in treebank) / len(treebank)
    assert 0.04 <= rate <= 0.12
    none = generate_treebank(300, seed=3, p_nonprojective=0.0)
    assert all(is_projective(s.heads) for s in none)


def test_graph_is_derived_from_syntax(treebank):
    # the graph is a function of (words, pos, tree) ...
    for s in treebank[:200]:
        assert derive_semantic_graph(s.words, s.pos, s.heads) == s.arcs
    # ... and most semantic arcs connect syntactic neighbours, but not all are tree arcs
    rel = Counter()
    for s in treebank:
        H = [0, *s.heads]
        for h, m, _ in s.arcs:
            if H[m] == h:
                rel["same"] += 1
            elif h and H[h] == m:
                rel["reversed"] += 1
            elif h and (H[H[m]] == h or H[H[h]] == m or H[h] == H[m]):
                rel["two-step"] += 1
            else:
                rel["other"] += 1
    total = sum(rel.values())
    assert rel["other"] / total < 0.05
    assert 0.2 < rel["same"] / total < 0.6
    assert rel["reversed"] / total > 0.2 and rel["two-step"] / total > 0.1


def test_changing_the_tree_changes_the_graph(treebank):
    # re-attaching a preposition's phrase changes the ARG1 of the preposition
    changed = 0
    for s in treebank:
        for i, p in enumerate(s.pos):
            if p == "ADP":
                noun = s.heads[i]
                heads = list(s.heads)
                old = heads[noun - 1]
                new = heads[old - 1] if old and heads[old - 1] else None
                if new:
                    heads[noun - 1] = new
                    if derive_semantic_graph(s.words, s.pos, heads) != s.arcs:
                        changed += 1
                break
    assert changed > 50


def test_word_identity_only_partially_informative():
    vocab = synthetic_vocabulary()
    shared = set(vocab["NOUN"]) & set(vocab["VERB"])
    assert len(shared) >= 20
    tb = generate_treebank(300, seed=0)
    pos_of = {}
    for s in tb:
        for w, p in zip(s.words, s.pos, strict=True):
            pos_of.setdefault(w, set()).add(p)
    assert sum(len(v) > 1 for v in pos_of.values()) >= 10
    counts = Counter(w for s in tb for w, p in zip(s.words, s.pos, strict=True) if p == "NOUN")
    top, *_ = counts.most_common(1)
    assert top[1] > 10 * sorted(counts.values())[len(counts) // 2]  # Zipfian: heavy head


def test_splits_are_independent_and_sized():
    tr, dv, te = synthetic_splits(seed=7, n_train=50, n_dev=20, n_test=10)
    assert (len(tr), len(dv), len(te)) == (50, 20, 10)
    tr2, dv2, _ = synthetic_splits(seed=7, n_train=60, n_dev=20, n_test=10)
    assert dv2 == dv and tr2[:50] == tr
    assert {s.sent_id for s in tr}.isdisjoint({s.sent_id for s in dv})
    assert [s.words for s in tr[:20]] != [s.words for s in dv]


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_len"):
        generate_treebank(5, 0, min_len=10, max_len=5)
    with pytest.raises(ValueError, match="n_sentences"):
        generate_treebank(-1, 0)


def test_graph_statistics_are_dm_like(treebank):
    n = sum(len(s) for s in treebank)
    arcs = [a for s in treebank for a in s.arcs]
    headless = n - sum(len({m for _, m, _ in s.arcs}) for s in treebank)
    assert 0.6 < len(arcs) / n < 0.95
    assert 0.4 < headless / n < 0.6
    labels = Counter(lab for _, _, lab in arcs)
    assert {"TOP", "ARG1", "ARG2", "ARG3", "BV", "compound", "and_c"} <= set(labels)


def test_attachment_is_ambiguous_from_the_string(treebank):
    # in "VERB NOUN ADP NOUN" (the first noun being the verb's object) the PP attaches
    # sometimes to the verb and sometimes to the noun
    to_verb = to_noun = 0
    for s in treebank:
        for i in range(len(s) - 3):
            if s.pos[i : i + 4] == ["VERB", "NOUN", "ADP", "NOUN"] and s.heads[i + 1] == i + 1:
                head = s.heads[i + 3]
                to_verb += head == i + 1
                to_noun += head == i + 2
    assert to_verb + to_noun > 100
    assert 0.25 < to_verb / (to_verb + to_noun) < 0.75
    # prepositional phrases chain: some objects of prepositions have their own PP
    chains = sum(
        1
        for s in treebank
        for m, h in enumerate(s.heads, start=1)
        if s.deprels[m - 1] == "nmod" and h and s.deprels[h - 1] in ("nmod", "obl")
    )
    assert chains > 200


def test_selected_prepositions_are_empty():
    # "of" gets no arcs and its phrase's head takes its object; "in" is a predicate
    words = ["dogs", "eat", "bones", "of", "cows", "in", "parks", "."]
    pos = ["NOUN", "VERB", "NOUN", "ADP", "NOUN", "ADP", "NOUN", "PUNCT"]
    heads = [2, 0, 2, 5, 3, 7, 5, 2]
    arcs = derive_semantic_graph(words, pos, heads)
    assert (3, 5, "ARG1") in arcs and (6, 5, "ARG1") in arcs and (6, 7, "ARG2") in arcs
    assert not any(4 in (h, m) for h, m, _ in arcs)
    # attaching "in parks" to the verb moves the preposition's ARG1
    arcs2 = derive_semantic_graph(words, pos, [2, 0, 2, 5, 3, 7, 2, 2])
    assert (6, 2, "ARG1") in arcs2 and (6, 5, "ARG1") not in arcs2


def test_coordinated_clause_shares_the_relative_clauses_noun():
    # "dogs see cats eating bones and chasing mice ." with "chasing" coordinated with the
    # relative clause "eating": both take "cats" as ARG1 (two tree steps from "chasing")
    words = ["dogs", "see", "cats", "eating", "bones", "and", "chasing", "mice", "."]
    pos = ["NOUN", "VERB", "NOUN", "VERB", "NOUN", "CCONJ", "VERB", "NOUN", "PUNCT"]
    heads = [2, 0, 2, 3, 4, 7, 4, 7, 2]
    arcs = derive_semantic_graph(words, pos, heads)
    assert (4, 3, "ARG1") in arcs and (7, 3, "ARG1") in arcs and (4, 7, "and_c") in arcs
    # coordinated with the main clause instead, "chasing" shares the subject "dogs"
    arcs2 = derive_semantic_graph(words, pos, [2, 0, 2, 3, 4, 7, 2, 7, 2])
    assert (7, 1, "ARG1") in arcs2 and (7, 3, "ARG1") not in arcs2
