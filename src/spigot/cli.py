"""The ``spigot`` command line.

::

    spigot train CONFIG [--set KEY=VALUE ...] [--out DIR] [--overwrite]
    spigot train --resume DIR
    torchrun --nproc_per_node=N -m spigot train CONFIG ...   (data-parallel, one run)
    spigot evaluate CHECKPOINT --data PATH [--json]
    spigot predict CHECKPOINT --data PATH --output FILE
    spigot experiment syn2sem [--config CONFIG] [--seeds 0 1] [--modes pipeline ste ...]
                              [--out DIR] [--jobs N] [--set KEY=VALUE ...] [--no-grid]

``--data`` is a ``.conllu`` (optionally ``.gz``) or ``.sdp`` file, or ``synthetic:train``,
``synthetic:dev``, ``synthetic:test`` for the synthetic treebank of the checkpoint's config.
Heavy modules (torch, the models) are imported only once a command runs. Errors are one line,
``spigot COMMAND: error: MESSAGE``, with exit status 1 (``SPIGOT_DEBUG=1``: the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from spigot.data import download as data_download

__all__ = ["build_parser", "main"]

EXPERIMENTS = ("syn2sem", "sem2sent", "estimators")  # = spigot.experiments.experiment_names()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spigot",
        description="Train, evaluate and run pipelines with hard structured decisions "
        "(SPIGOT, straight-through, structured attention).",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train one model from a TOML config")
    t.add_argument(
        "config",
        nargs="?",
        help="TOML config file (see configs/ and docs/pipeline.md); optional with --resume",
    )
    t.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set mode=ste train.epochs=3",
    )
    t.add_argument("--out", help="run directory (default: runs/<config>-<mode>-seed<seed>)")
    t.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the interrupted run in DIR from its last.pt (config: DIR/config.toml)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="train into a directory that already holds a run: its run files are removed first",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="score a checkpoint on gold data")
    e.add_argument("checkpoint", help="best.pt written by 'spigot train'")
    e.add_argument("--data", required=True, help="file, or synthetic:dev / synthetic:test")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("predict", help="parse a file with a checkpoint")
    r.add_argument("checkpoint", help="best.pt written by 'spigot train'")
    r.add_argument("--data", required=True, help="input file (.conllu or .sdp) or synthetic:*")
    r.add_argument(
        "--output", required=True, help="output file: CoNLL-U (HEAD, DEPS), or SDP for .sdp input"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    c = sub.add_parser(
        "compile",
        help="compile the tree kernels ahead of time (about a minute once per install; "
        "otherwise paid by the first call of each)",
    )
    c.add_argument("--quiet", action="store_true", help="print only the total")

    x = sub.add_parser("experiment", help="train every mode over several seeds; results table")
    x.add_argument("name", choices=EXPERIMENTS, help="which experiment")
    x.add_argument(
        "--config",
        help="TOML config (default: the small synthetic config); its [experiment] table, if "
        "any, gives the modes, seeds, per-mode seed counts and train.eta grid",
    )
    x.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds (default: the config's [experiment] seeds, or 0 1)",
    )
    x.add_argument(
        "--modes",
        nargs="+",
        default=None,
        help="the pipeline's modes or any registered estimator (syn2sem: pipeline joint ste "
        "marginals spigot gold none ...; sem2sent: bilstm gold pipeline joint ste marginals "
        "spigot ...; estimators: the estimators); default: the config's [experiment] modes, "
        "or the experiment's defaults",
    )
    x.add_argument(
        "--no-grid",
        action="store_true",
        help="ignore the config's [experiment] eta_grid: train.eta as configured for every "
        "mode (estimators: each estimator's default options at one learning rate)",
    )
    x.add_argument("--out", default=None, help="output directory (default: runs/experiment-NAME)")
    x.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="runs in parallel, one CPU thread each (default: 2)",
    )
    x.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides (estimators: epochs=, batch=, lrs=a,b,c)",
    )
    x.add_argument(
        "--separate-pretraining",
        action="store_true",
        help="with train.pretrain_epochs > 0, pre-train the syntactic parser inside every run "
        "instead of once per seed",
    )
    x.add_argument(
        "--executor",
        choices=("local", "slurm", "submitit-local"),
        default="local",
        help="where the runs go: worker processes here (local, --jobs of them), one Slurm job "
        "each through submitit (slurm; pip install 'torch-spigot[cluster]'), or submitit's "
        "local executor (submitit-local, for trying the Slurm path)",
    )
    x.add_argument("--slurm-partition", default=None, help="Slurm partition")
    x.add_argument("--slurm-time", type=int, default=None, help="time limit per run, minutes")
    x.add_argument("--slurm-gpus", type=int, default=None, help="GPUs per run")
    x.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per run")
    x.add_argument("--slurm-mem-gb", type=int, default=None, help="memory per run, GB")
    x.add_argument("--slurm-account", default=None, help="Slurm account")
    x.add_argument(
        "--status",
        action="store_true",
        help="train nothing: list every run of the experiment with what a run of this command "
        "would do with it (reuse, resume, restart, train) and why, and estimate the time left",
    )
    x.add_argument(
        "--rerun",
        action="store_true",
        help="retrain runs whose directory already holds finished results with the same config",
    )
    x.add_argument("--no-progress", action="store_true", help="no progress bars")
    for command in (t, e, r, x):
        command.add_argument(
            "--data-dir",
            default=None,
            metavar="DIR",
            help="the data directory: config paths under ../shared/data/ or ${data}/ are read "
            "from DIR (default: $SPIGOT_DATA, else ../shared/data)",
        )
    data_download.add_subparser(sub)
    return p


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{100 * v:.2f}"
    return str(v)


def _print_metrics(name: str, metrics: dict[str, Any]) -> None:
    keys = ["acc", "lf", "lp", "lr", "uf", "up", "ur", "lm", "um", "uas", "las", "rule_acc"]
    shown = [k for k in keys if k in metrics]
    print(f"{name}: " + "  ".join(f"{k.upper()} {_fmt(metrics[k])}" for k in shown))
    print(f"  ({metrics.get('n_sentences', 0)} sentences, {metrics.get('n_skipped', 0)} skipped)")


def _load_task(checkpoint: str) -> Any:
    from spigot.pipelines import task_class
    from spigot.pipelines.base import model_checkpoint

    payload = model_checkpoint(checkpoint)
    return task_class(payload.get("task", "syn2sem")).from_checkpoint(payload)


def _load_config(path: str | os.PathLike, overrides: list[str]) -> Any:
    from spigot.config import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); a config is a TOML file"
        ) from None


def cmd_train(args: argparse.Namespace) -> int:
    from spigot.pipelines import task_class
    from spigot.training import (
        barrier,
        close_distributed,
        init_distributed,
        is_main_process,
        resolve_device,
    )

    if args.resume:
        out = Path(args.resume)
        if args.out and Path(args.out) != out:
            raise ValueError("--resume DIR continues the run in DIR: leave out --out")
        if args.overwrite:
            raise ValueError("--resume continues the run in DIR, --overwrite replaces it: not both")
        if not (out / "last.pt").is_file():
            raise FileNotFoundError(f"--resume: no {out / 'last.pt'}: nothing to resume")
        cfg = _load_config(args.config or out / "config.toml", args.set)
    else:
        if args.config is None:
            raise ValueError("give a CONFIG file (or --resume DIR)")
        cfg = _load_config(args.config, args.set)
        stem = Path(args.config).stem
        out = Path(args.out or Path("runs") / f"{stem}-{cfg.mode}-seed{cfg.seed}")
    task_cls = task_class(cfg.task)
    if not args.resume:
        found = task_cls.holds_run(out)
        if found and not args.overwrite:
            hint = (
                f"continue it with 'spigot train --resume {out}'"
                if "last.pt" in found
                else "it has finished"
                if "results.json" in found
                else "it did not finish"
            )
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(found)}; {hint}): give --overwrite to "
                "replace it, or another --out"
            )
    # under torchrun: one process group for the run (gloo on the CPU, NCCL on CUDA); a
    # pipeline whose config has no train.device trains on the CPU
    distributed = init_distributed(resolve_device(getattr(cfg.train, "device", "cpu")))
    try:
        main_process = is_main_process()
        if not main_process:
            logging.getLogger().setLevel(logging.ERROR)  # process 0 reports
        if args.overwrite and main_process:
            task_cls.clear_run(out)
        barrier()
        splits = task_cls.load_splits(cfg)
        if main_process:
            print(
                f"spigot train: task {cfg.task}, mode {cfg.mode}, seed {cfg.seed}; "
                f"{len(splits['train'])} train / {len(splits['dev'])} dev / "
                f"{len(splits['test'])} test sentences -> {out}",
                file=sys.stderr,
            )
        if hasattr(task_cls, "from_splits"):  # a pipeline whose vocabularies need more data
            task = task_cls.from_splits(cfg, splits)
        else:
            task = task_cls.from_config(cfg, splits["train"])
        progress = cfg.train.progress and not args.no_progress
        res = task.fit(splits, out, progress=progress, resume=bool(args.resume))
    finally:
        if distributed:
            close_distributed()
    if not main_process:
        return 0
    print(f"best epoch {res['best_epoch']} of {res['epochs_run']} ({cfg.mode}, seed {cfg.seed})")
    _print_metrics("dev", res["dev"])
    if res.get("test"):
        _print_metrics("test", res["test"])
    for when in ("before", "after"):  # pipeline 2: its parser on its own dev graphs
        if res.get(f"parser_dev_{when}"):
            _print_metrics(f"parser dev, {when} the sentiment stage", res[f"parser_dev_{when}"])
    print(
        f"{res['seconds_per_epoch']:.2f} s/epoch, {res['sentences_per_second']:.0f} sentences/s; "
        f"checkpoint {res['checkpoint']}, log {out / 'metrics.jsonl'}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    task = _load_task(args.checkpoint)
    sents = task.read_data(args.data)
    warning = task.warn_unknown_labels(sents, args.data)
    metrics = task.evaluate(sents, progress=not args.no_progress)
    if args.json:
        clean = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()
        }
        if warning:
            clean["warning"] = warning
        print(json.dumps(clean, indent=2))
    else:
        _print_metrics(args.data, metrics)
    return 0


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def cmd_predict(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if not args.data.startswith("synthetic:") and _same_file(Path(args.data), out):
        raise ValueError(
            f"--output {out} is the input file {args.data}: predictions would overwrite it; "
            "choose another output file"
        )
    if out.is_dir():
        raise ValueError(f"--output {out} is a directory; give a file name")
    task = _load_task(args.checkpoint)
    sents = task.read_data(args.data)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    print(task.write_predictions(sents, args.data, out, progress=not args.no_progress))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    import time

    from spigot._kernels import CACHE
    from spigot._warmup import compile_kernels

    start = time.perf_counter()
    compile_kernels(None if args.quiet else print)
    where = (
        "cached on disk (NUMBA_CACHE_DIR, or __pycache__ beside the package)"
        if CACHE
        else "NOT cached: numba has no writable cache directory here, set NUMBA_CACHE_DIR"
    )
    print(
        f"spigot compile: every tree kernel ready in {time.perf_counter() - start:.1f} s, {where}"
    )
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = str(Path("runs") / f"experiment-{args.name}")
    if args.jobs < 1:
        raise ValueError("--jobs must be >= 1")
    from spigot.experiments import get_experiment

    return get_experiment(args.name)(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from spigot import __version__

        print(f"spigot {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if getattr(args, "data_dir", None):  # read by spigot.data.download.resolve_data_path,
        os.environ["SPIGOT_DATA"] = args.data_dir  # here and in the experiment's workers
    commands = {
        "train": cmd_train,
        "evaluate": cmd_evaluate,
        "predict": cmd_predict,
        "data": data_download.main,
        "compile": cmd_compile,
        "experiment": cmd_experiment,
    }
    if args.command != "train" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        print(
            f"spigot {args.command}: error: only 'spigot train' runs under torchrun",
            file=sys.stderr,
        )
        return 1
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("spigot: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, FloatingPointError) as exc:
        # ConfigError, CorpusFormatError, DataError, UnknownLabelError and too-long sentences
        # are ValueError/KeyError subclasses: show the message, not a traceback
        if os.environ.get("SPIGOT_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        line = " ".join(str(msg).split())  # one line, whatever the message
        print(f"spigot {args.command}: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
