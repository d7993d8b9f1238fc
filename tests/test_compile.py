"""``spigot compile`` compiles (or loads from the cache) every kernel entry point ahead of time."""

from __future__ import annotations

import json
import subprocess
import sys

from spigot.cli import main

MODULES = [
    "spigot._kernels",
    "spigot._kernels_cle",
    "spigot._kernels_mtt",
    "spigot._kernels_jvp",
    "spigot._kernels_sampling",
]

PROBE = f"""
import importlib, json, sys
from numba.core.registry import CPUDispatcher
if sys.argv[1] == "compile":
    from spigot._warmup import compile_kernels
    compile_kernels()
ready = {{}}
for name in {MODULES!r}:
    mod = importlib.import_module(name)
    for key, fn in vars(mod).items():
        if isinstance(fn, CPUDispatcher) and fn.__module__ == name and not key.startswith("_"):
            ready[name + "." + key] = len(fn.signatures) > 0
print(json.dumps(ready))
"""


def _entry_points(arg: str) -> dict[str, bool]:
    """Which public kernels of a fresh process have a compiled signature."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, arg], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_compile_readies_every_kernel_entry_point():
    before = _entry_points("none")
    assert before and not any(before.values())  # a fresh process has compiled nothing
    after = _entry_points("compile")
    assert after.keys() == before.keys()
    assert all(after.values()), [k for k, v in after.items() if not v]


def test_the_compile_command(capsys):
    assert main(["compile"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 17  # 4 kinds of trees x 4 code paths, and the total
    assert any("projective, multi root: sampling" in line for line in out)
    assert out[-1].startswith("spigot compile: every tree kernel ready in")
    assert main(["compile", "--quiet"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
