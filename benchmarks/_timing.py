"""Check, then time, every implementation of one operation at one (B, n): the cells of
``bench_decoding.py``'s tables.

Before any timing, the outputs of all implementations must agree (see ``check_outputs`` and
the docstring of ``bench_decoding.py``); a disagreement aborts the run.
"""

from __future__ import annotations

import gc
import statistics
import time
import traceback
from dataclasses import dataclass, field

import torch

import peers

ARGMAX_RTOL = 1e-4
MARGINAL_ATOL = 1e-4
# The ragged check is looser for marginals: torch-struct's matrix-tree adds eps=1e-5 to every
# exponentiated potential, padding included, which biases its marginals by ~(n_pad * 1e-5).
RAGGED_MARGINAL_ATOL = 5e-4


class Disagreement(SystemExit):
    pass


# ---------------------------------------------------------------------------------------
# Inputs, timing


def make_inputs(batch: int, n: int, seed: int, ragged: bool = False):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, n + 1, n + 1, generator=g, dtype=torch.float32)
    if ragged:
        lengths = torch.randint(1, n + 1, (batch,), generator=g)
        lengths[0] = n  # keep the padded size meaningful
    else:
        lengths = torch.full((batch,), n, dtype=torch.long)
    return scores, lengths


def fmt_ms(v: float) -> str:
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:.0f}"


@dataclass
class Cell:
    """One implementation at one (op, B, n): a time or a reason why there is none."""

    ms: float | None = None
    status: str = ""  # "not installed", "n/a", "skipped", "error", "unavailable"
    first_ms: float | None = None
    reps: int = 0
    detail: str = ""

    def text(self) -> str:
        return fmt_ms(self.ms) if self.ms is not None else self.status


@dataclass
class Row:
    op: str
    batch: int
    n: int
    cells: dict[str, Cell] = field(default_factory=dict)


def time_run(impl: peers.Impl, args: tuple, repeats: int, budget_s: float, t_call: float):
    """Median wall time (ms) of impl.run(*args) over repeats, after warm-up.

    The correctness check already ran the implementation once at this size (that is the
    first warm-up).  One more warm-up call follows unless a call takes > 1 s.  The number of
    repeats is cut so that the timed calls of one cell take about ``budget_s`` at most (at
    least one call).
    """
    if t_call < 1.0:
        t0 = time.perf_counter()
        impl.run(*args)
        t_call = time.perf_counter() - t0
    reps = max(1, min(repeats, int(budget_s / max(t_call, 1e-9))))
    times = []
    gc.collect()
    for _ in range(reps):
        t0 = time.perf_counter()
        impl.run(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0, reps


# ---------------------------------------------------------------------------------------
# Checks


def check_outputs(op, outs: dict, scores, lengths, marginal_atol=MARGINAL_ATOL, where=""):
    """Abort (raise Disagreement) unless all outputs agree; see module doc."""
    spec = peers.OP_SPEC[op]
    names = list(outs)
    if not names:
        return
    ref = "spigot" if "spigot" in outs else names[0]
    B = scores.shape[0]
    if spec["kind"] == "argmax":
        tscores = {}
        for name, z in outs.items():
            bad = peers.check_trees(z, lengths, spec["projective"], spec["single_root"])
            if bad:
                kind = ("projective " if spec["projective"] else "") + (
                    "single-root " if spec["single_root"] else ""
                )
                raise Disagreement(
                    f"ABORT [{op}{where}]: {name} returned a structure that is not a valid "
                    f"{kind}tree for sentence(s) {bad[:10]} (lengths {lengths[bad[:10]].tolist()})"
                )
            tscores[name] = peers.tree_score(z, scores)
        for name in names:
            a, r = tscores[name], tscores[ref]
            tol = ARGMAX_RTOL * torch.maximum(torch.maximum(a.abs(), r.abs()), torch.ones_like(a))
            bad = ((a - r).abs() > tol).nonzero().flatten().tolist()
            if bad:
                b = bad[0]
                raise Disagreement(
                    f"ABORT [{op}{where}]: argmax scores disagree: {name} vs {ref} on "
                    f"{len(bad)}/{B} sentences; e.g. sentence {b} (length {int(lengths[b])}): "
                    f"{float(a[b]):.6f} vs {float(r[b]):.6f}"
                )
    else:
        for name in names:
            mu = outs[name]
            if not torch.isfinite(mu).all():
                raise Disagreement(f"ABORT [{op}{where}]: {name} returned non-finite marginals")
            diff = (mu.double() - outs[ref].double()).abs()
            d = float(diff.max())
            if d >= marginal_atol:
                b = int(diff.flatten(1).max(1).values.argmax())
                raise Disagreement(
                    f"ABORT [{op}{where}]: marginals disagree: {name} vs {ref}: max abs diff "
                    f"{d:.3g} >= {marginal_atol:g} (worst sentence {b}, length {int(lengths[b])})"
                )


# ---------------------------------------------------------------------------------------
# Implementations available


def resolve_impls(op: str, names) -> tuple[dict, dict]:
    """Returns ({name: Impl}, {name: Cell with status}) for the libraries asked for."""
    impls, cells = {}, {}
    for name in names:
        try:
            impl = peers.get_impl(name, op)
        except ImportError as exc:
            if name == "spigot":
                cells[name] = Cell(status="unavailable", detail=f"import failed: {exc}")
            else:
                cells[name] = Cell(status="not installed", detail=str(exc))
            continue
        except Exception as exc:  # e.g. spigot's API not there yet
            cells[name] = Cell(status="unavailable", detail=f"{type(exc).__name__}: {exc}")
            continue
        if impl is None:
            cells[name] = Cell(status="n/a", detail="no such operation in this library")
            continue
        impls[name] = impl
    return impls, cells


def run_once(impls: dict, cells: dict, scores, lengths):
    """Run each implementation once (check + first warm-up); errors become table cells."""
    outs, prepared, t_first = {}, {}, {}
    for name, impl in list(impls.items()):
        try:
            args = impl.prepare(scores, lengths)
            t0 = time.perf_counter()
            raw = impl.run(*args)
            t_first[name] = time.perf_counter() - t0
            outs[name] = impl.finish(raw, scores, lengths)
            prepared[name] = args
        except Exception as exc:
            cells[name] = Cell(status="error", detail=f"{type(exc).__name__}: {exc}")
            print(f"  ! {name} failed on {tuple(scores.shape)}: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
            del impls[name]
    return outs, prepared, t_first


def bench_size(
    op, batch, n, names, args, *, budget_s, skip_above_s=None, predicted=None, check=True
) -> Row:
    scores, lengths = make_inputs(batch, n, args.seed)
    impls, cells = resolve_impls(op, names)
    if predicted:
        for name in list(impls):
            if predicted.get(name, 0.0) > skip_above_s:
                cells[name] = Cell(
                    status="skipped",
                    detail=f"predicted {predicted[name]:.0f} s per call > {skip_above_s:g} s",
                )
                del impls[name]
    outs, prepared, t_first = run_once(impls, cells, scores, lengths)
    if check:
        check_outputs(op, outs, scores, lengths, where=f" B={batch} n={n}")
    del outs
    for name, impl in impls.items():
        if skip_above_s is not None and t_first[name] > skip_above_s:
            # Too slow to time properly: report the (checking) call alone; larger sizes skip.
            cells[name] = Cell(
                ms=t_first[name] * 1000,
                first_ms=t_first[name] * 1000,
                reps=1,
                detail=f"one call only ({t_first[name]:.0f} s > {skip_above_s:g} s)",
            )
            continue
        ms, reps = time_run(impl, prepared[name], args.repeats, budget_s, t_first[name])
        cells[name] = Cell(ms=ms, first_ms=t_first[name] * 1000, reps=reps)
    return Row(op, batch, n, {k: cells[k] for k in names if k in cells})


def ragged_check(op, names, args):
    scores, lengths = make_inputs(min(args.batch, 8), args.n, args.seed + 1, ragged=True)
    impls, cells = resolve_impls(op, names)
    outs, _, _ = run_once(impls, cells, scores, lengths)
    check_outputs(
        op, outs, scores, lengths, RAGGED_MARGINAL_ATOL, where=f" ragged lengths {lengths.tolist()}"
    )
