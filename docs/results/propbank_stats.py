"""Statistics of the PropBank semantic graphs of UD English EWT (docs/data.md).

    python docs/results/propbank_stats.py [DATA_DIR]

``DATA_DIR`` (default: ``../shared/data`` beside the project root) holds
``propbank-ewt/propbank-ewt-gold_skel.tgz`` and
``ud-english-ewt/en_ewt-ud-{train,dev,test}.conllu``.  Prints the archive's sha256 and Markdown
tables: alignment per split, graph statistics per split and over all splits, and the most
frequent labels.  It takes well under a minute.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections import Counter
from pathlib import Path

from spigot.data import PropBankStats, read_propbank, read_propbank_ewt

SPLITS = ("train", "dev", "test")
REASONS = (
    "length mismatch",
    "missing sentence",
    "no document",
    "no sent_id",
    "no valid basic tree",
)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> None:
    data = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[3] / "shared" / "data"
    )
    tgz = data / "propbank-ewt" / "propbank-ewt-gold_skel.tgz"
    index = read_propbank(tgz)
    stats: dict[str, PropBankStats] = {}
    total = PropBankStats()
    for split in SPLITS:
        path = data / "ud-english-ewt" / f"en_ewt-ud-{split}.conllu"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped sentences are reported below
            _, stats[split] = read_propbank_ewt(path, index)
            read_propbank_ewt(path, index, stats=total)
    print(f"sha256 {hashlib.sha256(tgz.read_bytes()).hexdigest()}  {tgz.name}")
    n_pb = sum(len(doc) for doc in index.values())
    print(f"{n_pb:,} PropBank sentences in {len(index):,} documents\n")

    print("| split | UD sentences | aligned | " + " | ".join(REASONS) + " |")
    print("|---" * (3 + len(REASONS)) + "|")
    for name, st in [*stats.items(), ("all", total)]:
        skipped = " | ".join(f"{st.skipped[r]:,}" for r in REASONS)
        print(f"| {name} | {st.sentences:,} | {st.aligned:,} | {skipped} |")

    print(
        "\n| split | words | predicates | arcs | arcs/word | basic-tree arcs | reversed basic "
        "| other | words with >= 2 heads | labels | UD XPOS differ |"
    )
    print("|---" * 11 + "|")
    for name, st in [*stats.items(), ("all", total)]:
        other = 1 - st.basic_share - st.reversed_share
        print(
            f"| {name} | {st.tokens:,} | {st.predicates:,} | {st.arcs:,} | {st.arcs_per_token:.3f} "
            f"| {pct(st.basic_share)} | {pct(st.reversed_share)} | {pct(other)} "
            f"| {pct(st.multi_head_share)} | {len(st.labels)} "
            f"| {st.xpos_differs:,} ({pct(st.xpos_differs / st.aligned)}) |"
        )
    print(
        f"\nall splits: {total.duplicate_arcs} duplicate (predicate, word) arcs dropped "
        f"({total.label_conflicts} with a different label), {total.self_arcs} arguments headed by "
        f"their predicate, {total.no_arc_spans:,} V/C-V spans"
    )

    print("\n| rank | label | arcs (all splits) | share |")
    print("|---|---|---|---|")
    for rank, (label, count) in enumerate(total.labels.most_common(10), start=1):
        print(f"| {rank} | {label} | {count:,} | {pct(count / total.arcs)} |")
    groups = Counter(
        "R-*"
        if lab.startswith("R-")
        else "C-*"
        if lab.startswith("C-")
        else "ARGM-*"
        if lab.startswith("ARGM-")
        else "core"
        for lab in total.labels
    )
    print("\nlabel types: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())))
    print("all labels: " + " ".join(sorted(total.labels)))


if __name__ == "__main__":
    main()
