"""Brute-force oracles: enumerate every structure of a small sentence."""

from __future__ import annotations

import itertools
from functools import cache

import torch


def _is_tree(heads: tuple[int, ...]) -> bool:
    n = len(heads) - 1
    for m in range(1, n + 1):
        seen = set()
        v = m
        while v != 0:
            if v in seen or heads[v] == v:
                return False
            seen.add(v)
            v = heads[v]
    return True


def _is_projective(heads: tuple[int, ...]) -> bool:
    n = len(heads) - 1
    for m in range(1, n + 1):
        h = heads[m]
        lo, hi = min(h, m), max(h, m)
        for k in range(lo + 1, hi):
            v = k
            while v not in (0, h):
                v = heads[v]
            if v != h:
                return False
    return True


@cache
def trees(n: int, projective: bool, single_root: bool) -> tuple[tuple[int, ...], ...]:
    """Every dependency tree over ``n`` words as head tuples ``(0, h_1, ..., h_n)``."""
    out = []
    for hs in itertools.product(range(n + 1), repeat=n):
        heads = (0, *hs)
        if any(heads[m] == m for m in range(1, n + 1)) or not _is_tree(heads):
            continue
        if single_root and sum(h == 0 for h in hs) != 1:
            continue
        if projective and not _is_projective(heads):
            continue
        out.append(heads)
    return tuple(out)


def tree_scores(s: torch.Tensor, ts: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """Score of every tree in ``ts`` under ``s [n+1, n+1]`` (float64)."""
    n = s.shape[-1] - 1
    heads = torch.tensor([t[1:] for t in ts], dtype=torch.long)
    mods = torch.arange(1, n + 1)
    return s.double()[heads, mods.expand_as(heads)].sum(-1)


def tree_oracle(s: torch.Tensor, projective: bool, single_root: bool):
    """(best score, log Z, marginals [n+1, n+1]) of one sentence by enumeration."""
    n = s.shape[-1] - 1
    ts = trees(n, projective, single_root)
    sc = tree_scores(s, ts)
    logz = torch.logsumexp(sc, 0)
    p = torch.exp(sc - logz)
    mu = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    for t, pt in zip(ts, p, strict=True):
        for m in range(1, n + 1):
            mu[t[m], m] += pt
    return sc.max(), logz, mu


def heads_of(z: torch.Tensor) -> tuple[int, ...]:
    """Head tuple of a 0/1 tree ``[n+1, n+1]``; asserts one head per word."""
    n = z.shape[-1] - 1
    assert torch.all(z[:, 1:].sum(0) == 1), "every word must have exactly one head"
    assert torch.all(z[:, 0] == 0) and torch.all(z.diagonal() == 0)
    return (0, *(int(z[:, m].argmax()) for m in range(1, n + 1)))


def graph_oracle(s: torch.Tensor):
    """(best score, log Z, marginals) over every arc set of one sentence (n <= 3)."""
    n = s.shape[-1] - 1
    arcs = [(h, m) for h in range(n + 1) for m in range(1, n + 1) if h != m]
    best, scores, mus = -float("inf"), [], []
    for bits in itertools.product((0, 1), repeat=len(arcs)):
        z = torch.zeros(n + 1, n + 1, dtype=torch.float64)
        for b, (h, m) in zip(bits, arcs, strict=True):
            z[h, m] = b
        sc = float((s.double() * z).sum())
        best = max(best, sc)
        scores.append(sc)
        mus.append(z)
    sc = torch.tensor(scores, dtype=torch.float64)
    logz = torch.logsumexp(sc, 0)
    p = torch.exp(sc - logz)
    mu = sum(pi * zi for pi, zi in zip(p, mus, strict=True))
    return torch.tensor(best, dtype=torch.float64), logz, mu


def tree_moments(s: torch.Tensor, projective: bool, single_root: bool):
    """(marginals [n+1, n+1], covariance [(n+1)^2, (n+1)^2]) of arc indicators, by enumeration.

    The covariance is the Hessian of log Z: ``(d mu / d s)^T g = cov @ g``.
    """
    n = s.shape[-1] - 1
    ts = trees(n, projective, single_root)
    p = torch.softmax(tree_scores(s, ts), 0)
    z = torch.zeros(len(ts), n + 1, n + 1, dtype=torch.float64)
    for k, t in enumerate(ts):
        z[k, list(t[1:]), list(range(1, n + 1))] = 1.0
    zf = z.view(len(ts), -1)
    mu = p @ zf
    cov = zf.T @ (p.unsqueeze(1) * zf) - torch.outer(mu, mu)
    return mu.view(n + 1, n + 1), cov
