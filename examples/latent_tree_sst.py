"""SST-2 sentiment with a latent dependency tree, trained through the tree's argmax.

Frozen GloVe 50d -> BiLSTM -> biaffine arc scores -> a tree from ``spigot.StructuredArgmax`` ->
one graph convolution (each word gets its head's state through the tree, ``z^T h``) -> mean
over the words -> linear classifier. Baselines: ``--baseline none`` (no tree: the head's state
is replaced by zeros), ``--baseline fixed`` (the left-branching chain: each word's head is the
word before it, the first word's is the root). See docs/latent_trees.md for the results.

    python examples/latent_tree_sst.py --estimator spigot --normalize rms --epochs 2
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import spigot
from spigot.data import ROOT_ID, Vocab, load_glove
from spigot.nn import BiaffineArcScorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data
KEYS = ("seconds", "dev", "dev_adjacent", "test", "max_score", "max_seen", "max_arc_grad")
PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


def read_sst2(path: Path, limit: int | None = None) -> tuple[list[list[str]], list[int]]:
    """``(tokens, labels)`` of an ``sst2_*.tsv`` file (``limit``: a random subset, the same for
    every seed), PTB escapes undone (``-LRB-`` -> ``(``, ``\\/`` -> ``/``) so the tokens match
    GloVe's; split on ASCII spaces only (see SOURCE.md)."""
    rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    if limit is not None and limit < len(rows):
        keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:limit]
        rows = [rows[i] for i in sorted(keep.tolist())]
    toks = [[PTB.get(t, re.sub(r"\\(.)", r"\1", t)) for t in s.split(" ")] for _, s in rows]
    return toks, [int(label) for label, _ in rows]


class LatentTreeClassifier(nn.Module):
    """Sentence classifier over a latent tree; ``forward`` returns ``(logits, scores or None)``."""

    def __init__(self, emb: Tensor, hidden: int, args: argparse.Namespace) -> None:
        super().__init__()
        self.baseline, d = args.baseline, 2 * hidden
        self.emb = nn.Embedding.from_pretrained(emb, freeze=True, padding_idx=0)
        self.lstm = nn.LSTM(emb.shape[1], hidden, batch_first=True, bidirectional=True)
        self.tree = spigot.DependencyTree(projective=args.projective)
        self.scorer = BiaffineArcScorer(d, hidden, scale=args.score_scale)
        options = {"loss_scale": float(args.batch_size)} if args.estimator == "spigot" else {}
        norm = None if args.normalize == "none" else args.normalize
        self.argmax = spigot.StructuredArgmax(self.tree, args.estimator, normalize=norm, **options)
        self.gcn, self.out, self.drop = nn.Linear(2 * d, d), nn.Linear(d, 2), nn.Dropout(0.2)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        x = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.emb(ids)), lengths + 1, batch_first=True, enforce_sorted=False
        )
        h = nn.utils.rnn.pad_packed_sequence(self.lstm(x)[0], True, total_length=ids.shape[1])[0]
        B, n1, scores = ids.shape[0], ids.shape[1], None
        if self.baseline == "none":
            z = h.new_zeros(B, n1, n1)
        elif self.baseline == "fixed":  # the chain: head of word m is m - 1
            heads = (torch.arange(n1) - 1).clamp(min=0).expand(B, n1)
            z = self.tree.from_heads(heads, lengths)
        else:
            scores = self.scorer(h, lengths)
            z = self.argmax(scores, lengths)
        self.z = z.detach()
        g = torch.relu(self.gcn(self.drop(torch.cat([h, z.mT @ h], -1))))  # row m: [h_m; h_head]
        words = (torch.arange(n1) >= 1) & (torch.arange(n1) <= lengths.view(-1, 1))
        pooled = (g * words.unsqueeze(-1)).sum(1) / lengths.view(-1, 1)
        return self.out(self.drop(pooled)), scores


def score_stats(s: Tensor, lengths: Tensor) -> tuple[float, float]:
    """Largest |score| over valid arcs: raw, and after dividing by each sentence's RMS."""
    mask = spigot.lengths_mask(lengths, s.shape[-1] - 1)
    a = torch.where(mask, s.detach().abs(), 0)
    ms = a.pow(2).sum((1, 2), keepdim=True) / mask.sum((1, 2), keepdim=True)
    return a.max().item(), (a / ms.sqrt().clamp(min=1e-30)).max().item()


def evaluate(model: LatentTreeClassifier, data: tuple[list, list], vocab: Vocab) -> list[float]:
    """``[accuracy, share of the tree's arcs (or marginal mass) between adjacent words]``."""
    model.eval()
    correct, adjacent = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(data[0]), 128):
            b = batch(data, range(i, min(i + 128, len(data[0]))), vocab)
            correct += (model(b.ids, b.lengths)[0].argmax(-1) == b.labels).sum().item()
            z = model.z  # arcs h -> h + 1 (h >= 1) and h + 1 -> h
            adjacent += (z.diagonal(1, 1, 2)[:, 1:].sum() + z.diagonal(-1, 1, 2).sum()).item()
    return [correct / len(data[0]), adjacent / sum(len(s) for s in data[0])]


def batch(data: tuple[list, list], idx: range | list[int], vocab: Vocab) -> spigot.TokenBatch:
    ids = [[vocab[t] for t in data[0][i]] for i in idx]
    return spigot.collate_tokens(ids, [data[1][i] for i in idx], root_id=ROOT_ID)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--estimator", default="spigot", choices=sorted(spigot.ESTIMATORS))
    ap.add_argument("--baseline", default=None, choices=["none", "fixed"])
    ap.add_argument("--normalize", default="none", choices=["rms", "none"])
    ap.add_argument("--score-scale", type=float, default=None, help="default 1/sqrt(hidden)")
    ap.add_argument("--projective", action="store_true", help="Eisner instead of Chu-Liu-Edmonds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=None, help="N random training sentences")
    ap.add_argument("--eval-size", type=int, default=None, help="N random dev/test sentences")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA, help="holds sst/ and glove-6b-50d-subset/")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sst = args.data / "sst"
    train = read_sst2(sst / "sst2_train.tsv", args.train_size)
    dev, test = (read_sst2(sst / f"sst2_{s}.tsv", args.eval_size) for s in ("dev", "test"))
    # GloVe is frozen: a vocabulary over every split only lets dev/test words keep their vectors
    vocab = Vocab.build((t for d in (train, dev, test) for s in d[0] for t in s), lower=True)
    glove = args.data / "glove-6b-50d-subset" / "glove.6B.50d.sst_ewt.txt.gz"
    model = LatentTreeClassifier(load_glove(glove, vocab, seed=args.seed)[0], 100, args)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    rms, gen = args.normalize == "rms", torch.Generator().manual_seed(args.seed)
    hist: dict[str, list[float]] = {}
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, top = time.perf_counter(), [0.0, 0.0, 0.0]  # raw and seen score, arc gradient
        order = torch.randperm(len(train[0]), generator=gen).tolist()
        for i in range(0, len(order), args.batch_size):
            b = batch(train, order[i : i + args.batch_size], vocab)
            logits, scores = model(b.ids, b.lengths)
            if scores is not None and scores.requires_grad:
                scores.retain_grad()
            opt.zero_grad()
            nn.functional.cross_entropy(logits, b.labels).backward()
            opt.step()
            if scores is not None:
                raw, scaled = score_stats(scores, b.lengths)
                grad = 0.0 if scores.grad is None else scores.grad.abs().max().item()
                top = [max(top[0], raw), max(top[1], scaled if rms else raw), max(top[2], grad)]
        row = [time.perf_counter() - start, *evaluate(model, dev, vocab)]
        row += [evaluate(model, test, vocab)[0], *top]
        for key, value in zip(KEYS, row, strict=True):
            hist.setdefault(key, []).append(value)
        print(f"epoch {epoch}", *(f"{k} {v[-1]:.4g}" for k, v in hist.items()), flush=True)
    return hist


if __name__ == "__main__":
    main()
