"""Tests for spigot.metrics against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spigot.metrics import AttachmentScorer, SemanticScorer, attachment_scores, prf, sdp_scores


def test_metrics_module_does_not_import_torch():
    import ast

    import spigot.metrics as m

    tree = ast.parse(open(m.__file__, encoding="utf-8").read())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert "torch" not in imported and "numpy" in imported


# --------------------------------------------------------------------------- syntax

GOLD_HEADS = [2, 0, 2, 2]
GOLD_RELS = ["nsubj", "root", "obj", "punct"]
POS = ["PRON", "VERB", "NOUN", "PUNCT"]
PRED_HEADS = [2, 0, 1, 2]
PRED_RELS = ["nsubj", "root", "obj", "dep"]


def test_uas_las_hand_computed():
    s = AttachmentScorer()
    s.update(GOLD_HEADS, PRED_HEADS, GOLD_RELS, PRED_RELS, pos=POS)
    r = s.compute()
    # heads right for words 1, 2, 4 -> UAS 3/4; labels also right for 1, 2 -> LAS 2/4
    assert r["uas"] == pytest.approx(3 / 4)
    assert r["las"] == pytest.approx(2 / 4)
    assert r["n_tokens"] == 4 and r["uem"] == 0.0 and r["lem"] == 0.0


def test_uas_las_excluding_punctuation():
    s = AttachmentScorer(exclude_pos={"PUNCT"})
    s.update(GOLD_HEADS, PRED_HEADS, GOLD_RELS, PRED_RELS, pos=POS)
    r = s.compute()
    # words 1..3 only: heads right for 1, 2 -> 2/3; labels right for 1, 2 -> 2/3
    assert r["uas"] == pytest.approx(2 / 3) and r["las"] == pytest.approx(2 / 3)
    assert r["n_tokens"] == 3


def test_attachment_accumulates_over_sentences_and_accepts_objects():
    from spigot.data import Sentence

    gold = [
        Sentence(words=list("abcd"), pos=POS, heads=GOLD_HEADS, deprels=GOLD_RELS),
        Sentence(words=["x", "y"], pos=["VERB", "NOUN"], heads=[0, 1], deprels=["root", "obj"]),
    ]
    pred = [
        Sentence(words=list("abcd"), heads=PRED_HEADS, deprels=PRED_RELS),
        Sentence(words=["x", "y"], heads=[0, 1], deprels=["root", "obj"]),
    ]
    r = attachment_scores(gold, pred)
    # (3 + 2) / 6 heads, (2 + 2) / 6 labels; sentence 2 is an exact match
    assert r["uas"] == pytest.approx(5 / 6) and r["las"] == pytest.approx(4 / 6)
    assert r["uem"] == 0.5 and r["lem"] == 0.5
    assert attachment_scores(gold, pred, exclude_pos={"PUNCT"})["uas"] == pytest.approx(4 / 5)


def test_attachment_batch_interface_matches():
    gold = np.array([[0, 2, 0, 2, 2], [0, 0, 1, 0, 0]])
    pred = np.array([[0, 2, 0, 1, 2], [0, 0, 1, 9, 9]])  # padding garbage is ignored
    s = AttachmentScorer()
    s.update_batch(gold, pred, lengths=[4, 2])
    r = s.compute()
    assert r["uas"] == pytest.approx(5 / 6) and math.isnan(r["las"])


def test_attachment_length_mismatch():
    with pytest.raises(ValueError, match="gold has 4 heads but prediction has 3"):
        AttachmentScorer().update(GOLD_HEADS, [2, 0, 2])


# --------------------------------------------------------------------------- semantics

G1 = [(0, 2, "TOP"), (2, 1, "ARG1"), (2, 4, "ARG2"), (3, 4, "ARG1")]
P1 = [(0, 2, "root"), (2, 1, "ARG2"), (2, 4, "ARG2"), (1, 3, "ARG1")]
G2 = [(0, 1, "TOP"), (1, 2, "ARG1")]


def test_sdp_single_sentence_hand_computed():
    r = sdp_scores([G1], [P1])
    # labeled: top arc (label not compared, like the official -VIRTUAL- label) and
    # (2,4,ARG2) are right: 2 of 4 predicted, 2 of 4 gold
    assert (r["lp"], r["lr"], r["lf"]) == pytest.approx((0.5, 0.5, 0.5))
    # unlabeled: (0,2) (2,1) (2,4) right, (1,3) wrong: 3/4, 3/4
    assert (r["up"], r["ur"], r["uf"]) == pytest.approx((0.75, 0.75, 0.75))
    assert r["lm"] == 0.0 and r["um"] == 0.0
    assert (r["n_gold"], r["n_pred"], r["n_correct"]) == (4, 4, 2)


def test_sdp_variants_tops():
    # excluding tops: gold 3 arcs, pred 3 arcs, only (2,4,ARG2) right -> 1/3
    r = sdp_scores([G1], [P1], include_tops=False)
    assert r["lp"] == pytest.approx(1 / 3) and r["lr"] == pytest.approx(1 / 3)
    assert r["up"] == pytest.approx(2 / 3)
    # comparing top labels too: TOP != root -> only 1 of 4 labeled arcs right
    r = sdp_scores([G1], [P1], labeled_tops=True)
    assert r["lp"] == pytest.approx(1 / 4)


def test_sdp_micro_average_and_exact_match():
    r = sdp_scores([G1, G2], [P1, list(G2)])
    # labeled 2 + 2 correct of 4 + 2 -> 4/6; unlabeled 3 + 2 of 6 -> 5/6
    assert r["lp"] == pytest.approx(4 / 6) and r["lr"] == pytest.approx(4 / 6)
    assert r["uf"] == pytest.approx(5 / 6)
    assert r["lm"] == 0.5 and r["um"] == 0.5 and r["n_sentences"] == 2


def test_sdp_precision_differs_from_recall():
    gold = [(0, 1, "TOP"), (1, 2, "ARG1"), (1, 3, "ARG2")]
    pred = [(0, 1, "TOP")]
    r = sdp_scores([gold], [pred])
    # P = 1/1, R = 1/3, F = 2 * 1 * 1/3 / (1 + 1/3) = 0.5
    assert (r["lp"], r["lr"], r["lf"]) == pytest.approx((1.0, 1 / 3, 0.5))


def test_sdp_unlabeled_exact_match_with_wrong_label():
    r = sdp_scores([G2], [[(0, 1, "TOP"), (1, 2, "ARG2")]])
    assert r["lm"] == 0.0 and r["um"] == 1.0
    assert r["lp"] == pytest.approx(0.5) and r["up"] == 1.0


def test_sdp_empty_prediction():
    r = sdp_scores([G1], [[]])
    # nothing predicted: P = 0/0 -> 0.0 by our convention, R = 0/4 = 0, F = 0
    assert (r["lp"], r["lr"], r["lf"]) == (0.0, 0.0, 0.0)
    assert r["um"] == 0.0
    # the official scorer reports NaN for 0/0
    r = sdp_scores([G1], [[]], zero_division=float("nan"))
    assert math.isnan(r["lp"]) and r["lr"] == 0.0 and math.isnan(r["lf"])


def test_sdp_empty_gold_and_prediction():
    r = sdp_scores([[]], [[]])
    assert (r["lp"], r["lr"], r["lf"]) == (0.0, 0.0, 0.0)
    assert r["lm"] == 1.0 and r["um"] == 1.0  # identical (empty) graphs match exactly


def test_sdp_all_correct_and_duplicates():
    r = sdp_scores([G1, G2], [list(reversed(G1)), G2 + G2])  # order and duplicates ignored
    for key in ("lp", "lr", "lf", "up", "ur", "uf", "lm", "um"):
        assert r[key] == 1.0, key


def test_sdp_accepts_sentence_objects():
    from spigot.data import Sentence

    g = Sentence(words=list("abcd"), arcs=G1)
    p = Sentence(words=list("abcd"), arcs=P1)
    s = SemanticScorer()
    s.update(g, p)
    assert s.compute()["lf"] == pytest.approx(0.5)


def test_sdp_batch_interface_matches_arc_lists():
    n = 4
    gold = np.zeros((1, n + 1, n + 1))
    pred = np.zeros((1, n + 1, n + 1))
    labels = {"TOP": 1, "ARG1": 2, "ARG2": 3, "root": 4}
    gl = np.zeros((1, n + 1, n + 1), dtype=int)
    pl = np.zeros((1, n + 1, n + 1), dtype=int)
    for h, m, lab in G1:
        gold[0, h, m] = 1
        gl[0, h, m] = labels[lab]
    for h, m, lab in P1:
        pred[0, h, m] = 0.9
        pl[0, h, m] = labels[lab]
    s = SemanticScorer()
    s.update_batch(gold, pred, [n], gl, pl)
    assert s.compute() == sdp_scores([G1], [P1])


def test_prf():
    assert prf(2, 4, 8) == pytest.approx((0.5, 0.25, 1 / 3))
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
