#!/usr/bin/env python
"""Decoding benchmark: spigot's dependency-tree algorithms against torch-struct, SuPar, networkx.

Run ``python benchmarks/bench_decoding.py --help``; see benchmarks/README.md for installing
the peers.  The script installs nothing.  Operations:

eisner        projective argmax, single root
eisner-multi  projective argmax, any number of root children
cle           non-projective argmax (Chu-Liu-Edmonds), single root
mtt           non-projective arc marginals (matrix-tree theorem), single root
inside        projective arc marginals *with gradient*: log-partition forward + backward
              (the marginals are the gradient), single root

Inputs are float32 N(0, 1) scores ``[B, n+1, n+1]`` (``scores[b, h, m]``, index 0 = root)
drawn with a fixed seed, every sentence of length n.  Before any timing, every
implementation's output is checked: argmax outputs must be valid trees of the requested kind
with the same score (sum of the chosen arcs' scores) within 1e-4 relative for every sentence;
marginals must agree within 1e-4 (max abs diff).  A disagreement aborts the run.  The same
check is also run on a ragged batch (random lengths) at the main size.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402

# Peers emit deprecation/validation warnings on current torch; they are not our business here.
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

ARGMAX_RTOL = 1e-4
MARGINAL_ATOL = 1e-4
# The ragged check is looser for marginals: torch-struct's matrix-tree adds eps=1e-5 to every
# exponentiated potential, padding included, which biases its marginals by ~(n_pad * 1e-5).
RAGGED_MARGINAL_ATOL = 5e-4
SCALING_SIZES = (10, 20, 40, 80, 160, 320)
MAIN_PEERS = ("torch-struct", "supar", "networkx")
SCALING_PEERS = ("torch-struct", "supar")  # networkx only in the main table
LABELS = {
    "spigot": "ours",
    "torch-struct": "torch-struct",
    "supar": "supar",
    "networkx": "networkx",
}


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


# ---------------------------------------------------------------------------------------
# Tables


def table(rows: list[Row], names) -> str:
    peer_names = [p for p in names if p != "spigot"]
    head = ["operation", "B", "n", "ours (ms)"] + [f"{LABELS[p]} (ms)" for p in peer_names]
    head += [f"{LABELS[p]}/ours" for p in peer_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ours = r.cells.get("spigot", Cell(status="unavailable"))
        vals = [r.op, str(r.batch), str(r.n), ours.text()]
        ratios = []
        for p in peer_names:
            c = r.cells.get(p, Cell(status="not run"))
            vals.append(c.text())
            if c.ms is not None and ours.ms is not None and ours.ms > 0:
                ratios.append(f"{c.ms / ours.ms:.2f}")
            else:
                ratios.append("–")
        lines.append("| " + " | ".join(vals + ratios) + " |")
    return "\n".join(lines)


def rows_csv(rows: list[Row], path: str):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["operation", "B", "n", "implementation", "median_ms", "repeats", "status"])
        for r in rows:
            for name, c in r.cells.items():
                w.writerow(
                    [
                        r.op,
                        r.batch,
                        r.n,
                        LABELS.get(name, name),
                        "" if c.ms is None else f"{c.ms:.4f}",
                        c.reps,
                        c.status,
                    ]
                )


def notes(rows: list[Row]) -> list[str]:
    seen, out = set(), []
    for r in rows:
        for name, c in r.cells.items():
            if c.detail and (name, c.status, c.detail) not in seen:
                seen.add((name, c.status, c.detail))
                out.append(f"- {LABELS.get(name, name)} [{r.op} n={r.n}] {c.status}: {c.detail}")
    return out


# ---------------------------------------------------------------------------------------
# Environment


def load_note(what: str) -> str:
    """The 1/5/15-min load averages, with a warning when other work competes for the CPU."""
    try:
        load = os.getloadavg()
    except OSError:
        return f"{what}: unknown"
    text = f"{what}: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    if load[0] > 0.5:
        text += " (WARNING: the machine is not idle; timings are inflated and noisy)"
    return text


def environment() -> list[str]:
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()} (intra-op, default) / "
        f"{torch.get_num_interop_threads()} (inter-op), os.cpu_count() {os.cpu_count()}",
    ]
    try:
        import numba

        lines.append(f"numba {numba.__version__}, numba threads {numba.get_num_threads()}")
    except ImportError:
        lines.append("numba not installed")
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines.append(f"cpu: {cpu}; platform {platform.platform()}")
    lines.append(load_note("load average at start"))
    try:
        from importlib.metadata import version

        lines.append(f"spigot (torch-spigot) {version('torch-spigot')}")
    except Exception:
        lines.append("spigot: not installed as a distribution (imported from the path if at all)")
    for p in peers.PEERS:
        st = peers.peer_status(p)
        text = f"{p} {st.version}" if st.available else f"{p}: {st.note}"
        if st.available and st.note:
            text += f" ({st.note})"
        lines.append(text)
    return lines


# ---------------------------------------------------------------------------------------
# Children (fresh processes)


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def _torch_peak_bytes(fn) -> int | None:
    """Peak of live torch CPU allocations during fn(), from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    try:
        evs = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        evs.sort(key=lambda e: e.start_ns())
        cur = peak = 0
        for e in evs:
            cur += e.nbytes()
            peak = max(peak, cur)
        return peak
    except Exception:
        return None


def child_memory(name: str, op: str, batch: int, n: int, seed: int) -> dict:
    impl = peers.get_impl(name, op)
    # Tiny call first: imports, lazy initialisation, numba compilation.
    impl(*make_inputs(2, 5, seed))
    scores, lengths = make_inputs(batch, n, seed)
    args = impl.prepare(scores, lengths)
    gc.collect()
    res = {"name": name}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        base = _status_kb()["VmRSS"]
        out = impl.run(*args)
        res["rss_peak_extra_mb"] = (_status_kb()["VmHWM"] - base) / 1024
        del out
    except OSError as exc:
        res["rss_error"] = str(exc)
    args = impl.prepare(scores, lengths)
    peak = _torch_peak_bytes(lambda: impl.run(*args))
    res["torch_peak_mb"] = None if peak is None else peak / 2**20
    return res


def child_cold(ops, batch: int, n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    import spigot  # noqa: F401

    res = {"import_s": time.perf_counter() - t0, "ops": {}}
    for op in ops:
        impl = peers.spigot_impl(op)
        args = impl.prepare(*make_inputs(batch, n, seed))
        t0 = time.perf_counter()
        impl.run(*args)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        impl.run(*args)
        second = time.perf_counter() - t0
        res["ops"][op] = {"first_ms": first * 1000, "second_ms": second * 1000}
    return res


def spawn(argv: list[str], env=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": err}


# ---------------------------------------------------------------------------------------
# BiLSTM + biaffine, for scale


def bilstm_biaffine_ms(batch: int, n: int, repeats: int, seed: int) -> float:
    """Median ms of forward+backward of a 2-layer BiLSTM (input 100, 200 units per
    direction) + biaffine arc scorer (MLPs of 500, Dozat & Manning style) with a
    cross-entropy head-selection loss, on a batch of ``batch`` sentences of ``n`` words
    (plus the root token)."""
    nn = torch.nn
    torch.manual_seed(seed)

    class Parser(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(100, 200, num_layers=2, bidirectional=True, batch_first=True)
            self.dep = nn.Sequential(nn.Linear(400, 500), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(400, 500), nn.ReLU())
            self.W = nn.Parameter(torch.randn(500, 500) / 500**0.5)
            self.u = nn.Parameter(torch.zeros(500))

        def forward(self, x):
            h, _ = self.lstm(x)
            d, hd = self.dep(h), self.head(h)
            # scores[b, h, m] = hd_h^T W d_m + u^T hd_h
            return torch.einsum("bhi,ij,bmj->bhm", hd, self.W, d) + (hd @ self.u)[:, :, None]

    model = Parser()
    x = torch.randn(batch, n + 1, 100)
    gold = torch.randint(0, n + 1, (batch, n))

    def step():
        model.zero_grad(set_to_none=True)
        s = model(x)  # [B, h, m]
        logits = s.transpose(1, 2)[:, 1:, :]  # [B, m (words), h]
        loss = nn.functional.cross_entropy(logits.reshape(-1, n + 1), gold.reshape(-1))
        loss.backward()

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


# ---------------------------------------------------------------------------------------
# Scaling


def run_scaling(args, ops) -> list[Row]:
    names = ["spigot"] + [p for p in SCALING_PEERS if p in args.peers]
    rows = []
    for op in ops:
        last: dict[str, tuple[int, float]] = {}  # name -> (n, seconds per call)
        dropped: set[str] = set()
        for n in args.scaling_sizes:
            predicted = {}
            for name in names:
                if name in dropped:
                    predicted[name] = math.inf
                elif name in last:
                    n0, t0 = last[name]
                    predicted[name] = t0 * (n / n0) ** 3
            row = bench_size(
                op,
                args.scaling_batch,
                n,
                names,
                args,
                budget_s=args.budget,
                skip_above_s=args.max_call,
                predicted=predicted,
            )
            for name, c in row.cells.items():
                if c.ms is not None:
                    last[name] = (n, c.ms / 1000)
                elif c.status in ("skipped", "error"):
                    dropped.add(name)
            rows.append(row)
            print(
                f"  scaling {op:12s} n={n:4d}: "
                + ", ".join(f"{LABELS[k]} {c.text()}" for k, c in row.cells.items()),
                flush=True,
            )
    return rows


def plot_scaling(rows: list[Row], path: str, batch: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r.op for r in rows))
    cols = min(3, len(ops))
    nrows = math.ceil(len(ops) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    styles = {
        "spigot": ("C0", "o"),
        "torch-struct": ("C1", "s"),
        "supar": ("C2", "^"),
        "networkx": ("C3", "x"),
    }
    for ax, op in zip(axes.flat, ops, strict=False):
        names = list(dict.fromkeys(k for r in rows if r.op == op for k in r.cells))
        for name in names:
            pts = [
                (r.n, r.cells[name].ms)
                for r in rows
                if r.op == op and name in r.cells and r.cells[name].ms is not None
            ]
            if pts:
                color, marker = styles.get(name, ("k", "."))
                ax.plot(*zip(*pts, strict=True), marker=marker, color=color, label=LABELS[name])
        ax.set_xscale("log", base=2)
        sizes = sorted({r.n for r in rows if r.op == op})
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_title(f"{op} (B={batch})")
        ax.set_xlabel("sentence length n")
        ax.set_ylabel("median time per batch (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(ops) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=40, help="sentence length (words)")
    ap.add_argument("--repeats", type=int, default=20, help="timed repeats (median reported)")
    ap.add_argument("--ops", default=",".join(peers.OPS), help="comma-separated operations")
    ap.add_argument(
        "--peers", default=",".join(MAIN_PEERS), help="comma-separated peers to include"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scaling", action="store_true", help="also time n = 10 ... 320")
    ap.add_argument("--scaling-batch", type=int, default=8)
    ap.add_argument(
        "--scaling-sizes", default=",".join(map(str, SCALING_SIZES)), help="comma-separated n"
    )
    ap.add_argument(
        "--max-call",
        type=float,
        default=20.0,
        help="scaling: skip an implementation whose predicted time per call exceeds this (s)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of timed calls per cell at most (repeats are cut, at least 1)",
    )
    ap.add_argument("--mem-batch", type=int, default=32)
    ap.add_argument("--mem-n", type=int, default=100)
    ap.add_argument("--out", default=None, help="directory for scaling.png, CSV and markdown")
    ap.add_argument("--no-cold-start", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-lstm", action="store_true")
    ap.add_argument("--child", choices=["cold", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.ops = [o for o in args.ops.split(",") if o]
    for o in args.ops:
        if o not in peers.OPS:
            ap.error(f"unknown operation {o!r}; choose from {', '.join(peers.OPS)}")
    args.peers = [p for p in args.peers.split(",") if p]
    for p in args.peers:
        if p not in MAIN_PEERS:
            ap.error(f"unknown peer {p!r}; choose from {', '.join(MAIN_PEERS)}")
    args.scaling_sizes = [int(s) for s in args.scaling_sizes.split(",") if s]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child == "memory":
        print(
            "RESULT "
            + json.dumps(child_memory(args.impl, "inside", args.mem_batch, args.mem_n, args.seed))
        )
        return 0
    if args.child == "cold":
        print("RESULT " + json.dumps(child_cold(args.ops, args.batch, args.n, args.seed)))
        return 0

    out_md: list[str] = []

    def emit(text: str = ""):
        print(text, flush=True)
        out_md.append(text)

    emit("## Environment\n")
    for line in environment():
        emit(f"- {line}")
    emit()

    names = ["spigot"] + args.peers
    main_rows: list[Row] = []
    print(f"Checking and timing at B={args.batch}, n={args.n} ...", flush=True)
    for op in args.ops:
        ragged_check(op, names, args)
        row = bench_size(op, args.batch, args.n, names, args, budget_s=args.budget)
        main_rows.append(row)
        print(f"  {op}: " + ", ".join(f"{LABELS[k]} {c.text()}" for k, c in row.cells.items()))
    emit(f"\n## Decoding, B={args.batch}, n={args.n} (median ms per batch, float32)\n")
    emit(table(main_rows, names))
    emit()
    emit(
        "All implementations agreed (argmax tree scores within 1e-4 relative, marginals within "
        "1e-4 max abs) on these inputs and on a ragged batch before timing."
    )
    for line in notes(main_rows):
        emit(line)
    reps = {f"{LABELS[k]}:{r.op}": c.reps for r in main_rows for k, c in r.cells.items() if c.reps}
    if any(v < args.repeats for v in reps.values()):
        cut = ", ".join(f"{k}={v}" for k, v in reps.items() if v < args.repeats)
        emit(f"- repeats cut by the {args.budget:g} s time budget: {cut}")

    ours_ok = any(r.cells.get("spigot", Cell()).ms is not None for r in main_rows)

    if not args.no_cold_start and ours_ok:
        emit(f"\n## First call of ours (fresh process, B={args.batch}, n={args.n})\n")
        with tempfile.TemporaryDirectory(prefix="spigot-numba-cache-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            argv = [
                "--child",
                "cold",
                "--ops",
                ",".join(args.ops),
                "--batch",
                str(args.batch),
                "--n",
                str(args.n),
                "--seed",
                str(args.seed),
            ]
            runs = [spawn(argv, env), spawn(argv, env)]
        if any("error" in r for r in runs):
            emit(f"cold-start measurement failed: {[r.get('error') for r in runs]}")
        else:
            emit(
                "| operation | 1st process: first call (ms) | 2nd process (numba cache warm): "
                "first call (ms) | steady state (ms) |"
            )
            emit("|---|---|---|---|")
            emit(
                f"| `import spigot` | {runs[0]['import_s'] * 1000:.0f} | "
                f"{runs[1]['import_s'] * 1000:.0f} | – |"
            )
            steady = {r.op: r.cells["spigot"].ms for r in main_rows if "spigot" in r.cells}
            for op in args.ops:
                a, b = runs[0]["ops"][op], runs[1]["ops"][op]
                st = steady.get(op)
                emit(
                    f"| {op} | {fmt_ms(a['first_ms'])} | {fmt_ms(b['first_ms'])} | "
                    f"{fmt_ms(st) if st is not None else '–'} |"
                )
            emit(
                "\nBoth processes share a fresh, initially empty NUMBA_CACHE_DIR: the first "
                "pays numba compilation (if any), the second loads the compiled code from the "
                "on-disk cache (if the kernels are compiled with cache=True)."
            )

    if not args.no_lstm:
        lstm_ms = bilstm_biaffine_ms(32, 40, max(5, args.repeats // 2), args.seed)
        emit("\n## For scale: BiLSTM + biaffine forward+backward vs our decoding (B=32, n=40)\n")
        emit("| component | ms per batch | sentences/s |")
        emit("|---|---|---|")
        emit(
            f"| 2-layer BiLSTM (100 -> 2x200) + biaffine arc scorer, fwd+bwd | "
            f"{fmt_ms(lstm_ms)} | {32 / lstm_ms * 1000:.0f} |"
        )
        if args.batch == 32 and args.n == 40:
            for r in main_rows:
                c = r.cells.get("spigot")
                if c is not None and c.ms is not None:
                    emit(f"| ours: {r.op} | {fmt_ms(c.ms)} | {r.batch / c.ms * 1000:.0f} |")
        else:
            emit("(our decoding rows omitted: the main table was not run at B=32, n=40)")

    if not args.no_memory:
        emit(
            f"\n## Peak extra memory, inside (projective marginals with gradient), "
            f"B={args.mem_batch}, n={args.mem_n}\n"
        )
        emit("| implementation | peak RSS increase (MB) | peak live torch allocations (MB) |")
        emit("|---|---|---|")
        for name in [k for k in names if k != "networkx"]:  # networkx has no inside
            impls, cells = resolve_impls("inside", [name])
            if name not in impls:
                if cells[name].status != "n/a":  # n/a: that library has no such operation
                    emit(f"| {LABELS[name]} | {cells[name].status} | {cells[name].status} |")
                continue
            res = spawn(
                [
                    "--child",
                    "memory",
                    "--impl",
                    name,
                    "--mem-batch",
                    str(args.mem_batch),
                    "--mem-n",
                    str(args.mem_n),
                    "--seed",
                    str(args.seed),
                ]
            )
            if "error" in res:
                emit(f"| {LABELS[name]} | error: {res['error']} | – |")
                continue
            rss = res.get("rss_peak_extra_mb")
            tp = res.get("torch_peak_mb")
            emit(
                f"| {LABELS[name]} | {'n/a' if rss is None else f'{rss:.1f}'} | "
                f"{'n/a' if tp is None else f'{tp:.1f}'} |"
            )
        emit(
            "\nEach implementation runs in a fresh process: one tiny call first (imports, "
            "numba compilation), inputs prepared, then the peak RSS (VmHWM) is reset through "
            "/proc/self/clear_refs and one log-partition forward+backward is run; the first "
            "column is VmHWM minus the RSS just before the call (everything: torch, numpy, "
            "Python objects; pages already resident and reused are not counted). The second "
            "column is the peak of live torch CPU allocations over a second call, from "
            "torch.profiler's memory events (misses numpy/numba buffers). The input and its "
            "gradient (B x (n+1)^2 floats, about "
            f"{args.mem_batch * (args.mem_n + 1) ** 2 * 4 / 2**20:.2g} MB each) are included "
            "where allocated during the call."
        )

    scaling_rows: list[Row] = []
    if args.scaling:
        print(f"\nScaling at B={args.scaling_batch}, n = {args.scaling_sizes} ...", flush=True)
        scaling_rows = run_scaling(args, args.ops)
        sc_names = ["spigot"] + [p for p in SCALING_PEERS if p in args.peers]
        emit(f"\n## Scaling, B={args.scaling_batch} (median ms per batch)\n")
        emit(table(scaling_rows, sc_names))
        emit(
            f"\nAn implementation is skipped at a size when its time per call, extrapolated "
            f"cubically from the previous size, exceeds {args.max_call:g} s "
            "(and at all larger sizes)."
        )
        for line in notes(scaling_rows):
            emit(line)

    emit(f"\n- {load_note('load average at the end')}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        rows_csv(main_rows, os.path.join(args.out, "decoding.csv"))
        if scaling_rows:
            rows_csv(scaling_rows, os.path.join(args.out, "scaling.csv"))
            plot_scaling(scaling_rows, os.path.join(args.out, "scaling.png"), args.scaling_batch)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write("\n".join(out_md) + "\n")
        print(
            f"\nwrote {args.out}/: decoding.csv, results.md"
            + (", scaling.csv, scaling.png" if scaling_rows else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
