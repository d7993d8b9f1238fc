"""Train a bilinear arc scorer through a hard tree argmax with SPIGOT (a toy, runs in seconds).

Each word's representation is replaced by its head's features, ``h = z^T x``; the loss compares
``h`` with what a hidden teacher's trees would give. The only path from the loss to the scorer
goes through the 0/1 tree ``z``, so the scorer learns purely from SPIGOT's gradient.

    python examples/toy_tree.py [--estimator spigot|ste|marginals|pipeline] [--steps 150]
"""

from __future__ import annotations

import argparse

import torch

import spigot


def main(argv: list[str] | None = None) -> list[float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--estimator", default="spigot", choices=spigot.ESTIMATORS)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    B, n, d = 64, 10, 16
    tree = spigot.DependencyTree()
    x = torch.randn(B, n + 1, d)  # word features, index 0 is the root
    teacher = torch.randn(d, d)
    target = tree.argmax(x @ teacher @ x.mT).mT @ x  # every word gets its gold head's features
    W = torch.nn.Parameter(0.01 * torch.randn(d, d))  # scores[b, h, m] = x_h^T W x_m
    opt = torch.optim.Adam([W], lr=0.05)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.98)
    layer = spigot.StructuredArgmax(tree, estimator=args.estimator)
    losses = []
    for step in range(args.steps + 1):
        z = layer(x @ W @ x.mT)  # [B, n+1, n+1]: a hard 0/1 tree (marginals for "marginals")
        loss = ((z.mT @ x - target) ** 2).sum(-1).mean()
        opt.zero_grad()
        if loss.requires_grad:  # a pipeline's z carries no gradient: nothing to learn
            loss.backward()
            opt.step()
            sched.step()
        losses.append(loss.item())
        if step % 25 == 0:
            print(f"step {step:4d}  loss {loss.item():8.4f}")
    return losses


if __name__ == "__main__":
    main()
