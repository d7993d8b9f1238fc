"""The grammar of the synthetic treebank (:mod:`spigot.data.synthetic`): the fixed vocabulary
of pseudo-words and function words, the Zipfian word sampler, and the generator that grows a
dependency tree clause by clause, then linearizes it. See :mod:`spigot.data.synthetic` for the
description of the grammar and of the semantic graphs derived from its trees.

This module does not import torch.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

__all__ = ["CONTENT_POS", "FUNCTION_POS", "SEMANTIC_LABELS", "synthetic_vocabulary"]

CONTENT_POS = ("NOUN", "PROPN", "PRON", "VERB", "ADJ", "ADV", "NUM")
FUNCTION_POS = ("DET", "ADP", "AUX", "CCONJ", "SCONJ", "PUNCT")
SEMANTIC_LABELS = (
    "TOP",
    "ARG1",
    "ARG2",
    "ARG3",
    "BV",
    "compound",
    "and_c",
    "or_c",
    "but_c",
)

_FUNCTION_WORDS = {
    "DET": ["the", "a", "this", "every", "some", "no"],
    "ADP": ["of", "in", "on", "with", "for", "to", "from", "by", "at", "about"],
    "AUX": ["will", "can", "has", "was", "may", "should"],
    "CCONJ": ["and", "or", "but"],
    "SCONJ": ["because", "if", "while", "when", "although", "since"],
    "PUNCT": ["."],
    "PRON": ["she", "he", "they", "it", "we", "you", "someone", "nobody"],
}
_CONTENT_SIZES = {"NOUN": 400, "VERB": 200, "ADJ": 150, "ADV": 60, "PROPN": 100, "NUM": 20}
# probability-like preference of each preposition for attaching to a noun (nmod)
# rather than a verb (obl)
_ADP_NOUN_PREFERENCE = {
    "of": 0.75,
    "in": 0.5,
    "on": 0.5,
    "with": 0.5,
    "for": 0.5,
    "to": 0.35,
    "from": 0.45,
    "by": 0.4,
    "at": 0.4,
    "about": 0.65,
}
# prepositions without semantic content (DM: selected prepositions are skipped and the
# governor takes the object as its own argument)
_VACUOUS_ADP = ("of", "on", "for", "to", "about")
_VOCAB_SEED = 20180715  # fixed: the vocabulary is the same for every treebank seed
_SHARED_NOUN_VERB = 0.15


def _pseudo_words(rng: random.Random, count: int, taken: set[str], suffix: str) -> list[str]:
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "n", "r", "l", "s", "k", "m"]
    words: list[str] = []
    while len(words) < count:
        n_syl = rng.choice((1, 2, 2, 3))
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n_syl))
        w += rng.choice(codas) + suffix
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def synthetic_vocabulary() -> dict[str, list[str]]:
    """The fixed per-POS word lists (most frequent first) used by the generator.

    Returns:
        dict POS -> list of word forms.  ``NOUN`` and ``VERB`` share about 15%
        of their forms; function-word lists are real English words.
    """
    rng = random.Random(_VOCAB_SEED)
    taken: set[str] = set()
    vocab: dict[str, list[str]] = {k: list(v) for k, v in _FUNCTION_WORDS.items()}
    for w in (x for v in vocab.values() for x in v):
        taken.add(w)
    suffix = {"NOUN": "", "VERB": "", "ADJ": "y", "ADV": "ly", "PROPN": "o", "NUM": ""}
    for pos_tag, size in _CONTENT_SIZES.items():
        if pos_tag == "NUM":
            vocab[pos_tag] = [str(i) for i in range(2, 2 + size)]
            continue
        vocab[pos_tag] = _pseudo_words(rng, size, taken, suffix[pos_tag])
    # share some noun forms with verbs (at matching frequency ranks, interleaved)
    n_shared = int(_SHARED_NOUN_VERB * _CONTENT_SIZES["VERB"])
    for k in range(n_shared):
        vocab["VERB"][3 * k + 1] = vocab["NOUN"][3 * k + 2]
    vocab["PROPN"] = [w.capitalize() for w in vocab["PROPN"]]
    return vocab


class _Zipf:
    """Sample indices 0..n-1 with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float = 1.1) -> None:
        self.cum = _zipf_cumulative(n, s)

    def sample(self, rng: random.Random) -> int:
        u = rng.random() * self.cum[-1]
        lo, hi = 0, len(self.cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cum[mid] < u:
                lo = mid + 1
            else:
                hi = mid
        return lo


@functools.lru_cache(maxsize=64)
def _zipf_cumulative(n: int, s: float) -> list[float]:
    """The cumulative Zipf weights of :class:`_Zipf`, computed once per ``(n, s)`` (the
    generator builds its samplers for every sentence)."""
    total = 0.0
    cum: list[float] = []
    for r in range(n):
        total += 1.0 / (r + 1) ** s
        cum.append(total)
    return cum


# left children: ascending key = further left; right children: ascending key = closer to head
_LEFT_ORDER = {
    "cc": 0,
    "mark": 1,
    "case": 2,
    "nsubj": 3,
    "det": 4,
    "nummod": 5,
    "amod": 6,
    "aux": 7,
    "advmod": 8,
}
_RIGHT_ORDER = {
    "flat": 0,
    "obj": 1,
    "nmod": 2,
    "acl:relcl": 3,
    "advcl": 4,
    "obl": 5,
    "advmod": 6,
    "conj": 7,
    "extraposed": 8,
    "punct": 9,
}


@dataclass(eq=False)
class _Node:
    pos: str
    word: str
    deprel: str
    head: _Node | None = None
    left: list[_Node] = field(default_factory=list)
    right: list[_Node] = field(default_factory=list)
    lin_key: str | None = None  # ordering key in the host's list (default: deprel)

    def attach(self, child: _Node, side: str) -> _Node:
        child.head = self
        (self.left if side == "left" else self.right).append(child)
        return child

    def children(self) -> list[_Node]:
        return self.left + self.right


class _Generator:
    def __init__(self, rng: random.Random, vocab: dict[str, list[str]]) -> None:
        self.rng = rng
        self.vocab = vocab
        self.zipf = {k: _Zipf(len(v)) for k, v in vocab.items()}
        self.nodes: list[_Node] = []
        self.adp_weights: dict[str, list[float]] = {}
        for deprel in ("nmod", "obl"):
            cum, total = [], 0.0
            for rank, word in enumerate(vocab["ADP"]):
                pref = _ADP_NOUN_PREFERENCE.get(word, 0.5)
                total += (pref if deprel == "nmod" else 1.0 - pref) / (rank + 1) ** 0.5
                cum.append(total)
            self.adp_weights[deprel] = cum

    # -- words ----------------------------------------------------------------
    def node(self, pos: str, deprel: str) -> _Node:
        words = self.vocab[pos]
        word = words[self.zipf[pos].sample(self.rng)]
        nd = _Node(pos=pos, word=word, deprel=deprel)
        self.nodes.append(nd)
        return nd

    def size(self) -> int:
        return len(self.nodes)

    # -- phrases --------------------------------------------------------------
    def noun_phrase(self, deprel: str, allow_pron: bool = True) -> _Node:
        u = self.rng.random()
        if allow_pron and u < 0.15:
            return self.node("PRON", deprel)
        if u < 0.3:
            head = self.node("PROPN", deprel)
            if self.rng.random() < 0.2:
                head.attach(self.node("PROPN", "flat"), "right")
            return head
        head = self.node("NOUN", deprel)
        if self.rng.random() < 0.2:
            head.attach(self.node("DET", "det"), "left")
        return head

    def prep_phrase(self, deprel: str) -> _Node:
        """ADP-marked noun phrase; the preposition is chosen with a lexical
        attachment preference (``_ADP_NOUN_PREFERENCE``) so that the word is a
        partial cue for attaching to a noun (``nmod``) or a verb (``obl``)."""
        head = self.noun_phrase(deprel, allow_pron=self.rng.random() < 0.5)
        weights = self.adp_weights[deprel]
        u = self.rng.random() * weights[-1]
        i = next(k for k, c in enumerate(weights) if c >= u)
        adp = _Node(pos="ADP", word=self.vocab["ADP"][i], deprel="case")
        self.nodes.append(adp)
        head.attach(adp, "left")
        return head

    def clause(self, deprel: str, subject: bool = True) -> _Node:
        verb = self.node("VERB", deprel)
        if subject:
            verb.attach(self.noun_phrase("nsubj"), "left")
        return verb

    # -- expansions (each returns False if not applicable) ----------------------
    def nouns(self) -> list[_Node]:
        return [n for n in self.nodes if n.pos == "NOUN"]

    def verbs(self) -> list[_Node]:
        return [n for n in self.nodes if n.pos == "VERB"]

    def expand(self, budget: int) -> bool:
        """Apply one random expansion adding at most ``budget`` words."""
        rng = self.rng
        ops = [
            ("adj", 1, 1.0),
            ("det", 1, 0.1),
            ("num", 1, 0.3),
            ("adv", 1, 3.0),
            ("aux", 1, 0.6),
            ("obj", 2, 2.5),
            ("obl", 3, 3.5),
            ("nmod", 3, 3.5),
            ("relcl", 3, 2.5),
            ("npconj", 3, 0.8),
            ("advcl", 4, 0.8),
            ("conj", 4, 0.8),
        ]
        ops = [(name, w) for name, cost, w in ops if cost <= budget]
        while ops:
            k = rng.choices(range(len(ops)), weights=[w for _, w in ops])[0]
            if getattr(self, "_op_" + ops[k][0])():
                return True
            ops.pop(k)
        return False

    def _op_adj(self) -> bool:
        nouns = self.nouns()
        if not nouns:
            return False
        rng = self.rng
        target = rng.choice(nouns)
        if sum(c.deprel == "amod" for c in target.left) >= 2:
            return False
        target.attach(self.node("ADJ", "amod"), "left")
        return True

    def _op_det(self) -> bool:
        nouns = [n for n in self.nouns() if not any(c.deprel == "det" for c in n.left)]
        if not nouns:
            return False
        self.rng.choice(nouns).attach(self.node("DET", "det"), "left")
        return True

    def _op_num(self) -> bool:
        nouns = [n for n in self.nouns() if not any(c.deprel == "nummod" for c in n.left)]
        if not nouns:
            return False
        self.rng.choice(nouns).attach(self.node("NUM", "nummod"), "left")
        return True

    def _op_adv(self) -> bool:
        verb = self.rng.choice(self.verbs())
        if sum(c.deprel == "advmod" for c in verb.children()) >= 2:
            return False
        side = "left" if self.rng.random() < 0.15 else "right"
        verb.attach(self.node("ADV", "advmod"), side)
        return True

    def _op_aux(self) -> bool:
        verbs = [v for v in self.verbs() if not any(c.deprel == "aux" for c in v.left)]
        if not verbs:
            return False
        self.rng.choice(verbs).attach(self.node("AUX", "aux"), "left")
        return True

    def _op_obj(self) -> bool:
        verbs = [v for v in self.verbs() if not any(c.deprel == "obj" for c in v.right)]
        if not verbs:
            return False
        self.rng.choice(verbs).attach(self.noun_phrase("obj"), "right")
        return True

    def _op_obl(self) -> bool:
        verb = self.rng.choice(self.verbs())
        if sum(c.deprel == "obl" for c in verb.right) >= 3:
            return False
        verb.attach(self.prep_phrase("obl"), "right")
        return True

    def _op_nmod(self) -> bool:
        nouns = [n for n in self.nouns() if sum(c.deprel == "nmod" for c in n.right) < 2]
        if not nouns:
            return False
        # subjects less often: a modifier between a subject and its verb is unambiguous
        weights = [0.4 if n.deprel == "nsubj" else 1.0 for n in nouns]
        target = self.rng.choices(nouns, weights=weights)[0]
        target.attach(self.prep_phrase("nmod"), "right")
        return True

    def _op_relcl(self) -> bool:
        nouns = self.nouns()
        if not nouns:
            return False
        target = self.rng.choice(nouns)
        if any(c.deprel == "acl:relcl" for c in target.right):
            return False
        verb = target.attach(self.clause("acl:relcl", subject=False), "right")
        verb.attach(self.noun_phrase("obj"), "right")
        return True

    def _op_npconj(self) -> bool:
        nouns = [n for n in self.nouns() if n.deprel in ("nsubj", "obj", "nmod", "obl")]
        nouns = [n for n in nouns if not any(c.deprel == "conj" for c in n.right)]
        if not nouns:
            return False
        conj = self.rng.choice(nouns).attach(self.noun_phrase("conj", allow_pron=False), "right")
        conj.attach(self.node("CCONJ", "cc"), "left")
        return True

    def _op_advcl(self) -> bool:
        verbs = [v for v in self.verbs() if v.deprel in ("root", "conj")]
        verbs = [v for v in verbs if not any(c.deprel == "advcl" for c in v.right)]
        if not verbs:
            return False
        sub = self.rng.choice(verbs).attach(self.clause("advcl"), "right")
        sub.attach(self.node("SCONJ", "mark"), "left")
        return True

    def _op_conj(self) -> bool:
        verbs = [v for v in self.verbs() if v.deprel in ("root", "advcl", "acl:relcl")]
        verbs = [v for v in verbs if not any(c.deprel == "conj" for c in v.right)]
        if not verbs:
            return False
        host = self.rng.choice(verbs)
        subject = host.deprel != "acl:relcl" and self.rng.random() < 0.4
        conj = host.attach(self.clause("conj", subject=subject), "right")
        conj.attach(self.node("CCONJ", "cc"), "left")
        if not any(c.deprel == "nsubj" for c in conj.left):
            conj.attach(self.noun_phrase("obj"), "right")
        return True


def _linearize(root: _Node) -> list[_Node]:
    out: list[_Node] = []

    def visit(nd: _Node) -> None:
        for c in sorted(nd.left, key=lambda c: _LEFT_ORDER[c.lin_key or c.deprel]):
            visit(c)
        out.append(nd)
        for c in sorted(nd.right, key=lambda c: _RIGHT_ORDER[c.lin_key or c.deprel]):
            visit(c)

    visit(root)
    return out
