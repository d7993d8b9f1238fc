"""How far do rules on the gold basic tree get on EWT's semantic graphs? (docs/data.md)

    python docs/results/propbank_baselines.py [DATA_DIR]

``DATA_DIR`` (default: ``../shared/data`` beside the project root) holds
``propbank-ewt/propbank-ewt-gold_skel.tgz`` and
``ud-english-ewt/en_ewt-ud-{train,dev,test}.conllu``.
For two targets, the PropBank graphs (:func:`spigot.data.attach_propbank`) and the old enhanced
UD graphs (DEPS with ``drop_function_labels=True``, as ``configs/syn2sem_ewt.toml``), it scores
on dev and test, with the pipeline's SDP metrics (:class:`spigot.metrics.SemanticScorer` with its
defaults), predictions that read only the gold basic tree, the gold UPOS and (``lookup+lex``)
the gold lemmas:

* ``copy``: every tree arc ``h -> m`` (``h >= 1``; the root arc too, as a top ``0 -> m``, when the
  target has top arcs) labeled with the most frequent gold label of its UD relation on train
  (among the gold arcs on tree arcs of that relation; the most frequent overall if there is none);
* ``lookup``: each tree arc gives the outcome (no arc, ``h -> m`` with a label, ``m -> h`` with a
  label, or both) most frequent on train for its (deprel, direction, head UPOS, dependent UPOS),
  backing off to (deprel, direction), then deprel, then "no arc";
* ``lookup+lex``: the same table with two more specific levels in front, the key plus the lemma
  of the dependent's first function-word child (``case``, ``mark`` or ``cc``: the preposition of
  a PP, the conjunction of a clause), then that plus the head's lemma;
* ``oracle``: the gold arcs that are tree arcs or reversed tree arcs, with their gold labels (the
  best an arc-factored model that reads only tree arcs can do).

Rules are learned on train only.  Prints a Markdown table (percentages); takes well under a minute.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from spigot.data import Arc, Sentence, attach_propbank, read_conllu, read_propbank
from spigot.metrics import sdp_scores

SPLITS = ("train", "dev", "test")
EVAL_SPLITS = ("dev", "test")
METRICS = ("lp", "lr", "lf", "up", "ur", "uf")
ROOT_POS = "ROOT"  # UPOS (and lemma) of the root node 0
FUNCTION_CHILD = ("case", "mark", "cc")  # base deprels of the children read by lookup+lex

Outcome = tuple[str | None, str | None]
"""Gold labels of the arcs ``h -> m`` and ``m -> h`` of a tree arc; ``None`` where there is none."""
NO_ARC: Outcome = (None, None)
Key = tuple[str, ...]
Predictor = Callable[[Sentence], list[Arc]]


def tree_arcs(s: Sentence) -> list[tuple[int, int, str]]:
    """Basic-tree arcs ``(head, modifier, deprel)`` of ``s``, the root arc ``(0, m, root)`` too."""
    assert s.heads is not None and s.deprels is not None
    return [(h, m, rel) for m, (h, rel) in enumerate(zip(s.heads, s.deprels, strict=True), start=1)]


def gold_labels(s: Sentence) -> dict[tuple[int, int], str]:
    """Gold label by (head, modifier); the first label in file order if a pair has several."""
    out: dict[tuple[int, int], str] = {}
    for h, m, lab in s.arcs or ():
        out.setdefault((h, m), lab)
    return out


def outcome(gold: dict[tuple[int, int], str], h: int, m: int) -> Outcome:
    """What the gold graph has on the tree arc ``h -> m``: its labels forward and reversed."""
    return gold.get((h, m)), (gold.get((m, h)) if h >= 1 else None)


def function_child(s: Sentence, m: int) -> str:
    """Lowercased lemma of the first ``case``/``mark``/``cc`` child of word ``m``, else ``-``."""
    assert s.heads is not None and s.deprels is not None and s.lemmas is not None
    for c, (h, rel) in enumerate(zip(s.heads, s.deprels, strict=True), start=1):
        if h == m and rel.split(":", 1)[0] in FUNCTION_CHILD:
            return s.lemmas[c - 1].lower()
    return "-"


def keys(s: Sentence, h: int, m: int, rel: str, lexical: bool = False) -> list[Key]:
    """Lookup keys of a tree arc, most specific first: the rule backs off along this list."""
    assert s.pos is not None
    direction = "right" if h < m else "left"  # where the dependent is, seen from its head
    head_pos = s.pos[h - 1] if h >= 1 else ROOT_POS
    key = (rel, direction, head_pos, s.pos[m - 1])
    backoff = [key, (rel, direction), (rel,)]
    if not lexical:
        return backoff
    assert s.lemmas is not None
    marker = function_child(s, m)
    head_lemma = s.lemmas[h - 1] if h >= 1 else ROOT_POS
    return [(*key, marker, head_lemma), (*key, marker), *backoff]


def arcs_of(h: int, m: int, out: Outcome) -> list[Arc]:
    forward, backward = out
    return ([(h, m, forward)] if forward is not None else []) + (
        [(m, h, backward)] if backward is not None else []
    )


def learn_copy(train: Iterable[Sentence]) -> Predictor:
    """The copy rule: every tree arc, labeled with its relation's most frequent gold label."""
    by_rel: defaultdict[str, Counter[str]] = defaultdict(Counter)
    has_tops = False
    for s in train:
        gold = gold_labels(s)
        has_tops |= any(h == 0 for h, _ in gold)
        for h, m, rel in tree_arcs(s):
            if (h, m) in gold:
                by_rel[rel][gold[h, m]] += 1
    overall = sum(by_rel.values(), Counter())
    default = overall.most_common(1)[0][0] if overall else "_"
    label = {rel: c.most_common(1)[0][0] for rel, c in by_rel.items()}

    def predict(s: Sentence) -> list[Arc]:
        return [(h, m, label.get(rel, default)) for h, m, rel in tree_arcs(s) if h >= 1 or has_tops]

    return predict


def learn_lookup(train: Iterable[Sentence], lexical: bool = False) -> Predictor:
    """The lookup-table rule: the most frequent train outcome of each tree arc's key.

    ``lexical`` adds the lemma levels of :func:`keys` (the ``lookup+lex`` rule).
    """
    counts: defaultdict[Key, Counter[Outcome]] = defaultdict(Counter)
    for s in train:
        gold = gold_labels(s)
        for h, m, rel in tree_arcs(s):
            out = outcome(gold, h, m)
            for key in keys(s, h, m, rel, lexical):
                counts[key][out] += 1
    # ties go to the outcome seen first on train (Counter.most_common keeps insertion order)
    table = {key: c.most_common(1)[0][0] for key, c in counts.items()}

    def predict(s: Sentence) -> list[Arc]:
        arcs: list[Arc] = []
        for h, m, rel in tree_arcs(s):
            out = next((table[k] for k in keys(s, h, m, rel, lexical) if k in table), NO_ARC)
            arcs += arcs_of(h, m, out)
        return arcs

    return predict


def oracle(s: Sentence) -> list[Arc]:
    """The gold arcs whose head and modifier are linked by a tree arc, in either direction."""
    linked = {(h, m) for h, m, _ in tree_arcs(s)}
    return [(h, m, lab) for h, m, lab in s.arcs or () if (h, m) in linked or (m, h) in linked]


def scores(gold: Sequence[Sentence], predict: Predictor) -> dict[str, float]:
    """The pipeline's semantic scores (SemanticScorer defaults) of ``predict`` on ``gold``."""
    return sdp_scores(gold, [predict(s) for s in gold])


def read_targets(data: Path) -> dict[str, dict[str, list[Sentence]]]:
    """Sentences by target ("PropBank", "enhanced UD"), then by split."""
    index = read_propbank(data / "propbank-ewt" / "propbank-ewt-gold_skel.tgz")
    targets: dict[str, dict[str, list[Sentence]]] = {"PropBank": {}, "enhanced UD": {}}
    for split in SPLITS:
        path = data / "ud-english-ewt" / f"en_ewt-ud-{split}.conllu"
        enhanced = read_conllu(path, drop_function_labels=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unaligned sentences: see propbank_stats.py
            targets["PropBank"][split] = attach_propbank(enhanced, index)
        targets["enhanced UD"][split] = enhanced
    return targets


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data"
    targets = read_targets(data)
    print("| target | split | sentences | gold arcs | baseline | LP | LR | LF | UP | UR | UF |")
    print("|---" * 11 + "|")
    for target, splits in targets.items():
        baselines = {
            "copy": learn_copy(splits["train"]),
            "lookup": learn_lookup(splits["train"]),
            "lookup+lex": learn_lookup(splits["train"], lexical=True),
            "oracle": oracle,
        }
        for split in EVAL_SPLITS:
            gold = splits[split]
            for name, predict in baselines.items():
                r = scores(gold, predict)
                cells = " | ".join(f"{100 * r[k]:.1f}" for k in METRICS)
                print(
                    f"| {target} | {split} | {len(gold):,} | {r['n_gold']:,} | {name} | {cells} |"
                )


if __name__ == "__main__":
    main()
