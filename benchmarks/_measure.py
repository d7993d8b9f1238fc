"""The measurements of ``bench_decoding.py`` besides the decoding tables: the first call of
ours and the peak memory, each in a fresh process (``spawn`` re-runs ``bench_decoding.py``
in its ``--child`` mode, which calls ``child_cold`` or ``child_memory``), and the BiLSTM +
biaffine timing shown for scale."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import peers
from _timing import make_inputs

# The script whose --child mode the fresh processes run.
BENCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_decoding.py")


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
    cmd = [sys.executable, BENCH_SCRIPT] + argv
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
