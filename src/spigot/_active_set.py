"""The linear algebra of the SparseMAP active set, batched: see :mod:`spigot.marginal_polytope`.

Every row (structure of a batch) keeps an affinely independent active set ``A`` of 0/1
structures with weights ``w``; the equality-constrained QP on ``A``,

    min_v 1/2 ||M_A v - x||^2  s.t.  1^T v = 1,

has the KKT system ``[[0, 1^T], [1, G]] [t; v] = [1; c]`` with ``G = M_A^T M_A`` and
``c = M_A^T x``. Its inverse is kept up to date in O(k^2) per change of ``A``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def bordered(G: Tensor, act: Tensor) -> Tensor:
    """The KKT matrix ``K = [[0, 1^T], [1, G]]`` over the active slots, identity on free ones.

    ``G [m, k, k]``, ``act [m, k]`` -> ``[m, k+1, k+1]``; index 0 is the sum constraint.
    Invertible when the active structures are affinely independent.
    """
    m, k = act.shape
    af = act.to(G.dtype)
    K = G.new_zeros(m, k + 1, k + 1)
    K[:, 1:, 1:] = G * af.unsqueeze(2) * af.unsqueeze(1) + torch.diag_embed(1 - af)
    K[:, 0, 1:] = af
    K[:, 1:, 0] = af
    return K


class ActiveSets:
    """Every row's active set, in slots ``0..k-1``, updated in place for the whole batch.

    A structure is stored as the indices of its parts (``idx [B, k, P]``, padded with the
    sentinel ``D``, a zero column appended to every dense ``[B, D+1]`` vector), with its Gram
    matrix ``G``, ``c = M^T x``, the weights ``w`` and the mask ``act``. ``Kinv`` is the inverse
    of :func:`bordered`, kept up to date by the O(k^2) bordering formula when a structure
    enters and the deletion formula when one leaves (refreshed by an inverse now and then).
    Rows that do not take part in an update get zero factors: the big tensors are only ever
    touched through views and in place (fresh large allocations are what costs most here).
    """

    def __init__(self, xf: Tensor, cap: int) -> None:
        B, self.D = xf.shape[0], xf.shape[1] - 1
        self.xf, dev = xf, xf.device
        self.idx = torch.full((B, cap, 1), self.D, dtype=torch.long, device=dev)
        self.G, self.c = xf.new_zeros(B, cap, cap), xf.new_zeros(B, cap)
        self.w = xf.new_zeros(B, cap)
        self.act = torch.zeros(B, cap, dtype=torch.bool, device=dev)
        self.Kinv = torch.eye(cap + 1, dtype=xf.dtype, device=dev).repeat(B, 1, 1)

    def used(self) -> int:
        """One past the highest slot any row uses."""
        on = self.act.any(0).nonzero()
        return int(on.max()) + 1 if on.numel() else 0

    def make_room(self, P: int) -> None:
        """Room for structures of ``P`` parts and one more structure in every row."""
        if P > self.idx.shape[2]:
            self.idx = F.pad(self.idx, (0, P - self.idx.shape[2]), value=self.D)
        if bool((~self.act).any(1).all()):
            return
        k = self.act.shape[1]
        self.idx = torch.cat([self.idx, torch.full_like(self.idx, self.D)], 1)
        self.G, self.Kinv = F.pad(self.G, (0, k, 0, k)), F.pad(self.Kinv, (0, k, 0, k))
        self.Kinv[:, k + 1 :, k + 1 :] = torch.eye(k, dtype=self.G.dtype, device=self.G.device)
        self.c, self.w = (torch.cat([t, torch.zeros_like(t)], 1) for t in (self.c, self.w))
        self.act = torch.cat([self.act, torch.zeros_like(self.act)], 1)

    def dots(self, zd: Tensor) -> Tensor:
        """``z_j · y`` for every slot ``j`` and dense ``zd [B, D+1]`` (0 on free slots)."""
        B, cap, P = self.idx.shape
        k = self.used()
        d = zd.gather(1, self.idx[:, :k].reshape(B, -1)).view(B, k, P).sum(2)
        return F.pad(torch.where(self.act[:, :k], d, 0), (0, cap - k))

    def mu(self) -> Tensor:
        """``sum_j w_j z_j``, dense ``[B, D]``."""
        B, _, P = self.idx.shape
        k = self.used()
        src = self.w[:, :k].unsqueeze(2).expand(B, k, P).reshape(B, -1)
        out = self.xf.new_zeros(B, self.D + 1)
        return out.scatter_add_(1, self.idx[:, :k].reshape(B, -1), src)[:, : self.D]

    def add(self, mask: Tensor, z: Tensor, dots: Tensor) -> tuple[Tensor, Tensor]:
        """Put ``z[b]`` (0/1, ``[B, D]``) into a free slot of every row ``b`` in ``mask``.

        Returns the slots ``[B]`` and the rows (bool ``[B]``) where ``z`` is affinely dependent
        on the active set to rounding (Schur complement ~ 0): nothing is added there.
        """
        nz = (z > 0).nonzero()  # [N, 2]: (row, part), sorted by row
        count = torch.bincount(nz[:, 0], minlength=len(z))
        self.make_room(int(count.max()))
        pos = torch.arange(len(nz), device=z.device) - (count.cumsum(0) - count)[nz[:, 0]]
        zi = torch.full((len(z), self.idx.shape[2]), self.D, dtype=torch.long, device=z.device)
        zi[nz[:, 0], pos] = nz[:, 1]
        dots = F.pad(dots, (0, self.act.shape[1] - dots.shape[1]))
        slot = (~self.act).to(torch.int8).argmax(1)
        k = max(self.used(), int(slot[mask].max()) + 1)
        zz = count.to(z.dtype)
        u = torch.cat([torch.ones_like(zz).unsqueeze(1), dots[:, :k]], 1)  # 0 at the new slot
        Kv = self.Kinv[:, : k + 1, : k + 1]
        q = torch.bmm(Kv, u.unsqueeze(2)).squeeze(2)
        delta = zz - (u * q).sum(1)
        empty = ~self.act.any(1)  # K = [[0, 1], [1, |z|]], K^-1 = [[-|z|, 1], [1, 0]]
        bad = mask & ~empty & ~((delta.abs() > 1e-9 * (1 + zz)) & torch.isfinite(delta))
        upd = mask & ~bad & ~empty
        f = torch.where(upd.unsqueeze(1), q / torch.where(upd, delta, 1).unsqueeze(1), 0)
        Kv.addcmul_(q.unsqueeze(2), f.unsqueeze(1))  # in place on the view, no temporary
        r = upd.nonzero().squeeze(1)
        j = 1 + slot[r]
        Kv[r, j, :] = -f[r]
        Kv[r, :, j] = -f[r]
        Kv[r, j, j] = 1 / delta[r]
        e = (mask & empty).nonzero().squeeze(1)
        je = 1 + slot[e]
        Kv[e, 0, 0] = -zz[e]
        Kv[e, 0, je] = Kv[e, je, 0] = 1.0
        Kv[e, je, je] = 0.0
        a = (mask & ~bad).nonzero().squeeze(1)
        s = slot[a]
        dots[a, s] = zz[a]
        self.idx[a, s] = zi[a]
        self.G[a, s, :] = dots[a]
        self.G[a, :, s] = dots[a]
        self.c[a, s] = (z[a] * self.xf[a, : self.D]).sum(1)
        self.act[a, s] = True
        self.w[a, s] = 0.0
        return slot, bad

    def solve(self, k: int) -> Tensor:
        """The affine minimiser ``v [B, k]`` on the active slots (0 on free ones): ``Kinv``
        times ``[1; c]`` and one step of iterative refinement against ``K`` (from ``G``: stale
        entries of free slots only meet zeros of ``v`` or of ``Kinv``'s active rows)."""
        a = self.act[:, :k]
        Kv = self.Kinv[:, : k + 1, : k + 1]
        b = torch.cat([torch.ones_like(self.c[:, :1]), self.c[:, :k] * a], 1)
        sol = torch.bmm(Kv, b.unsqueeze(2)).squeeze(2)
        v = sol[:, 1:] * a
        Ksol = torch.cat([v.sum(1, keepdim=True), sol[:, :1] * a], 1)
        Ksol[:, 1:] += torch.bmm(self.G[:, :k, :k], v.unsqueeze(2)).squeeze(2)
        sol = sol + torch.bmm(Kv, (b - Ksol).unsqueeze(2)).squeeze(2)
        return sol[:, 1:] * a

    def drop(self, k: int, out: Tensor) -> None:
        """Remove the slots ``out [B, k]`` (deletion formula on ``Kinv``); renormalise ``w``."""
        Kv = self.Kinv[:, : k + 1, : k + 1]
        pending = out.clone()
        while bool(pending.any()):
            r = pending.any(1).nonzero().squeeze(1)
            j = 1 + pending[r].to(torch.int8).argmax(1)
            col, row = Kv.new_zeros(len(out), k + 1), Kv.new_zeros(len(out), k + 1)
            col[r], row[r] = Kv[r, :, j], -Kv[r, j, :] / Kv[r, j, j].unsqueeze(1)
            Kv.addcmul_(col.unsqueeze(2), row.unsqueeze(1))
            Kv[r, j, :] = 0.0
            Kv[r, :, j] = 0.0
            Kv[r, j, j] = 1.0
            pending[r, j - 1] = False
        keep = self.act[:, :k] & ~out
        w = torch.where(keep, self.w[:, :k], 0)
        self.w[:, :k] = w / w.sum(1, keepdim=True)
        self.act[:, :k] = keep

    def refresh(self) -> None:
        """Recompute ``Kinv`` from ``G`` (bounds the drift of the updates)."""
        k = self.used()
        Ki, info = torch.linalg.inv_ex(bordered(self.G[:, :k, :k], self.act[:, :k]))
        good = (info == 0).nonzero().squeeze(1)
        self.Kinv[good, : k + 1, : k + 1] = Ki[good]

    def corral(self, mask: Tensor) -> None:
        """Minor cycles on the rows in ``mask``: the QP on each active set, dropping structures
        until the affine minimiser has ``v > 0`` (each pass drops at least one per row)."""
        k = self.used()
        live = mask.clone()
        while bool(live.any()):
            a = self.act[:, :k]
            v = self.solve(k)
            v = torch.where(torch.isfinite(v).all(1, keepdim=True), v, self.w[:, :k])
            done = live & ((v > 0) | ~a).all(1)
            self.w[:, :k] = torch.where(done.unsqueeze(1), v, self.w[:, :k])
            live &= ~done
            if not bool(live.any()):
                return
            wr = self.w[:, :k]
            neg = live.unsqueeze(1) & a & (v <= 0)
            ratio = torch.where(neg, wr / (wr - v).clamp(min=1e-300), math.inf)
            t = ratio.amin(1, keepdim=True).clamp(0, 1)
            wn = torch.where(a, wr + t * (v - wr), 0)
            self.w[:, :k] = torch.where(live.unsqueeze(1), wn, wr)
            self.drop(k, live.unsqueeze(1) & a & ((wn <= 0) | (neg & (ratio <= t))))
