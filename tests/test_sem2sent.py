"""Pipeline 2 (sem2sent): the labeled graph the classifier reads, the classifier's features,
gradient routing per mode, the interleaved parser batches, training, resume and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from spigot import LabeledDependencyGraph
from spigot.config import apply_overrides
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.pipelines.sem2sent.data import Interleaved, as_sentence
from spigot.pipelines.sem2sent.model import labeled_scores
from spigot.pipelines.sem2sent.task import Sem2SentTask

TINY = {
    "data.synthetic_train": 120,
    "data.synthetic_dev": 40,
    "data.synthetic_test": 40,
    "data.synthetic_parser_train": 120,
    "data.synthetic_parser_dev": 40,
    "data.batch_size": 16,
    "model.word_dim": 16,
    "model.parser_hidden": 16,
    "model.parser_layers": 1,
    "model.mlp_dim": 16,
    "model.label_mlp_dim": 8,
    "model.hidden": 16,
    "model.role_dim": 4,
    "model.feature_dim": 16,
    "model.classifier_mlp_dim": 16,
    "train.epochs": 2,
    "train.pretrain_epochs": 1,
    "train.progress": False,
}


def tiny(mode: str, **over: object) -> Sem2SentConfig:
    return apply_overrides(Sem2SentConfig(), {**TINY, "mode": mode, **over})


@pytest.fixture(scope="module")
def splits():
    return Sem2SentTask.load_splits(tiny("spigot"))


def test_labeled_argmax_is_the_parsers_decoding():
    """The argmax graph of the centred labeled scores has exactly the arcs with a positive arc
    score, each with its best label: the parser's own decoding."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        arc = torch.randn(3, 6, 6, generator=g)
        lab = torch.randn(3, 6, 6, 4, generator=g)
        lengths = torch.tensor([5, 3, 1])
        z = LabeledDependencyGraph().argmax(labeled_scores(arc, lab), lengths)
        mask = LabeledDependencyGraph().mask(labeled_scores(arc, lab), lengths)[..., 0]
        assert torch.equal(z.sum(-1).bool(), (arc > 0) & mask)
        on = z.sum(-1).bool()
        assert torch.equal(z.argmax(-1)[on], lab.argmax(-1)[on])


def test_classifier_features_match_the_formula(splits):
    """f_i = ReLU(b + W_self h_i + (sum_p a_pi W_head h_p + sum_pl z_pil W_role e_l) /
    max(1, sum_p a_pi)), written out with loops on a small random graph."""
    task = Sem2SentTask.from_splits(tiny("gold", **{"model.dropout": 0.0}), splits)
    m = task.model.eval()
    batch = next(iter(task.batches(splits["dev"][:2], train=False)))
    B, N = batch.words.shape
    L = m.n_roles
    z = (torch.rand(B, N, N, L, generator=torch.Generator().manual_seed(1)) > 0.85).float()
    with torch.no_grad():
        h = m.encoder(batch.words, batch.pos, batch.lengths)
        expected = torch.zeros(B, m.w_self.out_features)
        E = m.roles.weight
        for b in range(B):
            for i in range(1, int(batch.lengths[b]) + 1):
                acc = torch.zeros(m.w_self.out_features)
                n_heads = 0.0
                for p in range(N):
                    a = float(z[b, p, i].sum())
                    n_heads += a
                    acc += a * m.w_head(h[b, p])
                    for lab in range(L):
                        acc += z[b, p, i, lab] * m.w_role(E[lab])
                f = torch.relu(m.w_self(h[b, i]) + acc / max(1.0, n_heads))
                expected[b] += f
        got = m.classify(batch, z)
        assert torch.allclose(got, m.out(expected), atol=1e-5)
        assert not torch.allclose(m.classify(batch, None), got)


@pytest.mark.parametrize(
    "mode,reaches",
    [("pipeline", False), ("joint", False), ("ste", True), ("spigot", True), ("marginals", True)],
)
def test_sentiment_gradient_reaches_the_parser_only_through_an_estimator(splits, mode, reaches):
    task = Sem2SentTask.from_splits(tiny(mode), splits)
    m = task.model.train()
    if mode == "pipeline":
        m.freeze_parser()
    batch = next(iter(task.batches(splits["train"][:16], train=True)))
    from spigot.pipelines.sem2sent.data import Step

    loss, _ = m.loss(Step(batch), task.labels_of(batch))
    loss.backward()
    grads = [p.grad for p in m.parser.parameters() if p.grad is not None]
    norm = sum(float(g.norm()) for g in grads)
    assert (norm > 0) == reaches, norm
    assert m.encoder.word_emb.weight.grad is not None


def test_interleaved_takes_the_fraction_and_resumes(splits):
    task = Sem2SentTask.from_splits(tiny("spigot"), splits)
    sent = task.batches(splits["train"], train=True)
    pars = task.batches(splits.parser["train"], train=True, parser=True)
    it = Interleaved(sent, pars, 0.5, seed=3)
    steps = list(it)
    n_parser = sum(s.parser is not None for s in steps)
    assert len(steps) == len(sent)
    assert n_parser == round(0.5 * len(pars.batches(0)))
    assert it.epoch == 1
    again = Interleaved(
        task.batches(splits["train"], train=True),
        task.batches(splits.parser["train"], train=True, parser=True),
        0.5,
        seed=3,
    )
    for a, b in zip(list(again), steps, strict=True):
        assert a.sentiment.indices == b.sentiment.indices
        assert (a.parser is None) == (b.parser is None)
        if a.parser is not None:
            assert a.parser.indices == b.parser.indices
    assert list(Interleaved(sent, None, 0.5, seed=3))[0].parser is None


@pytest.mark.parametrize("mode", ["bilstm", "gold", "pipeline", "spigot"])
def test_fit_writes_a_run(splits, tmp_path, mode):
    task = Sem2SentTask.from_splits(tiny(mode), splits)
    res = task.fit(splits, tmp_path)
    assert 0 <= res["dev"]["acc"] <= 1 and res["test"]["n_sentences"] == 40
    assert (tmp_path / "best.pt").is_file() and not (tmp_path / "last.pt").exists()
    has_parser = mode in ("pipeline", "spigot")
    assert (res["parser_dev_before"] is not None) == has_parser
    if has_parser:  # synthetic data: the label rule on the parser's graph
        assert 0 <= res["parser_dev_before"]["rule_acc"] <= 1
    assert (tmp_path / "parser.pt").is_file() == has_parser
    if mode == "pipeline":  # the frozen parser does not change
        assert res["parser_dev_before"] == res["parser_dev_after"]
    stage = res["parser_stage"]
    assert (stage is not None) == has_parser
    if has_parser:  # one pre-training epoch, kept: its dev LF is the parser's LF before
        assert stage["epochs_run"] == 1 and stage["best_epoch"] == 1
        assert stage["dev_lf"] == res["parser_dev_before"]["lf"]
        # the experiment's summary of runs written before parser_stage existed: from the curve
        from spigot.pipelines.sem2sent.experiment import _parser_stage

        old = {k: v for k, v in res.items() if k != "parser_stage"}
        assert _parser_stage(old, 1) == stage


@pytest.mark.parametrize(
    "every, start, legacy",
    [
        ("0", "pretrain", False),
        ("3", "pretrain", False),
        ("0", "init", False),
        ("0", "init", True),
        ("0", "fresh", True),
    ],
)
def test_resume_equals_an_uninterrupted_run(splits, tmp_path, monkeypatch, every, start, legacy):
    """Killed after its second ``last.pt`` (with ``checkpoint_every = 3`` steps, in the middle
    of the parser's first epoch; else after the first sentiment epoch), the run resumes to
    bitwise the same weights and scores, the parser's dev scores before and after the sentiment
    stage included. ``start="init"``: the parser comes from another run's ``parser.pt``;
    ``start="fresh"``: no pre-training; ``legacy``: the ``last.pt`` predates the parser's saved
    scores (they are measured again on the parser the stage started from)."""
    over = {"train.epochs": 3, "train.checkpoint_every": every}
    if start == "init":
        Sem2SentTask.from_splits(tiny("pipeline", **{"train.epochs": 1}), splits).fit(
            splits, tmp_path / "pre"
        )
        over["train.init_parser"] = str(tmp_path / "pre" / "parser.pt")
    if start == "fresh":
        over["train.pretrain_epochs"] = 0
    cfg = tiny("spigot", **over)
    full = Sem2SentTask.from_splits(cfg, splits)
    res_full = full.fit(splits, tmp_path / "full")
    import spigot.training as training

    calls = {"n": 0}
    real = training.atomic_torch_save
    crash_at = 2 if start == "pretrain" else 1  # the first sentiment epoch (every = 0)

    def crash(obj, path):
        real(obj, path)
        if str(path).endswith("last.pt"):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt

    monkeypatch.setattr("spigot.pipelines.run.atomic_torch_save", crash)
    with pytest.raises(KeyboardInterrupt):
        Sem2SentTask.from_splits(cfg, splits).fit(splits, tmp_path / "cut")
    monkeypatch.undo()
    last = tmp_path / "cut" / "last.pt"
    assert last.is_file()
    state = torch.load(last, weights_only=False)
    assert ("parser_before" in state) == (state["trainer"]["phase"] == "sentiment")
    if legacy:
        del state["parser_before"]
        torch.save(state, last)
    res_cut = Sem2SentTask.from_splits(cfg, splits).fit(splits, tmp_path / "cut", resume=True)
    for key in ("dev", "test", "parser_dev_before", "parser_dev_after", "parser_stage"):
        assert res_cut[key] == res_full[key], key
    if start != "fresh":  # a trained parser, not a fresh one
        assert res_full["parser_dev_before"]["lf"] > 0
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "cut" / "metrics.jsonl").read_text()
    assert ("parser_before_remeasured" in log) == legacy


def test_gold_mode_needs_gold_graphs():
    from spigot.config import ConfigError

    with pytest.raises(ConfigError, match="gold graphs"):
        apply_overrides(Sem2SentConfig(), {"mode": "gold", "data.source": "sst"})


def test_labels_must_be_binary():
    from spigot.training import DataError

    with pytest.raises(DataError, match="0 or 1"):
        Sem2SentTask.from_config(tiny("bilstm"), [as_sentence(["a"], 3)])


def test_cli_train_evaluate_and_experiment(tmp_path):
    sets = [f"{k}={v}" for k, v in TINY.items()]
    run = tmp_path / "run"
    cmd = ["spigot"]
    out = subprocess.run(
        [
            *cmd,
            "train",
            "configs/sem2sent_synthetic.toml",
            "--out",
            str(run),
            "--no-progress",
            "--set",
            "mode=ste",
            *sets,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "results.json").read_text())["mode"] == "ste"
    printed = out.stdout.splitlines()
    assert any(line.startswith("dev: ACC ") for line in printed), out.stdout
    assert any(line.startswith("parser dev, after the sentiment stage: LF ") for line in printed)
    ev = subprocess.run(
        [
            *cmd,
            "evaluate",
            str(run / "best.pt"),
            "--data",
            "synthetic:dev",
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ev.returncode == 0, ev.stderr
    assert 0 <= json.loads(ev.stdout)["acc"] <= 1
    exp = subprocess.run(
        [
            *cmd,
            "experiment",
            "sem2sent",
            "--config",
            "configs/sem2sent_synthetic.toml",
            "--modes",
            "bilstm",
            "pipeline",
            "--seeds",
            "0",
            "--jobs",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path / "exp"),
            "--set",
            *sets,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert exp.returncode == 0, exp.stderr
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "| bilstm | 1 |" in md and "| pipeline | 1 |" in md
    assert (tmp_path / "exp" / "scores.png").stat().st_size > 0
    assert (tmp_path / "exp" / "pretrain" / "seed0" / "parser.pt").is_file()


def test_quick_config_is_the_synthetic_config_file():
    from spigot.config import load_config
    from spigot.pipelines.sem2sent.experiment import quick_config

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs" / "sem2sent_synthetic.toml") == quick_config()


def test_predict_gives_labels_and_the_parsers_graph(splits):
    task = Sem2SentTask.from_splits(tiny("spigot"), splits)
    out = task.predict(splits["dev"][:5])
    assert [s.words for s in out] == [s.words for s in splits["dev"][:5]]
    assert all(s.label in (0, 1) and isinstance(s.arcs, list) for s in out)
    x_batch = next(iter(task.batches(splits["dev"][:5], train=False)))
    with torch.no_grad():
        x, s, _ = task.model.parse(x_batch)
        arcs, _ = task.model.parser.decode(x, s, x_batch.lengths)
    for b, i in enumerate(x_batch.indices):
        assert sorted((h, m) for h, m, _ in out[i].arcs) == sorted(
            (h, m) for bb, h, m in arcs.nonzero().tolist() if bb == b
        )
    assert all(
        s.arcs is None
        for s in Sem2SentTask.from_splits(tiny("bilstm"), splits).predict(splits["dev"][:2])
    )


def test_remeasure_before_script_repairs_only_what_it_reproduces(splits, tmp_path, capsys):
    """``docs/results/sem2sent/sst/remeasure_before.py`` (which repaired two SST records):
    it measures the parser a run started from as the run does, refuses to write unless it
    reproduces the ``--check`` runs' records exactly, keeps the wrong record, and is idempotent.
    """
    from _load import load_script

    script = load_script(
        Path(__file__).resolve().parents[1] / "docs/results/sem2sent/sst/remeasure_before.py",
        "remeasure_before",
    )
    Sem2SentTask.from_splits(tiny("pipeline", **{"train.epochs": 1}), splits).fit(
        splits, tmp_path / "pre"
    )
    start = {"train.init_parser": str(tmp_path / "pre" / "parser.pt"), "train.epochs": 1}
    for name, mode in (("a", "pipeline"), ("b", "spigot")):
        Sem2SentTask.from_splits(tiny(mode, **start), splits).fit(splits, tmp_path / name)
    a, b = tmp_path / "a", tmp_path / "b"
    good = json.loads((a / "results.json").read_text())["parser_dev_before"]
    assert "rule_acc" in good and good["lf"] > 0

    def corrupt(run: Path) -> dict:
        res = json.loads((run / "results.json").read_text())
        res["parser_dev_before"] = {k: 0.0 for k in res["parser_dev_before"]}
        (run / "results.json").write_text(json.dumps(res))
        return res

    wrong = corrupt(b)
    assert script.main([str(b), "--check", str(a)]) == 0
    fixed = json.loads((b / "results.json").read_text())
    assert fixed["parser_dev_before"] == good
    assert fixed["parser_dev_before_at_resume"] == wrong["parser_dev_before"]
    assert {k: v for k, v in fixed.items() if not k.startswith("parser_dev_before")} == {
        k: v for k, v in wrong.items() if not k.startswith("parser_dev_before")
    }
    assert script.main([str(b), "--check", str(a)]) == 0  # idempotent
    assert "already repaired" in capsys.readouterr().out
    # a --check run whose record the measurement does not reproduce: nothing is written
    c = tmp_path / "c"
    Sem2SentTask.from_splits(tiny("ste", **start), splits).fit(splits, c)
    before = corrupt(c)
    assert script.main([str(c), "--check", str(c)]) == 1
    assert json.loads((c / "results.json").read_text()) == before
