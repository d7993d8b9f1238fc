"""Dependency trees: arborescences rooted at node 0, projective or not, one root child or many."""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spigot._validate import check_lengths, check_magnitude
from spigot.projections import project_simplex
from spigot.structures._arcs import ArcFactored, heads_to_arcs
from spigot.structures._logspace import matrix_tree_log_partition, tree_log_partition
from spigot.structures._sampling import sample_nonprojective, sample_projective
from spigot.structures.base import _Marginals


def _kernels() -> Any:
    """The compiled CPU kernels (imports numba on first use only)."""
    from spigot import _kernels

    return _kernels


def _kernels_jvp() -> Any:
    """The compiled second-order kernels (imports numba on first use only)."""
    from spigot import _kernels_jvp

    return _kernels_jvp


def _kernels_mtt() -> Any:
    """The compiled matrix-tree kernel (imports numba on first use only)."""
    from spigot import _kernels_mtt

    return _kernels_mtt


_WARM: set[str] = set()
#: seconds a kernel's first call may take before we say it is compiling
_COMPILE_NOTICE_AFTER = 2.0


def _call(name: str, *args: Any) -> Any:
    """Run kernel ``name``; the first call of each in a process says so on stderr if it takes
    long (numba compiles on first use, ~5-25 s per kernel on a fresh install, then caches)."""
    if name.endswith("_jvp"):
        fn = getattr(_kernels_jvp(), name)
    else:
        fn = getattr(_kernels_mtt() if name == "matrix_tree" else _kernels(), name)
    if name in _WARM:
        return fn(*args)

    def notice() -> None:
        print(
            f"spigot: compiling the tree kernel {name!r} (first use after install; cached on "
            "disk afterwards)",
            file=sys.stderr,
            flush=True,
        )

    timer = threading.Timer(_COMPILE_NOTICE_AFTER, notice)
    timer.daemon = True
    timer.start()
    try:
        return fn(*args)
    finally:
        timer.cancel()
        _WARM.add(name)


def _to_numpy(scores: Tensor, lengths: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CPU float64 copies for the compiled kernels (the only host transfer of the tree code)."""
    s = scores.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
    return s, lengths.detach().to("cpu").numpy().astype(np.int64)


class _ProjectiveLogZ(torch.autograd.Function):
    """``log Z`` of projective trees: compiled inside pass forward, outside pass backward.

    Extra memory O(B n^2) (seven charts per sentence), against O(B n^3) for autograd through
    a chart. The backward returns ``grad * marginals``; when a graph of the backward is
    requested (``create_graph=True``) the marginals come from the differentiable path instead.
    Runs on the CPU: inputs are copied to the host as float64, results copied back.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, tree: Any
    ) -> Any:
        s, lens = _to_numpy(scores, lengths)
        logz, charts = _call("inside", s, lens, single_root)
        return (
            torch.from_numpy(logz).to(device=scores.device, dtype=scores.dtype),
            torch.from_numpy(charts),
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        scores, lengths, mask, single_root, tree = inputs
        _, charts = output
        ctx.mark_non_differentiable(charts)
        ctx.save_for_backward(scores, lengths, mask, charts)
        ctx.tree = tree

    @staticmethod
    def backward(
        ctx: Any, g: Tensor, _g_charts: Any
    ) -> tuple[Tensor | None, None, None, None, None]:
        scores, lengths, mask, charts = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward requested: differentiable marginals
            mu = _Marginals.apply(scores, ctx.tree, (lengths, mask))
        else:
            lens = lengths.detach().cpu().numpy().astype(np.int64)
            mu_np = _call("outside", charts.numpy(), lens)
            mu = torch.from_numpy(mu_np).to(device=scores.device, dtype=scores.dtype)
        return g.view(-1, 1, 1) * mu, None, None, None, None


def _use_device_path(scores: Tensor) -> bool:
    """Whether the matrix-tree theorem runs on the scores' device (:mod:`spigot._mtt_fast`)
    rather than on the compiled CPU kernel: CUDA tensors (batched LU there, no host copy)."""
    return scores.device.type == "cuda"


def _matrix_tree_compiled(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, want_mu: bool
) -> tuple[Tensor, Tensor | None]:
    """Matrix-tree ``log Z [B]`` (float64) and marginals ``[B, N, N]`` (if ``want_mu``;
    float32 for float32 scores on the CPU, else float64), on the scores' device.

    CPU: the compiled kernel (:mod:`spigot._kernels_mtt`) eliminates in linear scale without
    subtraction, blocked, and checks its work; a sentence whose pivots leave
    ``[1e-250, 1e250]`` or whose marginals fail their check is redone by the log-space
    :func:`~spigot.structures._logspace.matrix_tree_log_partition` on its own unpadded slice,
    so every sentence gets full precision and the result never depends on padding, batch mates
    or threads. CUDA (:func:`_use_device_path`): batched LU on the device
    (:func:`spigot._mtt_fast.matrix_tree_torch`), checked the same way; the sentences that fail
    are redone by the compiled kernel (and, if need be, in log space).
    """
    if _use_device_path(scores):
        from spigot._mtt_fast import matrix_tree_torch

        logz, mu, ok = matrix_tree_torch(scores, lengths, single_root, want_mu)
        bad = (~ok).nonzero().flatten()
        if bad.numel():
            sub = (scores.detach()[bad].cpu(), lengths[bad].cpu(), mask[bad].cpu())
            lz_b, mu_b = _matrix_tree_cpu(*sub, single_root, want_mu)
            logz[bad] = lz_b.to(logz.device)
            if mu is not None and mu_b is not None:
                mu[bad] = mu_b.to(device=mu.device, dtype=mu.dtype)
        return logz, mu
    return _matrix_tree_cpu(scores, lengths, mask, single_root, want_mu)


#: float64 entries from which :func:`_matrix_tree_cpu` keeps its host copies between calls
_REUSE_FROM = 1 << 15


def _matrix_tree_cpu(
    scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, want_mu: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`_matrix_tree_compiled` on the compiled kernel (inputs copied to the host if need
    be, results copied back)."""
    kmtt = _kernels_mtt()
    B, N = scores.shape[0], scores.shape[-1]
    # large intermediate host copies go to memory kept between calls: fresh ones above glibc's
    # mmap threshold cost a page fault per 4 KiB every call (a sixth of the time at n = 320)
    reuse = B * N * N >= _REUSE_FROM
    s = scores.detach()
    if s.device.type != "cpu" or s.dtype != torch.float64:  # a float64 copy
        if reuse:
            s = torch.from_numpy(kmtt.host_buffer("scores", (B, N, N))).copy_(s)
        else:
            s = s.to(device="cpu", dtype=torch.float64)
    s = s.contiguous()
    ln = lengths.detach().to("cpu", torch.int64).numpy()
    cast = want_mu and scores.dtype == torch.float32  # marginals cast to float32 at the end
    if cast and reuse:
        mu = torch.from_numpy(kmtt.host_buffer("mu", (B, N, N)))
    else:
        mu = torch.empty((B, N, N) if want_mu else (1, 1, 1), dtype=torch.float64)
    ws = kmtt.workspace(int(ln.max(initial=0)))
    logz_np, _, ok_np = _call(
        "matrix_tree", s.numpy(), ln, single_root, want_mu, mu.numpy(), kmtt.PANEL, ws
    )
    logz = torch.from_numpy(logz_np)
    for b in np.flatnonzero(~ok_np).tolist():
        L = int(ln[b]) + 1
        sb = s[b : b + 1, :L, :L].clone()
        mb = mask[b : b + 1, :L, :L].cpu()
        with torch.enable_grad():
            sb.requires_grad_(want_mu)
            lz = matrix_tree_log_partition(sb, lengths[b : b + 1].cpu(), mb, single_root)
            if want_mu:
                (g,) = torch.autograd.grad(lz.sum(), sb)
                mu[b, :L, :L] = g[0].clamp(0, 1)
        logz[b] = lz.detach()[0]
    dev = scores.device
    if cast:
        mu = mu.to(dtype=torch.float32)  # a fresh tensor: the buffer never escapes
    return logz.to(dev), (mu.to(dev) if want_mu else None)


class _NonProjectiveLogZ(torch.autograd.Function):
    """``log Z`` of non-projective trees: matrix-tree forward, marginals backward (both by
    :func:`_matrix_tree_compiled`, so the gradient is the marginals :meth:`marginals` returns).

    Forward and backward are O(n^3) per sentence with O(n^2) memory; a graph of the backward
    (``create_graph=True``) goes through the differentiable log-space version instead.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        scores: Tensor, lengths: Tensor, mask: Tensor, single_root: bool, tree: Any
    ) -> Tensor:
        logz, _ = _matrix_tree_compiled(scores, lengths, mask, single_root, want_mu=False)
        return logz.to(scores.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        scores, lengths, mask, single_root, tree = inputs
        ctx.save_for_backward(scores, lengths, mask)
        ctx.single_root = single_root
        ctx.tree = tree

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        scores, lengths, mask = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward requested: differentiable marginals
            mu = _Marginals.apply(scores, ctx.tree, (lengths, mask))
        else:
            _, mu = _matrix_tree_compiled(scores, lengths, mask, ctx.single_root, want_mu=True)
        return g.view(-1, 1, 1) * mu.to(scores.dtype), None, None, None, None


def _compiled_vjp(
    tree: DependencyTree, scores: Tensor, lengths: Tensor, mask: Tensor, grad: Tensor
) -> Tensor:
    """The marginals' VJP by the compiled JVP kernels of :mod:`spigot._kernels_jvp`.

    Sentences whose check fails are redone by autograd through the log-space recurrences.
    """
    s, ln = _to_numpy(scores, lengths)
    v = torch.where(mask, grad, 0).detach().to(device="cpu", dtype=torch.float64).contiguous()
    kernel = "inside_outside_jvp" if tree.projective else "matrix_tree_jvp"
    _, dmu, ok = _call(kernel, s, v.numpy(), ln, tree.single_root)
    hv = torch.from_numpy(dmu)
    bad = np.flatnonzero(~ok)
    if bad.size:
        idx = torch.from_numpy(bad)
        sub = (lengths.cpu()[idx], mask.cpu()[idx])
        hv[idx] = tree._marginals_vjp_autograd(
            torch.from_numpy(s)[idx], sub, v[idx], create=False
        ).to(torch.float64)
    return torch.where(mask, hv.to(device=scores.device), 0).to(scores.dtype)


class DependencyTree(ArcFactored):
    """Dependency trees over ``n`` words plus the root (node 0).

    Scores are ``scores[b, h, m]``, shape ``[B, n+1, n+1]``: the score of the arc from head ``h``
    to modifier ``m``; ``lengths[b]`` words are real, the rest is padding. A tree is a 0/1 tensor
    of the same shape with exactly one head per word, no cycle, and zeros on the diagonal, in
    column 0 and on padding.

    Args:
        projective: restrict to projective trees (Eisner; inside-outside) instead of all
            arborescences (Chu-Liu-Edmonds; matrix-tree theorem).
        single_root: exactly one arc leaves the root (exact, for every algorithm).

    Argmax, marginals and log-partition run compiled on the CPU (numba, parallel over the
    batch): scores are copied to the host once as float64, results copied back to their
    device. Exception: non-projective marginals and log-partition of CUDA scores run on the
    device (batched LU, checked; :mod:`spigot._mtt_fast`), with only the sentences that fail
    the check sent to the compiled kernel. The exact gradient of the marginals (the
    ``"marginals"`` estimator's backward) and double backward through ``log_partition`` are
    pure torch and run on the scores' device.
    """

    def __init__(self, projective: bool = False, single_root: bool = True) -> None:
        self.projective = bool(projective)
        self.single_root = bool(single_root)

    def __repr__(self) -> str:
        return f"DependencyTree(projective={self.projective}, single_root={self.single_root})"

    def _prepare(self, scores: Any, lengths: Any, name: str = "scores") -> tuple[Tensor, Any]:
        s, prepared = super()._prepare(scores, lengths, name)
        check_magnitude(s, prepared[1], name)
        return s, prepared

    def _argmax(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, _ = lengths
        s, ln = _to_numpy(scores, lens)
        kernel = "eisner" if self.projective else "chu_liu_edmonds"
        heads = torch.from_numpy(_call(kernel, s, ln, self.single_root))
        return heads_to_arcs(heads, lens, scores)

    def heads(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The argmax as head indices ``[B, n+1]`` (long; position 0 and padding are 0)."""
        return self.to_heads(self.argmax(scores, lengths))

    @staticmethod
    def to_heads(z: Tensor) -> Tensor:
        """Head indices ``[B, n+1]`` (long) of 0/1 trees ``z [B, n+1, n+1]``: ``heads[b, m]`` is
        the ``h`` with ``z[b, h, m] = 1``; position 0 and padding (empty columns) are 0. Works on
        the output of any hard estimator without running the argmax again."""
        if not isinstance(z, Tensor) or z.dim() != 3 or z.shape[-1] != z.shape[-2]:
            raise ValueError(
                f"`z` must be a [batch, n+1, n+1] tensor, got {getattr(z, 'shape', z)}"
            )
        return z.detach().argmax(dim=1)

    def from_heads(
        self,
        heads: Tensor,
        lengths: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """0/1 trees ``[B, n+1, n+1]`` from head indices ``heads [B, n+1]``.

        ``heads[b, m]`` is the head of word ``m`` (``1 <= m <= lengths[b]``); position 0 and
        padding are ignored. Raises ``ValueError`` unless every sentence is a tree of this
        structure's kind: heads in ``0..lengths[b]``, no self-loop, no cycle, exactly one root
        child when ``single_root`` (projectivity is checked when ``projective``).
        """
        if not isinstance(heads, Tensor) or heads.dim() != 2 or heads.dtype.is_floating_point:
            got = getattr(heads, "shape", heads)
            raise ValueError(f"`heads` must be an integer tensor [batch, n+1], got {got}")
        B, n1 = heads.shape
        if n1 < 2:
            raise ValueError(f"`heads` must have n+1 >= 2 columns, got shape {tuple(heads.shape)}")
        lens = check_lengths(lengths, B, n1 - 1, heads.device)
        h = heads.long()
        idx = torch.arange(n1, device=heads.device)
        word = (idx.view(1, -1) >= 1) & (idx.view(1, -1) <= lens.view(-1, 1))
        h = torch.where(word, h, 0)
        bad = word & ((h < 0) | (h > lens.view(-1, 1)) | (h == idx.view(1, -1)))
        if bool(bad.any()):
            b, m = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"`heads[{b}, {m}]` = {int(heads[b, m])} is not a head of word {m}")
        # pointer doubling: after ceil(log2(n)) + 1 squarings every word reaches the root
        # unless it sits on a cycle
        p = h
        for _ in range(max(1, (n1 - 1).bit_length()) + 1):
            p = p.gather(1, p)
        if bool((word & (p != 0)).any()):
            b = int((word & (p != 0)).any(1).nonzero()[0])
            raise ValueError(f"`heads[{b}]` has a cycle: not a tree")
        if self.single_root:
            roots = (word & (h == 0)).sum(1)
            if bool((roots != 1).any()):
                b = int((roots != 1).nonzero()[0])
                raise ValueError(
                    f"`heads[{b}]` has {int(roots[b])} root children; this structure is single_root"
                )
        z = heads_to_arcs(h, lens, torch.empty((), dtype=dtype, device=heads.device))
        if self.projective:
            s = torch.where(z > 0, 1.0, 0.0).to(torch.float64)
            best = self.score(s, self.argmax(s, lens))
            if bool((best < lens.to(torch.float64)).any()):
                b = int((best < lens.to(torch.float64)).nonzero()[0])
                raise ValueError(f"`heads[{b}]` is not projective")
        return z

    def _logz(self, scores: Tensor, lengths: Any) -> Tensor:
        """Log-partition ``[B]`` (float64) differentiable by autograd to any order."""
        lens, mask = lengths
        return tree_log_partition(scores, lens, mask, self.projective, self.single_root)

    def marginals(self, scores: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Part marginals under ``p(z) ∝ exp(scores · z)``; differentiable (exact gradient)."""
        s, prepared = self._prepare(scores, lengths)
        if torch.is_grad_enabled() and s.requires_grad:
            return _Marginals.apply(s, self, prepared)
        # nothing to differentiate: the same forward without autograd.Function's bookkeeping
        # (about 45 us a call, as much as the kernel itself for a batch of short sentences)
        return self._marginals(s.detach(), prepared)

    def _marginals(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, mask = lengths
        if self.projective:
            s, ln = _to_numpy(scores, lens)
            _, charts = _call("inside", s, ln, self.single_root)
            # probabilities: rounding of the outside sums may leave [0, 1] by an ulp
            mu = torch.from_numpy(_call("outside", charts, ln)).clamp_(0, 1)
            return mu.to(device=scores.device, dtype=scores.dtype)
        _, mu = _matrix_tree_compiled(scores, lens, mask, self.single_root, want_mu=True)
        return mu.to(scores.dtype)

    def _marginals_vjp(self, scores: Tensor, lengths: Any, grad: Tensor) -> Tensor:
        """``H g`` with ``H`` the Hessian of ``log Z`` (symmetric: the VJP of the marginals).

        Compiled forward-mode kernels (:mod:`spigot._kernels_jvp`) when no graph is recorded;
        inside a backward that records one (``create_graph=True``), float64 autograd through the
        log-space recurrences, so that the result stays a differentiable function of ``scores``
        and ``grad`` and derivatives of any order are exact.
        """
        lens, mask = lengths
        create = torch.is_grad_enabled()
        if not create:
            return _compiled_vjp(self, scores, lens, mask, grad)
        return self._marginals_vjp_autograd(scores, lengths, grad, create)

    def _marginals_vjp_autograd(
        self, scores: Tensor, lengths: Any, grad: Tensor, create: bool
    ) -> Tensor:
        """``H g`` by float64 autograd (double backward) through the log-space ``log Z``."""
        _, mask = lengths
        with torch.enable_grad():
            s = scores.to(torch.float64) if create else scores.detach().to(torch.float64)
            if not s.requires_grad:
                s = s.detach().requires_grad_(True)
            logz = self._logz(s, lengths)
            (mu,) = torch.autograd.grad(logz.sum(), s, create_graph=True)
            if mu.requires_grad:
                (hv,) = torch.autograd.grad(
                    mu, s, grad_outputs=grad.to(torch.float64), create_graph=create
                )
            else:  # log Z linear in s (one-word sentences only): the marginals are constant
                hv = torch.zeros_like(s) * grad.to(torch.float64)
        return torch.where(mask, hv, 0).to(scores.dtype)

    def _log_partition(self, scores: Tensor, lengths: Any) -> Tensor:
        lens, mask = lengths
        if self.projective:
            logz, _ = _ProjectiveLogZ.apply(scores, lens, mask, self.single_root, self)
            return logz
        return _NonProjectiveLogZ.apply(scores, lens, mask, self.single_root, self)

    def _project(self, x: Tensor, lengths: Any) -> Tensor:
        """One simplex per modifier column over its valid heads (the paper's relaxation)."""
        _, mask = lengths
        return project_simplex(x, mask, dim=-2)

    def _sample(self, scores: Tensor, lengths: Any, k: int, generator: Any) -> Tensor:
        """``[k, B, n+1, n+1]`` exact samples (see :mod:`spigot.structures._sampling`).

        Projective: forward filtering backward sampling over the compiled inside charts, one
        inside pass per sentence then O(n^2) per sample. Non-projective: every head drawn from
        its exact conditional marginal given the heads drawn before it (matrix-tree theorem,
        O(n^4) per sample); single root draws the root child first from its marginal.
        """
        lens, mask = lengths
        if self.projective:
            heads = sample_projective(scores, lens, self.single_root, k, generator)
        else:
            heads = sample_nonprojective(scores, lens, mask, self.single_root, k, generator)
        B, n1 = heads.shape[1], heads.shape[2]
        z = heads_to_arcs(heads.reshape(k * B, n1), lens.repeat(k), scores)
        return z.view(k, B, n1, n1)
