"""Input checks shared by every structure: clear ``ValueError`` messages naming the argument."""

from __future__ import annotations

import torch
from torch import Tensor


def check_floating(x: object, name: str, min_dim: int) -> Tensor:
    """``x`` must be a floating-point tensor with at least ``min_dim`` dimensions."""
    if not isinstance(x, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"`{name}` must have a floating dtype (float16/32/64), got {x.dtype}")
    if x.device.type == "meta":
        raise ValueError(
            f"`{name}` is a meta tensor (shape only, no values); structured argmax, marginals "
            "and projections need values: pass a CPU or CUDA tensor"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"`{name}` must have at least {min_dim} dimensions, got shape {tuple(x.shape)}"
        )
    return x


def check_arc_scores(scores: object, name: str = "scores") -> Tensor:
    """Arc scores must be ``[B, n+1, n+1]`` floating point with ``n >= 1``."""
    if isinstance(scores, Tensor) and scores.dim() != 3:
        raise ValueError(
            f"`{name}` must have shape [batch, n+1, n+1] (3 dimensions), "
            f"got {scores.dim()} dimensions, shape {tuple(scores.shape)}"
        )
    s = check_floating(scores, name, 3)
    if s.shape[-1] != s.shape[-2]:
        raise ValueError(
            f"`{name}` must be square in its last two dimensions [batch, n+1, n+1], "
            f"got shape {tuple(s.shape)}"
        )
    if s.shape[-1] < 2:
        raise ValueError(
            f"`{name}` must have n+1 >= 2 (the root plus at least one word), got shape "
            f"{tuple(s.shape)}"
        )
    return s


def check_lengths(lengths: object, batch: int, n: int, device: torch.device) -> Tensor:
    """``lengths`` must be ``[batch]`` integers in ``1..n``; ``None`` means every sentence is full.

    Returns a ``long`` tensor on ``device``.
    """
    if lengths is None:
        return torch.full((batch,), n, dtype=torch.long, device=device)
    if not isinstance(lengths, Tensor):
        raise ValueError(f"`lengths` must be a torch.Tensor or None, got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"`lengths` must have an integer dtype, got {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(
            f"`lengths` must have shape [batch] = [{batch}], got {tuple(lengths.shape)}"
        )
    if batch > 0:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > n:
            raise ValueError(
                f"`lengths` must lie in 1..{n} (the number of words; scores are [batch, n+1, n+1] "
                f"with n = {n}), got values in {lo}..{hi}"
            )
    return lengths.to(device=device, dtype=torch.long)


def sum_is_finite(x: Tensor) -> bool:
    """One pass that proves every entry of ``x`` finite when it returns True (a NaN or an inf
    makes the sum NaN or inf); False when some entry is not finite or the sum overflows."""
    xd = x.detach()
    acc = torch.promote_types(xd.dtype, torch.float32) if xd.is_floating_point() else None
    return xd.numel() == 0 or bool(torch.isfinite(xd.sum(dtype=acc)))


def check_finite(x: Tensor, mask: Tensor | None, name: str) -> bool:
    """Entries of ``x`` where ``mask`` is true (all when ``None``) must be finite. Returns
    whether every entry is finite, those outside ``mask`` included (callers that mask ``x``
    next can then skip the test)."""
    # one pass for the common case; only an overflowing sum or a non-finite entry (masked or
    # not) goes on to the entrywise test
    if sum_is_finite(x):
        return True
    xd = x.detach()
    nonfinite = ~torch.isfinite(xd)
    bad = nonfinite if mask is None else nonfinite & mask
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        kind = "NaN" if bool(torch.isnan(xd[idx])) else "inf"
        raise ValueError(
            f"`{name}` must be finite on valid entries, found {kind} at index {idx} "
            f"({int(bad.sum())} non-finite entries)"
        )
    return not bool(nonfinite.any())


#: Largest score magnitude the tree algorithms accept. Sums and differences of up to ``2 n``
#: scores must stay far from float64 overflow (1.8e308), and the log-space recurrences need
#: room below the smallest such sum for the log of an impossible weight; beyond 1e100 a
#: score's unit digit is lost anyway (float64 keeps 16 digits).
MAX_ABS_SCORE = 1e100


def check_magnitude(x: Tensor, mask: Tensor, name: str, bound: float = MAX_ABS_SCORE) -> None:
    """Entries of ``x`` where ``mask`` is true must satisfy ``|x| <= bound``."""
    big = (x.detach().abs() > bound) & mask
    if bool(big.any()):
        idx = tuple(int(i) for i in big.nonzero()[0])
        raise ValueError(
            f"`{name}` must have |values| <= {bound:g} on valid entries, found "
            f"{float(x.detach()[idx]):g} at index {idx}: sums of that many scores would lose "
            "every digit or overflow float64; rescale the scores"
        )
