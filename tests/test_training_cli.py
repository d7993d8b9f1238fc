"""The trainer and the command line, on tiny synthetic data (each run takes a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spigot.cli import main
from spigot.data import (
    check_tree,
    generate_treebank,
    read_conllu,
    read_sdp,
    write_conllu,
    write_sdp,
)

TINY = [
    "data.synthetic_train=30",
    "data.synthetic_dev=8",
    "data.synthetic_test=8",
    "data.synthetic_max_len=12",
    "model.word_dim=8",
    "model.pos_dim=4",
    "model.lstm_hidden=8",
    "model.lstm_layers=1",
    "model.mlp_dim=8",
    "model.label_mlp_dim=8",
    "model.coupling_dim=4",
    "train.epochs=1",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("run") / "spigot"
    assert main(["train", str(config), "--set", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def test_train_writes_the_run_directory(run):
    names = sorted(p.name for p in run.iterdir())
    assert names == [  # no temp files
        "best.pt",
        "config.toml",
        "metrics.jsonl",
        "results.json",
        "sentences.jsonl.gz",
    ]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "epoch", "final"]
    epoch = records[1]
    assert epoch["phase"] == "joint" and "dev_lf" in epoch and "dev_uas" in epoch
    assert epoch["sentences"] == 30 and epoch["sentences_per_second"] > 0
    results = json.loads((run / "results.json").read_text())
    assert results["mode"] == "spigot" and 0 <= results["dev"]["lf"] <= 1


def test_checkpoint_round_trip(run):
    from spigot.pipelines.syn2sem.task import Syn2SemTask
    from spigot.training import load_checkpoint

    task = Syn2SemTask.from_checkpoint(load_checkpoint(run / "best.pt"))
    results = json.loads((run / "results.json").read_text())
    dev = task.load_splits(task.config)["dev"]
    metrics = task.evaluate(dev)
    assert metrics["lf"] == pytest.approx(results["dev"]["lf"] or 0.0)
    assert metrics["uas"] == pytest.approx(results["dev"]["uas"])


def test_evaluate_and_predict_conllu(run, tmp_path, capsys):
    from spigot.training import atomic_torch_save, load_checkpoint

    gold = tmp_path / "gold.conllu"
    write_conllu(generate_treebank(5, seed=9, max_len=12), gold)
    assert main(["evaluate", str(run / "best.pt"), "--data", str(gold), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"lf", "uf", "uas", "lm"} <= set(metrics)
    # one epoch of the tiny model predicts no semantic arc yet: push every arc score up so
    # that the DEPS column has arcs to write
    payload = load_checkpoint(run / "best.pt")
    payload["state_dict"]["semantics.arc_scorer.out.bias"] += 100.0
    ckpt = tmp_path / "eager.pt"
    atomic_torch_save(payload, ckpt)
    out = tmp_path / "pred.conllu"
    assert main(["predict", str(ckpt), "--data", str(gold), "--output", str(out)]) == 0
    pred = read_conllu(out)
    assert len(pred) == 5
    for s in pred:
        assert check_tree(s.heads) is None
        assert s.arcs is not None and len(s.arcs) > len(s)


def test_predict_sdp(run, tmp_path):
    gold = tmp_path / "gold.sdp"
    write_sdp(generate_treebank(4, seed=8, max_len=12), gold)
    out = tmp_path / "pred.sdp"
    assert main(["predict", str(run / "best.pt"), "--data", str(gold), "--output", str(out)]) == 0
    pred = read_sdp(out)
    assert [s.words for s in pred] == [s.words for s in read_sdp(gold)]
    assert all(s.heads is None for s in pred)


def test_error_messages(run, tmp_path, capsys, config):
    ckpt = str(run / "best.pt")
    empty = tmp_path / "empty.conllu"
    empty.write_text("")
    assert main(["evaluate", ckpt, "--data", str(empty)]) == 1
    assert "empty" in capsys.readouterr().err
    assert main(["evaluate", ckpt, "--data", str(tmp_path / "nope.conllu")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", str(empty), "--data", str(empty)]) == 1
    assert "not a" in capsys.readouterr().err
    # a sentence longer than max_length: a clear error, or skipped and counted
    long = tmp_path / "long.conllu"
    write_conllu(generate_treebank(3, seed=1, min_len=20, max_len=25), long)
    rc = main(["train", str(config), "--set", *TINY, "data.max_length=10", "--out", str(tmp_path)])
    assert rc == 1 and "max_length=10" in capsys.readouterr().err
    # unknown label at evaluation time: a warning naming it, the arc counts as an error
    odd = generate_treebank(2, seed=3, max_len=12)
    odd[0].arcs = [(h, m, "NEWLABEL") for h, m, _ in odd[0].arcs]
    path = tmp_path / "odd.conllu"
    write_conllu(odd, path)
    assert main(["evaluate", ckpt, "--data", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "NEWLABEL" in json.loads(captured.out)["warning"]
    # configuration mistakes
    assert main(["train", str(config), "--set", "epoch=1"]) == 1
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none.toml")]) == 1
    assert "config file not found" in capsys.readouterr().err


def test_skip_too_long_sentences_is_counted(tmp_path, config):
    from spigot.config import load_config
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    cfg = load_config(config, [*TINY, "data.max_length=10", "data.on_too_long=skip"])
    splits = Syn2SemTask.load_splits(cfg)
    task = Syn2SemTask.from_config(cfg, splits["train"])
    n_long = sum(len(s) > 10 for s in splits["dev"])
    assert n_long > 0
    metrics = task.evaluate(splits["dev"])
    assert metrics["n_skipped"] == n_long
    assert metrics["n_sentences"] == len(splits["dev"]) - n_long


def test_experiment_table_and_plot(tmp_path, capsys, config):
    out = tmp_path / "exp"
    args = ["experiment", "syn2sem", "--config", str(config), "--set", *TINY]
    args += ["--seeds", "0", "--modes", "gold", "none", "--out", str(out), "--jobs", "1"]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| gold |" in printed and "| none |" in printed and "gold - none" in printed
    for name in ("results.md", "results.csv", "runs.csv", "learning_curve.png", "scores.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "gold" / "seed0" / "best.pt").is_file()
    header = (out / "results.csv").read_text().splitlines()[0]
    assert "dev_lf_mean" in header and "sent_per_sec_mean" in header
    assert "cpu_per_epoch_mean" in header
    res = json.loads((out / "gold" / "seed0" / "results.json").read_text())
    assert 0 < res["cpu_seconds_per_epoch"]
    bad = ["experiment", "syn2sem", "--modes", "joint", "jiont", "--out", str(out)]
    assert main([*bad, "--no-progress"]) == 1
    assert "--modes must be distinct modes among pipeline, joint, ste" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, config) -> Path:
    """A syntax-only run: ``pretrain_epochs=1``, no semantic epoch; writes ``syntax.pt``."""
    out = tmp_path_factory.mktemp("pre") / "pretrain"
    args = ["train", str(config), "--set", *TINY, "mode=pipeline", "train.pretrain_epochs=1"]
    assert main([*args, "train.epochs=0", "--out", str(out), "--no-progress"]) == 0
    return out


def _syntax_state(path: Path) -> dict:
    from spigot.training import load_checkpoint

    sd = load_checkpoint(path)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("syntax.")}


def test_init_syntax_loads_and_pipeline_keeps_it_frozen(pretrained, config, tmp_path):
    pre = _syntax_state(pretrained / "syntax.pt")
    pre_uas = json.loads((pretrained / "results.json").read_text())["dev"]["uas"]
    out = tmp_path / "pipe"
    args = ["train", str(config), "--set", *TINY, "mode=pipeline"]
    args += [f"train.init_syntax={pretrained / 'syntax.pt'}", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "init_syntax", "epoch", "final"]
    assert records[2]["phase"] == "semantics"  # no syntactic epoch ran
    after = _syntax_state(out / "best.pt")
    assert after.keys() == pre.keys()
    assert all(torch.equal(after[k], pre[k]) for k in pre)
    assert json.loads((out / "results.json").read_text())["dev"]["uas"] == pytest.approx(pre_uas)


def test_init_syntax_is_fine_tuned_by_the_joint_modes(pretrained, config, tmp_path):
    pre = _syntax_state(pretrained / "syntax.pt")
    out = tmp_path / "spigot"
    args = ["train", str(config), "--set", *TINY, "mode=spigot"]
    args += [f"train.init_syntax={pretrained / 'syntax.pt'}", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    after = _syntax_state(out / "best.pt")
    assert any(not torch.equal(after[k], pre[k]) for k in pre)


def test_init_syntax_mismatch_is_reported(pretrained, config, tmp_path, capsys):
    def train(*sets: str) -> int:
        args = ["train", str(config), "--set", *TINY, *sets]
        return main([*args, "--out", str(tmp_path), "--no-progress"])

    init = f"train.init_syntax={pretrained / 'syntax.pt'}"
    assert train(init, "model.lstm_hidden=12") == 1
    assert "does not fit this model.* configuration" in capsys.readouterr().err
    assert train(init, "data.synthetic_train=40") == 1
    assert "vocabulary differs" in capsys.readouterr().err
    assert train("train.init_syntax=nowhere.pt") == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_experiment_shares_pretraining_and_reuses_finished_runs(tmp_path, capsys, config):
    out = tmp_path / "exp"
    args = ["experiment", "syn2sem", "--config", str(config), "--set", *TINY]
    args += ["train.pretrain_epochs=2", "train.pretrain_patience=1"]
    args += ["--seeds", "0", "--modes", "pipeline", "joint"]
    args += ["--out", str(out), "--no-progress"]
    assert main([*args, "--jobs", "2"]) == 0  # the scheduler: modes wait for the pre-training
    first = capsys.readouterr().out
    assert (
        "syntactic pre-training, shared by the modes of each seed: up to 2 epochs with early "
        "stopping on dev UAS (patience 1; epochs run per seed: 2; best: 1) at" in first
    )
    pre = json.loads((out / "pretrain" / "seed0" / "results.json").read_text())
    for mode in ("pipeline", "joint"):
        records = [
            json.loads(line)
            for line in (out / mode / "seed0" / "metrics.jsonl").read_text().splitlines()
        ]
        assert records[1]["event"] == "init_syntax"
        assert records[1]["path"].endswith("syntax.pt")
        assert all(r.get("phase") != "syntax" for r in records)
    pipe = json.loads((out / "pipeline" / "seed0" / "results.json").read_text())
    assert pipe["dev"]["uas"] == pytest.approx(pre["dev"]["uas"])
    # joint fine-tunes the pre-trained parser on its own loss
    pre_state = _syntax_state(out / "pretrain" / "seed0" / "syntax.pt")
    joint_state = _syntax_state(out / "joint" / "seed0" / "best.pt")
    assert any(not torch.equal(joint_state[k], pre_state[k]) for k in pre_state)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")}
    assert len(stamps) == 3
    assert main([*args, "--jobs", "1"]) == 0  # everything is reused, nothing retrained
    second = capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")} == stamps
    table = [line for line in first.splitlines() if line.startswith("| ")]
    assert table == [line for line in second.splitlines() if line.startswith("| ")]
    assert main([*args, "--jobs", "1", "--modes", "joint", "--rerun"]) == 0
    assert (out / "joint" / "seed0" / "best.pt").stat().st_mtime_ns != stamps[
        out / "joint" / "seed0" / "best.pt"
    ]


def _interrupted_then_resumed(config, tmp_path, monkeypatch, method: str, calls: int, sets):
    """Train straight, and train again killed after ``calls`` calls of ``Syn2Sem.<method>``
    then resumed; return both run directories."""
    from spigot.config import load_config
    from spigot.pipelines.syn2sem.model import Syn2Sem
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    cfg = load_config(config, [*TINY, "data.batch_size=8", *sets])
    splits = Syn2SemTask.load_splits(cfg)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    Syn2SemTask.from_config(cfg, splits["train"]).fit(splits, straight, progress=False)

    original, count = getattr(Syn2Sem, method), {"n": 0}

    def dies(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Syn2Sem, method, dies)
        with pytest.raises(KeyboardInterrupt):
            Syn2SemTask.from_config(cfg, splits["train"]).fit(splits, killed, progress=False)
    assert (killed / "last.pt").is_file() and not (killed / "results.json").exists()
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    return straight, killed


def _same_run(a: Path, b: Path) -> None:
    from spigot.training import load_checkpoint

    sa, sb = load_checkpoint(a / "best.pt")["state_dict"], load_checkpoint(b / "best.pt")
    assert sa.keys() == sb["state_dict"].keys()
    assert all(torch.equal(sa[k], sb["state_dict"][k]) for k in sa)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("dev", "test", "best_epoch", "epochs_run"):
        assert ra[key] == rb[key], key
    # every epoch, not only the best one: training losses and dev scores
    timing = ("seconds", "cpu_seconds", "eval_seconds", "sentences_per_second")
    ca, cb = (
        [{k: v for k, v in c.items() if k not in timing} for c in r["curve"]] for r in (ra, rb)
    )
    assert ca == cb
    assert not (b / "last.pt").exists()  # removed once the run is complete
    # the log of the resumed run keeps the epochs before the kill: same epochs, same values
    la, lb = (
        [
            {k: v for k, v in r.items() if k not in ("time", *timing)}
            for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
            if r["event"] == "epoch"
        ]
        for d in (a, b)
    )
    assert la == lb


@pytest.mark.parametrize("mode", ["spigot", "pipeline"])
def test_resume_in_the_second_stage_equals_an_uninterrupted_run(
    config, tmp_path, monkeypatch, mode
):
    # 4 batches per epoch: 1 syntactic epoch, then killed in the middle of the 2nd of 2
    sets = [f"mode={mode}", "train.pretrain_epochs=1", "train.epochs=2"]
    straight, killed = _interrupted_then_resumed(config, tmp_path, monkeypatch, "loss", 6, sets)
    _same_run(straight, killed)
    records = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events == [
        "start",
        "epoch",
        "syntax_stage",
        "epoch",
        "start",
        "resume",
        "epoch",
        "final",
    ]
    assert [records[0]["resumed"], records[4]["resumed"]] == [False, True]
    assert records[5]["phase"] == records[-2]["phase"] and records[5]["epoch"] == 1


def test_resume_in_the_syntactic_stage_equals_an_uninterrupted_run(config, tmp_path, monkeypatch):
    sets = ["mode=ste", "train.pretrain_epochs=2", "train.epochs=1"]
    straight, killed = _interrupted_then_resumed(
        config, tmp_path, monkeypatch, "syntactic_loss", 5, sets
    )
    _same_run(straight, killed)
    assert (killed / "syntax.pt").is_file()


def _records(run_dir: Path, event: str) -> list[dict]:
    """The ``event`` records of a run's metrics log, without their time stamps."""
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k != "time"} for r in records if r["event"] == event]


def test_early_stopped_pretraining_resumes_and_pipeline_freezes_its_best_epoch(
    config, tmp_path, monkeypatch
):
    # 4 batches per epoch; dev UAS rises until epoch 7 and stalls at 8: with patience 1 the
    # syntactic stage stops after epoch 8 of at most 10 and keeps epoch 7. Killed in epoch 5.
    sets = ["mode=pipeline", "train.pretrain_epochs=10", "train.pretrain_patience=1"]
    sets += ["train.log_grad_norms=true"]
    straight, killed = _interrupted_then_resumed(
        config, tmp_path, monkeypatch, "syntactic_loss", 18, sets
    )
    _same_run(straight, killed)
    epochs = _records(straight, "epoch")
    syntax = [r for r in epochs if r["phase"] == "syntax"]
    assert len(syntax) < 10 and _records(straight, "early_stop")[0]["phase"] == "syntax"
    best = max(syntax, key=lambda r: r["dev_uas"])
    stage = _records(straight, "syntax_stage")
    assert stage == _records(killed, "syntax_stage")
    assert stage[0]["best_epoch"] == best["epoch"] < len(syntax)
    assert stage[0]["dev_uas"] == best["dev_uas"] and stage[0]["stopped_early"]
    assert [r["dev_uas"] for r in epochs if r["phase"] == "semantics"] == [best["dev_uas"]]
    results = json.loads((killed / "results.json").read_text())
    assert results["syntax_stage"] == {k: v for k, v in stage[0].items() if k != "event"}
    # one grad_norms record per epoch, the same after the kill and the resumption
    norms = _records(straight, "grad_norms")
    assert [(r["phase"], r["epoch"]) for r in norms] == [(r["phase"], r["epoch"]) for r in epochs]
    assert norms == _records(killed, "grad_norms")
    assert all(r["grad_semantic"] == 0 for r in norms)  # nothing flows through z here


def test_grad_norms_are_logged_in_joint_training(config, tmp_path):
    out = tmp_path / "ste"
    args = ["train", str(config), "--set", *TINY, "mode=ste", "train.log_grad_norms=true"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    (norms,) = _records(out, "grad_norms")
    assert norms["phase"] == "joint" and norms["epoch"] == 1 and norms["grad_sentences"] == 30
    assert norms["grad_semantic"] > 0 and norms["grad_syntactic"] > 0
    assert -1 <= norms["grad_cosine"] <= 1
    assert norms["grad_ratio"] == pytest.approx(norms["grad_semantic"] / norms["grad_syntactic"])


def test_resume_errors(config, tmp_path, capsys, run):
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--no-progress"]) == 1
    assert "give a CONFIG" in capsys.readouterr().err
