"""Fast tests of the pipeline-1 models: shapes, losses and where the gradient goes."""

from __future__ import annotations

import pytest
import torch

from spigot.config import ConfigError, Syn2SemConfig, apply_overrides, dump_toml, load_config
from spigot.data import generate_treebank
from spigot.models import BiLSTMEncoder, SemanticParser, SyntacticParser, word_dropout
from spigot.models.parsers import BiaffineArcScorer, MLPArcScorer, tree_arcs
from spigot.models.syn2sem import Syn2SemTask

TINY = {
    "model.word_dim": 8,
    "model.pos_dim": 4,
    "model.lstm_hidden": 8,
    "model.lstm_layers": 1,
    "model.mlp_dim": 8,
    "model.label_mlp_dim": 8,
    "model.coupling_dim": 4,
    "model.word_dropout": 0.0,
    "train.threads": 1,
}


@pytest.fixture(scope="module")
def sentences():
    return generate_treebank(12, seed=5, min_len=4, max_len=9)


def make_task(sentences, mode: str, **extra) -> Syn2SemTask:
    cfg = apply_overrides(Syn2SemConfig(), {**TINY, "mode": mode, **extra})
    return Syn2SemTask.from_config(cfg, sentences)


def first_batch(task, sentences):
    return next(iter(task.batches(sentences, train=True)))


@pytest.mark.parametrize("kind", ["mlp", "biaffine"])
def test_scorers_shapes_and_pairs_agree(kind):
    torch.manual_seed(0)
    cls = MLPArcScorer if kind == "mlp" else BiaffineArcScorer
    sc = cls(6, 5, n_out=3)
    if kind == "biaffine":
        torch.nn.init.normal_(sc.weight)
    x = torch.randn(2, 4, 6)
    full = sc(x)
    assert full.shape == (2, 4, 4, 3)
    b, h, m = torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1, 3])
    torch.testing.assert_close(sc.pairs(x, b, h, m), full[b, h, m])
    assert cls(6, 5)(x).shape == (2, 4, 4)


def test_encoder_and_word_dropout():
    enc = BiLSTMEncoder(20, 5, word_dim=4, pos_dim=3, hidden=6, layers=2, extra_dim=2)
    words = torch.tensor([[2, 5, 6, 0], [2, 7, 8, 9]])
    out = enc(words, torch.ones_like(words), torch.tensor([2, 3]), torch.zeros(2, 4, 2))
    assert out.shape == (2, 4, 12)
    assert torch.all(out[0, 3] == 0)  # padding
    with pytest.raises(ValueError, match="extra"):
        enc(words, torch.ones_like(words), torch.tensor([2, 3]))
    torch.manual_seed(0)
    dropped = word_dropout(words, 0.99, training=True)
    assert dropped[:, 0].tolist() == [2, 2] and dropped[0, 3] == 0  # root and pad kept
    assert (dropped[:, 1:3] == 1).all()
    assert torch.equal(word_dropout(words, 0.99, training=False), words)


def test_parsers_losses(sentences):
    task = make_task(sentences, "none")
    batch = first_batch(task, sentences)
    syn: SyntacticParser = task.model.syntax
    h, s = syn(batch.words, batch.pos, batch.lengths)
    gold = tree_arcs(batch.heads, batch.lengths, s)
    hinge = syn.loss(s, gold, batch.lengths, "hinge")
    crf = syn.loss(s, gold, batch.lengths, "crf")
    assert hinge.shape == crf.shape == (len(batch),)
    assert (hinge >= -1e-5).all() and (crf >= -1e-4).all()
    # a huge margin on the gold tree gives zero hinge loss
    assert torch.allclose(syn.loss(gold * 100, gold, batch.lengths, "hinge"), torch.zeros(1))
    sem: SemanticParser = task.model.semantics
    r, scores = sem(batch.words, batch.pos, batch.lengths)
    arc_loss, label_loss = sem.loss(r, scores, batch.arcs, batch.arc_labels, batch.lengths)
    assert arc_loss > 0 and label_loss > 0
    arcs, labels = sem.decode(r, scores, batch.lengths)
    assert arcs.shape == labels.shape == scores.shape
    assert ((labels > 0) == (arcs > 0)).all()


@pytest.mark.parametrize(
    "mode,reaches",
    [
        ("pipeline", False),
        ("ste", True),
        ("spigot", True),
        ("marginals", True),
        ("gold", False),
    ],
)
def test_gradient_to_syntactic_scores(sentences, mode, reaches):
    """Only the semantic loss: does its gradient reach the syntactic arc scores through z?"""
    torch.manual_seed(0)
    task = make_task(sentences, mode)
    model = task.model
    model.train()
    batch = first_batch(task, sentences)
    h, s = model.syntax(batch.words, batch.pos, batch.lengths)
    s.retain_grad()
    h_detached = h.detach()  # cut the path through the head representations
    z = model.decide_tree(s, batch)
    assert z.shape == s.shape
    r, sem = model.semantics(
        batch.words, batch.pos, batch.lengths, model.head_features(h_detached, z)
    )
    arc_loss, label_loss = model.semantics.loss(r, sem, batch.arcs, batch.arc_labels, batch.lengths)
    (arc_loss + label_loss).backward()
    norm = 0.0 if s.grad is None else float(s.grad.abs().sum())
    assert (norm > 0) == reaches, (mode, norm)


@pytest.mark.parametrize("eta_scale", ["batch", "sentence"])
def test_spigot_eta_scale(sentences, eta_scale):
    """The gradient SPIGOT sends to the syntactic scores, from the model's mean-per-word loss:
    ``z - proj(z - eta g)`` on ``g = dL/dz`` ("batch"), or on ``c g`` divided by ``c`` (words in
    the batch) with ``eta`` from ``c g`` ("sentence", the original code's summed loss)."""
    torch.manual_seed(0)
    task = make_task(sentences, "spigot", **{"train.eta_scale": eta_scale})
    model = task.model
    model.train()
    batch = first_batch(task, sentences)
    h, s = model.syntax(batch.words, batch.pos, batch.lengths)
    s.retain_grad()
    z = model.decide_tree(s, batch)
    z.retain_grad()
    r, sem = model.semantics(
        batch.words, batch.pos, batch.lengths, model.head_features(h.detach(), z)
    )
    arc_loss, label_loss = model.semantics.loss(r, sem, batch.arcs, batch.arc_labels, batch.lengths)
    c = float(batch.lengths.sum())
    (30 * (arc_loss + label_loss) / c).backward()  # x30: the tiny model's gradients are small
    g = z.grad * (c if eta_scale == "sentence" else 1.0)
    mask = model.tree.mask(s, batch.lengths)
    norm = (g * mask).pow(2).sum((-2, -1), keepdim=True).sqrt()
    eta = torch.clamp(1 / norm, max=1.0)
    expected = z.detach() - model.tree.project(z.detach() - eta * g, batch.lengths)
    if eta_scale == "sentence":
        expected = expected / c
        assert (norm > 1).any() and (norm < 1).any()  # the rule bites on some sentences
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-7)


def test_pipeline_stage_two_leaves_syntax_untouched(sentences):
    task = make_task(sentences, "pipeline")
    model = task.model
    model.freeze_syntax()
    model.train()
    assert not model.syntax.training and model.semantics.training
    loss, stats = model.loss(first_batch(task, sentences))
    loss.backward()
    assert "syntax" not in stats
    assert all(p.grad is None for p in model.syntax.parameters())
    assert any(p.grad is not None for p in model.semantics.parameters())


@pytest.mark.parametrize("mode", ["pipeline", "spigot"])
def test_pretrained_embeddings_are_copied_per_encoder(sentences, mode):
    # regression: nn.Embedding.from_pretrained(t) makes t itself the parameter, so both
    # encoders shared one matrix (training semantics moved the frozen syntactic parser) and
    # training wrote into the caller's GloVe tensor
    base = make_task(sentences, mode)
    glove = torch.randn(len(base.vocabs["words"]), 8)
    glove_before = glove.clone()
    cfg = apply_overrides(Syn2SemConfig(), {**TINY, "mode": mode})
    model = Syn2SemTask._build_model(cfg, base.vocabs, glove)
    task = Syn2SemTask(cfg, base.vocabs, model)
    syn_emb, sem_emb = model.syntax.encoder.word_emb.weight, model.semantics.encoder.word_emb.weight
    assert torch.equal(syn_emb, glove) and torch.equal(sem_emb, glove)
    assert syn_emb.data_ptr() != sem_emb.data_ptr() != glove.data_ptr()
    if mode == "pipeline":
        model.freeze_syntax()
    syntax_before = {k: v.clone() for k, v in model.syntax.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.1)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        model.loss(first_batch(task, sentences))[0].backward()
        opt.step()
    assert torch.equal(glove, glove_before)
    assert not torch.equal(sem_emb, glove)
    unchanged = all(torch.equal(v, model.syntax.state_dict()[k]) for k, v in syntax_before.items())
    assert unchanged == (mode == "pipeline")


@pytest.mark.parametrize("mode", ["spigot", "marginals", "none"])
def test_joint_loss_and_predict_shapes(sentences, mode):
    task = make_task(sentences, mode, **{"train.eta": 0.5} if mode == "spigot" else {})
    batch = first_batch(task, sentences)
    loss, stats = task.model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert ("syntax" in stats) == (mode != "none")
    loss.backward()
    pred = task.model.predict(batch)
    n1 = batch.words.shape[1]
    assert pred["arcs"].shape == (len(batch), n1, n1)
    if mode == "none":
        assert pred["heads"] is None
    else:
        assert pred["heads"].shape == (len(batch), n1)


def test_syntactic_labels_and_crf(sentences):
    task = make_task(
        sentences, "ste", **{"model.syntactic_labels": True, "train.syntactic_loss": "crf"}
    )
    assert task.model.syntax.label_scorer is not None
    batch = first_batch(task, sentences)
    loss, _ = task.model.loss(batch, kind="crf")
    loss.backward()
    metrics = task.evaluate(sentences)
    assert 0.0 <= metrics["las"] <= metrics["uas"] <= 1.0


def test_config_round_trip_and_errors(tmp_path):
    cfg = apply_overrides(Syn2SemConfig(), {"epochs": 3, "mode": "ste", "data.glove": "x.txt"})
    assert cfg.train.epochs == 3 and cfg.mode == "ste"
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path) == cfg
    assert load_config(path, ["lr=0.01"]).train.lr == 0.01
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        apply_overrides(cfg, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="mode must be one of"):
        apply_overrides(cfg, ["mode=spigott"])
    with pytest.raises(ConfigError, match="must be of type int"):
        apply_overrides(cfg, ["epochs=many"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_synthetic_config_file_matches_the_builtin_preset():
    from pathlib import Path

    from spigot.experiments.syn2sem import quick_config

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs" / "syn2sem_synthetic.toml") == quick_config()
    ewt = load_config(root / "configs" / "syn2sem_ewt.toml")
    assert ewt.data.source == "files" and ewt.model.lstm_hidden == 200


def test_import_spigot_does_not_import_the_pipeline():
    import subprocess
    import sys

    code = (
        "import sys, spigot; bad = [m for m in sys.modules if m.startswith(("
        "'spigot.models', 'spigot.training', 'spigot.cli', 'spigot.config', "
        "'spigot.experiments'))]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
