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

This file is the command line (``parse_args``, ``main``); the rest is beside it:
``_timing.py`` checks and times one (operation, B, n), ``_measure.py`` runs the fresh-process
measurements (first call, memory; they re-run this script with ``--child``) and the BiLSTM
timing, ``_scaling.py`` the ``--scaling`` runs and plot, ``_report.py`` formats the output;
``peers.py`` wraps the peer libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
from _measure import bilstm_biaffine_ms, child_cold, child_memory, spawn  # noqa: E402
from _report import LABELS, environment, load_note, notes, rows_csv, table  # noqa: E402
from _scaling import SCALING_PEERS, SCALING_SIZES, plot_scaling, run_scaling  # noqa: E402
from _timing import Cell, Row, bench_size, fmt_ms, ragged_check, resolve_impls  # noqa: E402

# Peers emit deprecation/validation warnings on current torch; they are not our business here.
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

MAIN_PEERS = ("torch-struct", "supar", "networkx")


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
