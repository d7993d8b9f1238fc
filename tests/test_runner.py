"""The experiment runner: dependencies, reuse, and the Slurm path through submitit's local
executor (the same code as ``--executor slurm``, run on this machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spigot.config import apply_overrides
from spigot.experiments.runner import execute
from spigot.pipelines.sem2sent.config import Sem2SentConfig

TINY = {
    "mode": "bilstm",
    "data.synthetic_train": 60,
    "data.synthetic_dev": 20,
    "data.synthetic_test": 20,
    "data.synthetic_parser_train": 60,
    "data.synthetic_parser_dev": 20,
    "model.word_dim": 8,
    "model.hidden": 8,
    "model.feature_dim": 8,
    "model.classifier_mlp_dim": 8,
    "model.role_dim": 2,
    "train.epochs": 1,
    "train.progress": False,
}


def plan(tmp_path):
    a = apply_overrides(Sem2SentConfig(), {**TINY, "seed": 0}).to_dict()
    b = apply_overrides(Sem2SentConfig(), {**TINY, "seed": 1}).to_dict()
    return [
        (("first", 0), a, str(tmp_path / "a"), None),
        (("second", 1), b, str(tmp_path / "b"), ("first", 0)),
    ]


def test_submitit_local_executor_equals_local_runs(tmp_path):
    pytest.importorskip("submitit")
    jobs = plan(tmp_path / "submitit")
    expected = {j[0]: 1 for j in jobs}
    via_submitit = execute(
        jobs,
        expected=expected,
        progress=False,
        executor="submitit-local",
        slurm={"folder": str(tmp_path / "logs"), "timeout_min": 10},
        poll=0.2,
    )
    local = execute(plan(tmp_path / "local"), expected=expected, jobs=1, progress=False)
    for key in expected:
        assert via_submitit[key]["dev"] == local[key]["dev"]
        assert via_submitit[key]["test"] == local[key]["test"]
    assert any((tmp_path / "logs").iterdir())  # submitit ran them
    # reuse: a second call finds the finished runs and submits nothing
    again = execute(
        jobs,
        expected=expected,
        progress=False,
        executor="submitit-local",
        slurm={"folder": str(tmp_path / "logs2")},
        poll=0.2,
    )
    assert again == via_submitit
    assert not (tmp_path / "logs2").exists()


def test_unknown_executor(tmp_path):
    with pytest.raises(ValueError, match="executor must be one of"):
        execute(plan(tmp_path), expected={}, executor="kubernetes")


def test_failed_run_names_its_directory(tmp_path):
    jobs = plan(tmp_path)
    broken = dict(jobs[0][1], data={**jobs[0][1]["data"], "source": "sst", "sst_train": "nope"})
    with pytest.raises(RuntimeError, match="first/seed0 failed in"):
        execute(
            [(jobs[0][0], broken, jobs[0][2], None)],
            expected={jobs[0][0]: 1},
            jobs=2,
            progress=False,
            poll=0.2,
        )


def test_runs_written_before_new_keys_are_reused_at_their_legacy_values(tmp_path):
    """A finished run whose config.toml predates train.device/precision/accumulate/
    checkpoint_every/max_step is reused when those keys now have the values that reproduce it, and
    not otherwise; any other difference, or a key the old file has and the new config lacks,
    prevents reuse."""
    import json

    import torch

    from spigot.config import dump_toml
    from spigot.experiments.runner import reusable
    from spigot.pipelines.syn2sem.experiment import quick_config

    cfg = apply_overrides(quick_config(), {"train.device": "cpu"})
    text = "\n".join(
        line
        for line in dump_toml(cfg).splitlines()
        if not line.startswith(
            ("device", "precision", "accumulate", "checkpoint_every", "max_step")
        )
    )
    (tmp_path / "config.toml").write_text(text + "\n")
    (tmp_path / "results.json").write_text(json.dumps({"dev": {"lf": 0.5}}))
    assert reusable(tmp_path, cfg.to_dict()) == {"dev": {"lf": 0.5}}
    auto = apply_overrides(cfg, {"train.device": "auto"}).to_dict()
    assert (reusable(tmp_path, auto) is not None) == (not torch.cuda.is_available())
    changes = (
        {"train.precision": "bf16"},
        {"train.accumulate": 2},
        {"train.lr": 0.5},
        {"train.max_step": 0.15625},
    )
    for change in changes:
        assert reusable(tmp_path, apply_overrides(cfg, change).to_dict()) is None
    (tmp_path / "config.toml").write_text(text + '\nextra = "x"\n')
    assert reusable(tmp_path, cfg.to_dict()) is None


def test_runs_interrupted_before_new_keys_resume_at_their_legacy_values(tmp_path):
    """A last.pt written before train.device/precision/accumulate/checkpoint_every/
    estimator_options existed resumes when those keys hold the values that reproduce it, to
    the weights of an uninterrupted run; another value of such a key is refused."""
    import torch

    from spigot.pipelines.sem2sent.task import Sem2SentTask
    from spigot.training import atomic_torch_save, load_checkpoint

    cfg = apply_overrides(
        Sem2SentConfig(), {**TINY, "mode": "spigot", "train.epochs": 2, "train.device": "cpu"}
    )
    splits = Sem2SentTask.load_splits(cfg)
    full = Sem2SentTask.from_splits(cfg, splits).fit(splits, tmp_path / "full")
    # a run interrupted after its first last.pt, then made to look written by an older
    # spigot that lacked the new keys
    import spigot.pipelines.run as run

    calls = {"n": 0}
    real = run.atomic_torch_save

    def stop_after_first_epoch(obj, path):
        real(obj, path)
        if str(path).endswith("last.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    run.atomic_torch_save = stop_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            Sem2SentTask.from_splits(cfg, splits).fit(splits, tmp_path / "old")
    finally:
        run.atomic_torch_save = real
    payload = load_checkpoint(tmp_path / "old" / "last.pt")
    for key in ("device", "precision", "accumulate", "checkpoint_every", "estimator_options"):
        del payload["config"]["train"][key]
    atomic_torch_save(payload, tmp_path / "old" / "last.pt")
    task = Sem2SentTask.from_splits(cfg, splits)
    resumed = task.fit(splits, tmp_path / "old", resume=True)
    assert resumed["dev"] == full["dev"] and resumed["test"] == full["test"]
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "old" / "best.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a legacy key at another value than the one that reproduces the old run: refused
    atomic_torch_save(payload, tmp_path / "old" / "last.pt")
    two = Sem2SentTask.from_splits(apply_overrides(cfg, {"train.accumulate": 2}), splits)
    with pytest.raises(ValueError, match="train.accumulate differ"):
        two.resume_state(tmp_path / "old")


def test_a_run_finished_after_planning_is_reused_not_retrained(tmp_path):
    """A job whose run another process finished between the plan and its start (an
    experiment restarted beside the old one) returns that run; with --rerun it retrains."""
    from spigot.experiments.runner import run_one

    jobs = plan(tmp_path)
    key, cfg, run_dir, _ = jobs[0]
    first = run_one(cfg, run_dir, False)
    stamp = (tmp_path / "a" / "best.pt").stat().st_mtime_ns
    assert run_one(cfg, run_dir, False) == first
    assert (tmp_path / "a" / "best.pt").stat().st_mtime_ns == stamp
    run_one(cfg, run_dir, False, resume=False)
    assert (tmp_path / "a" / "best.pt").stat().st_mtime_ns != stamp


def test_status_says_what_a_run_of_the_experiment_would_do(tmp_path):
    from spigot.experiments.runner import run_one
    from spigot.experiments.status import run_state, status
    from spigot.training import atomic_torch_save, load_checkpoint

    jobs = plan(tmp_path)
    (_, a_cfg, a_dir, _), (_, b_cfg, b_dir, _) = jobs
    expected = {j[0]: 1 for j in jobs}
    assert [run_state(Path(d), c)[0] for _, c, d, _ in jobs] == ["to do", "to do"]
    run_one(a_cfg, a_dir, False)
    assert run_state(Path(a_dir), a_cfg) == ("done", "")
    other = apply_overrides(Sem2SentConfig(), {**TINY, "seed": 0, "train.lr": 0.5}).to_dict()
    state, detail = run_state(Path(a_dir), other)
    assert state == "restarts" and "train.lr" in detail
    # an interrupted run: a last.pt with the same settings resumes, with others restarts
    Path(b_dir).mkdir()
    from spigot.training import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": "resume",
        "config": b_cfg,
    }
    atomic_torch_save(payload, Path(b_dir) / "last.pt")
    assert run_state(Path(b_dir), b_cfg)[0] == "resumes"
    assert load_checkpoint(Path(b_dir) / "last.pt")["config"] == b_cfg
    atomic_torch_save({**payload, "config": other}, Path(b_dir) / "last.pt")
    state, detail = run_state(Path(b_dir), b_cfg)
    assert state == "restarts" and "seed" in detail and "train.lr" in detail
    # a process training into it now: running, with its pid
    import os
    import subprocess
    import sys

    from spigot.pipelines.run import LOCK_FILE

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, time; h = open(os.environ['LOCKF'], 'a+'); "
            "fcntl.flock(h.fileno(), fcntl.LOCK_EX); h.write(str(os.getpid())); h.flush(); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        env={**os.environ, "LOCKF": str(Path(b_dir) / LOCK_FILE)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_state(Path(b_dir), b_cfg) == (
            "running",
            f"process {holder.pid}, 0 epoch(s) logged",
        )
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    (Path(b_dir) / LOCK_FILE).unlink()
    text = status(jobs, expected)
    assert "| first/seed0 | done |" in text and "| second/seed1 | restarts |" in text
    assert "\n2 runs: 1 done, 1 restarts\n" in text
    # the run to redo is timed by the finished one (another mode: "every mode")
    assert text.endswith("(1 by those of every mode: theirs has no finished run yet).\n")


def test_experiment_status_trains_nothing(tmp_path, capsys):
    from spigot.cli import main

    out = tmp_path / "exp"
    sets = [f"{k}={v}" for k, v in TINY.items() if k != "mode"]
    args = ["experiment", "sem2sent", "--modes", "bilstm", "--seeds", "0", "1", "--out", str(out)]
    assert main([*args, "--set", *sets, "--status"]) == 0
    printed = capsys.readouterr().out
    assert "| bilstm/seed0 | to do |" in printed and "2 runs: 2 to do" in printed
    assert not out.exists()


def test_time_left_times_each_run_by_the_finished_runs_of_its_mode(tmp_path):
    from spigot.experiments.status import time_left

    def job(label: str, seed: int) -> tuple:
        return ((label, seed), {}, str(tmp_path / label / f"seed{seed}"), None)

    resumed = job("a", 2)
    Path(resumed[2]).mkdir(parents=True)
    epoch = '{"event": "epoch"}\n'
    (Path(resumed[2]) / "metrics.jsonl").write_text(epoch * 4)
    states = [
        (job("a", 0), "done", {"train_seconds": 3600.0, "epochs_run": 10}),
        (job("a", 1), "done", {"train_seconds": 10800.0, "epochs_run": 10}),
        (job("b (eta=0)", 0), "done", {"train_seconds": 1800.0, "epochs_run": 5}),
        # mean of a: 7200 s, 720 s per epoch; 4 epochs logged -> 4320 s left
        (resumed, "resumes", None),
        (job("b (eta=0.1)", 0), "to do", None),  # another grid point of b: 1800 s
        (job("c", 0), "to do", None),  # no c has finished: every mode's mean, 5400 s
        (job("pretrain", 0), "to do", None),  # nothing to time it by
    ]
    text = time_left(states, jobs=2)
    hours = (4320 + 1800 + 5400) / 3600
    assert f"about {hours:.1f} h of training for 3 unfinished run(s)" in text
    assert "(1 by those of every mode" in text
    assert f"about {hours / 2:.1f} h with 2 jobs" in text
    assert "no estimate for 1 run(s)" in text
    assert time_left(states[:3]) == ""  # nothing left
    assert time_left(states[3:]) == ""  # nothing finished


def test_pretraining_is_shared_whatever_spigots_max_step(tmp_path):
    """The pre-training job ignores train.max_step (it trains no estimator): its config keeps
    the default, so parsers pre-trained before the key existed are reused; the runs keep it."""
    from spigot.experiments.plan import ExperimentPlan
    from spigot.experiments.runner import plan_jobs

    cfg = apply_overrides(Sem2SentConfig(), {**TINY, "train.max_step": 0.15625})
    from spigot.pipelines.sem2sent.config import MODES

    plan = ExperimentPlan(("bilstm", "spigot"), (0,), {}, {}, valid_modes=MODES).validate()
    jobs, runs = plan_jobs(
        cfg,
        plan,
        tmp_path,
        pretrain=True,
        uses_pretraining=lambda mode: mode == "spigot",
        init_key="train.init_parser",
        init_file="parser.pt",
    )
    by_key = {key: cfg_dict for key, cfg_dict, _, _ in jobs}
    assert by_key[("pretrain", 0)]["train"]["max_step"] == 1.0
    assert by_key[("spigot", 0)]["train"]["max_step"] == 0.15625
    assert runs == [("bilstm", 0), ("spigot", 0)]
