"""The first optimizer steps of the joint stage, watched closely: why straight-through
destroys the pre-trained syntactic parser (the STE diagnosis of docs/results.md).

    python docs/results/propbank/first_steps.py [--experiment runs/propbank] [--seed 0]
        [--steps 200] [--every 20] [--dev-sentences 500] [--modes joint ste ste:0.1 ...]
        [--out OUT (default: docs/results/propbank/first_steps_seed<seed>)]

Every mode starts from the seed's pre-trained parser (``<experiment>/pretrain/seed<seed>``)
with the resolved config of its run in the experiment (:func:`mode_config`), so with the same
data, model, batches and optimizer as the run. It trains ``--steps`` optimizer steps of the
joint stage (at most the first epoch: PropBank's has 395) with the library's
:class:`~spigot.training.Trainer` and, every ``--every`` steps, logs over the steps since the
last record:

* ``sem`` and ``syn``: the mean per-sentence norm of the gradient that reaches the syntactic
  arc scores from the semantic loss (through the tree and the estimator) and from the
  syntactic loss (:class:`spigot.models.diagnostics.GradNormMonitor`), their ratio and cosine;
* ``const``: the share of the semantic gradient's squared norm that is constant over the
  candidate heads of each modifier (its per-column mean). That part changes no argmax: a
  tree's score rises or falls by the same amount whichever head a word takes;
* ``syn0``: the share of sentences whose syntactic gradient is exactly 0 (the hinge loss is
  satisfied: the parser's tree is the gold tree by the margin);

and then scores the parser on the first ``--dev-sentences`` dev sentences (UAS; and the
semantic LF). Nothing is read from the test set.

Mode ``ste-centered`` is the control of the ``const`` hypothesis: straight-through with the
per-column mean removed from its gradient before it reaches the parser
(:func:`center_columns`): the same trees, the same argmax-changing part of the gradient.

It writes ``OUT.md`` and ``OUT.csv``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spigot.config import load_config
from spigot.models.diagnostics import GradNormMonitor
from spigot.pipelines.syn2sem.task import Syn2SemTask
from spigot.training import JsonlLog, Trainer


class ColumnMonitor(GradNormMonitor):
    """:class:`GradNormMonitor` that also measures, on the semantic path, the share of the
    gradient constant over each modifier's candidate heads, and on the syntactic path the
    sentences whose gradient is exactly 0."""

    def reset(self) -> None:
        super().reset()
        self.const_sum, self.total_sum, self.syn_zero = 0.0, 0.0, 0

    def watch(self, s: Tensor, path: str, mask: Tensor) -> Tensor:
        view = super().watch(s, path, mask)
        if view is s:
            return s

        def hook(grad: Tensor) -> None:
            g = torch.where(mask, grad.detach(), 0)
            if path == "syntactic":
                self.syn_zero += int((g.abs().sum(dim=(1, 2)) == 0).sum())
                return
            heads = mask.sum(dim=1, keepdim=True).clamp(min=1)  # candidate heads per modifier
            mean = g.sum(dim=1, keepdim=True) / heads
            const = torch.where(mask, mean, 0)
            self.const_sum += float(const.pow(2).sum())
            self.total_sum += float(g.pow(2).sum())

        view.register_hook(hook)
        return view

    def summary(self) -> dict[str, Any]:
        n = max(self.n_sentences, 1)
        extra = {
            "const": self.const_sum / self.total_sum if self.total_sum > 0 else None,
            "syn0": self.syn_zero / n,
        }
        return {**super().summary(), **extra}


def center_columns(g: Tensor, mask: Tensor) -> Tensor:
    """``g [B, n+1, n+1]`` minus its mean over each modifier's candidate heads (``mask``)."""
    g = torch.where(mask, g, 0)
    mean = g.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(mask, g - mean, 0)


def mode_config(experiment: Path, mode: str, seed: int) -> Any:
    """The config of ``mode`` (``ste:0.1``: ``mode = "ste"``, ``train.eta = 0.1``): the
    resolved config of the seed's ``joint`` run with ``mode`` and ``train.eta`` replaced (the
    experiment's runs of one seed differ in nothing else). ``ste-centered`` is ``ste``; see
    :func:`watch_mode`."""
    path = experiment / "joint" / f"seed{seed}" / "config.toml"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run the experiment's joint run of seed {seed} first")
    name, _, eta = mode.partition(":")
    name = "ste" if name == "ste-centered" else name
    return load_config(path, {"mode": name, "train.eta": float(eta or 0.0)})


def watch_mode(
    experiment: Path, mode: str, seed: int, steps: int, every: int, n_dev: int
) -> list[dict[str, Any]]:
    """Train the first ``steps`` joint steps of ``mode``; one record per ``every`` steps."""
    config = mode_config(experiment, mode, seed)
    splits = Syn2SemTask.load_splits(config)
    task = Syn2SemTask.from_config(config, splits["train"])
    task.load_syntax(config.train.init_syntax)
    monitor = ColumnMonitor()
    task.model.grad_monitor = monitor
    if mode.startswith("ste-centered"):  # the control: STE without its per-column constant
        decide = task.model.decide_tree

        def centered(s: Tensor, batch: Any) -> Tensor:
            if task.model.training and s.requires_grad:
                mask = task.model.tree.mask(s, batch.lengths)
                s = s.view_as(s)
                s.register_hook(lambda g: center_columns(g, mask))
            return decide(s, batch)

        task.model.decide_tree = centered  # type: ignore[method-assign]
    dev = splits["dev"][:n_dev]
    batches = list(task.batches(splits["train"], train=True))[:steps]
    records: list[dict[str, Any]] = []

    def score(step: int, grads: dict[str, Any]) -> None:
        task.model.eval()
        with torch.no_grad():
            m = task.evaluate(dev)
        task.model.train()
        records.append({"mode": mode, "step": step, **grads, "uas": m["uas"], "lf": m["lf"]})
        print(_row(records[-1]), file=sys.stderr, flush=True)

    score(0, {})
    step = 0

    def on_checkpoint(state: dict[str, Any]) -> None:
        nonlocal step
        step = state["partial"]["step"]
        score(step, monitor.summary())

    t = config.train
    trainer = Trainer(
        task.model, lr=t.lr, clip=t.clip, log=JsonlLog(), progress=False, checkpoint_every=every
    )
    trainer.fit(
        batches,
        lambda b: task.model.loss(b, t.syntactic_loss, t.syntactic_weight),
        lambda: {"lf": 0.0},
        epochs=1,
        select="lf",
        phase="joint",
        on_checkpoint=on_checkpoint,
    )
    return records


COLUMNS = ("mode", "step", "uas", "lf", "grad_semantic", "grad_syntactic", "grad_ratio")
COLUMNS += ("grad_cosine", "const", "syn0")


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "–"
    if key in ("uas", "lf", "const", "syn0"):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _row(rec: dict[str, Any]) -> str:
    return "| " + " | ".join(_fmt(rec.get(k), k) for k in COLUMNS) + " |"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", type=Path, default=Path("runs/propbank"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--dev-sentences", type=int, default=500)
    modes = ["joint", "ste", "ste-centered", "ste:0.1", "marginals", "spigot"]
    ap.add_argument("--modes", nargs="+", default=modes)
    ap.add_argument("--out", type=Path, help="default: docs/results/propbank/first_steps_seedN")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = Path(f"docs/results/propbank/first_steps_seed{args.seed}")
    records: list[dict[str, Any]] = []
    for mode in args.modes:
        records += watch_mode(
            args.experiment, mode, args.seed, args.steps, args.every, args.dev_sentences
        )
    header = (
        "| mode | step | dev UAS | dev LF | sem | syn | sem/syn | cosine | const % | syn = 0 % |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    command = "python docs/results/propbank/first_steps.py " + " ".join(argv or sys.argv[1:])
    text = (
        f"# The first joint steps, seed {args.seed}\n\n`{command.strip()}`\n\n"
        f"Dev scores on the first {args.dev_sentences} dev sentences; gradient columns are "
        f"means over the {args.every} steps before the row (see the script's docstring).\n\n"
        + header
        + "\n".join(_row(r) for r in records)
        + "\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    with args.out.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
