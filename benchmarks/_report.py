"""What ``bench_decoding.py`` prints and writes: the markdown tables, the CSV files, the
notes under a table, and the environment (versions, threads, CPU, load)."""

from __future__ import annotations

import csv
import os
import platform

import torch

import peers
from _timing import Cell, Row

LABELS = {
    "spigot": "ours",
    "torch-struct": "torch-struct",
    "supar": "supar",
    "networkx": "networkx",
}


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
