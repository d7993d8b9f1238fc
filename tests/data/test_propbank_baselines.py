"""The rule baselines of docs/results/propbank_baselines.py on hand-written sentences."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from _load import load_script
from spigot.data import Sentence

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "results" / "propbank_baselines.py"


@pytest.fixture(scope="module")
def pb():
    return load_script(SCRIPT, "propbank_baselines")


def sentence(rows: list[tuple[str, str, str, int, str]], arcs: list) -> Sentence:
    words, lemmas, pos, heads, deprels = (list(col) for col in zip(*rows, strict=True))
    return Sentence(words, lemmas, pos, heads, deprels, arcs)


# "John saw the dog barking": barking (acl of dog) is the predicate of dog, a reversed tree arc
S1 = sentence(
    [
        ("John", "John", "PROPN", 2, "nsubj"),
        ("saw", "see", "VERB", 0, "root"),
        ("the", "the", "DET", 4, "det"),
        ("dog", "dog", "NOUN", 2, "obj"),
        ("barking", "bark", "VERB", 4, "acl"),
    ],
    [(2, 1, "ARG0"), (2, 4, "ARG1"), (5, 4, "ARG0")],
)
# "Mary took food to school in winter": two obl NOUNs that only their preposition tells apart
S2 = sentence(
    [
        ("Mary", "Mary", "PROPN", 2, "nsubj"),
        ("took", "take", "VERB", 0, "root"),
        ("food", "food", "NOUN", 2, "obj"),
        ("to", "to", "ADP", 5, "case"),
        ("school", "school", "NOUN", 2, "obl"),
        ("in", "in", "ADP", 7, "case"),
        ("winter", "winter", "NOUN", 2, "obl"),
    ],
    [(2, 1, "ARG0"), (2, 3, "ARG1"), (2, 5, "ARG1"), (2, 7, "ARGM-TMP")],
)
# "Sue ate in winter": unseen head lemma, seen preposition
S3 = sentence(
    [
        ("Sue", "Sue", "PROPN", 2, "nsubj"),
        ("ate", "eat", "VERB", 0, "root"),
        ("in", "in", "ADP", 4, "case"),
        ("winter", "winter", "NOUN", 2, "obl"),
    ],
    [(2, 1, "ARG0"), (2, 4, "ARGM-TMP")],
)


def test_lookup_learns_no_arc_forward_and_reversed_outcomes(pb) -> None:
    predict = pb.learn_lookup([S1, S2])
    assert sorted(predict(S1)) == sorted(S1.arcs)  # det and root give no arc, acl a reversed one
    assert pb.scores([S1], predict)["lf"] == 1.0
    assert (2, 4, "ARGM-TMP") not in predict(S3)  # without lemmas, obl NOUN is ambiguous


def test_lexical_lookup_reads_the_preposition_and_backs_off(pb) -> None:
    predict = pb.learn_lookup([S1, S2], lexical=True)
    assert sorted(predict(S2)) == sorted(S2.arcs)
    assert sorted(predict(S3)) == sorted(S3.arcs)  # "eat" unseen: backs off to (key, "in")
    assert pb.function_child(S2, 7) == "in" and pb.function_child(S2, 2) == "-"


def test_copy_labels_every_tree_arc_by_relation(pb) -> None:
    predict = pb.learn_copy([S1, S2])
    arcs = {(h, m): lab for h, m, lab in predict(S1)}
    assert set(arcs) == {(2, 1), (4, 3), (2, 4), (4, 5)}  # no root arc: the target has no tops
    assert arcs[2, 1] == "ARG0" and arcs[2, 4] == "ARG1"
    assert arcs[4, 3] == "ARG1"  # det never carries a gold arc: the most frequent label overall
    with_top = dataclasses.replace(S1, arcs=[*S1.arcs, (0, 2, "root")])
    assert (0, 2) in {(h, m) for h, m, _ in pb.learn_copy([with_top])(S1)}


def test_oracle_keeps_the_arcs_on_tree_arcs_in_either_direction(pb) -> None:
    extra = dataclasses.replace(S1, arcs=[*S1.arcs, (5, 1, "ARG1")])  # John-barking: no tree arc
    assert sorted(pb.oracle(extra)) == sorted(S1.arcs)
