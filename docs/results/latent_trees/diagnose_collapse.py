"""Trace one run of examples/latent_tree_sst.py batch by batch: how a collapse unfolds.

Re-runs a configuration of the grid (default: ``ste``, seed 3, the main group's collapsed run)
and prints every ``--every`` batches: the largest raw arc score, the share of words whose head
is an adjacent word / the root / the first / the last word, the share of saturated BiLSTM units
(|h| > 0.99), and the spread of the classifier's logits (0 = the same output for every sentence).

    python docs/results/latent_trees/diagnose_collapse.py [--every 25] -- --estimator ste --seed 3
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

import spigot

ROOT = Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("example_args", nargs="*", default=["--estimator", "ste", "--seed", "3"])
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("ex", ROOT / "examples" / "latent_tree_sst.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)

    state: dict[str, object] = {"step": 0}
    init, forward = ex.LatentTreeClassifier.__init__, ex.LatentTreeClassifier.forward

    def patched_init(self, *a, **k) -> None:
        init(self, *a, **k)
        state["model"] = self
        self.lstm.register_forward_hook(lambda m, i, o: state.__setitem__("h", o[0]))

    def patched_forward(self, ids, lengths):
        logits, scores = forward(self, ids, lengths)
        state["logits"], state["lengths"] = logits.detach(), lengths
        return logits, scores

    stats = ex.score_stats

    def traced_stats(s, lengths):  # called once per training batch, after the update
        out = stats(s, lengths)
        state["step"] = step = int(state["step"]) + 1
        if step % args.every == 0:
            model = state["model"]
            heads = spigot.DependencyTree.to_heads(model.z)[:, 1:]
            pos = torch.arange(1, heads.shape[1] + 1)
            words = pos <= lengths.view(-1, 1)
            share = lambda c: (c & words).sum().item() / words.sum().item()  # noqa: E731
            h = torch.nn.utils.rnn.pad_packed_sequence(state["h"], batch_first=True)[0]
            print(
                f"batch {step:4d}  max score {out[0]:9.3g}  adjacent "
                f"{share((heads - pos).abs() == 1):.2f}  root {share(heads == 0):.2f}  first "
                f"{share(heads == 1):.2f}  last {share(heads == lengths.view(-1, 1)):.2f}  "
                "saturated "
                f"{(h.abs() > 0.99).float().mean().item():.2f}  logit sd "
                f"{state['logits'][:, 1].sub(state['logits'][:, 0]).std().item():.3g}",
                flush=True,
            )
        return out

    ex.LatentTreeClassifier.__init__ = patched_init
    ex.LatentTreeClassifier.forward = patched_forward
    ex.score_stats = traced_stats
    ex.main(args.example_args)


if __name__ == "__main__":
    main()
