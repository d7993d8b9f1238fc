"""Fast tests of the pipeline-1 models: shapes, losses and where the gradient goes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spigot.config import ConfigError, apply_overrides, dump_toml, load_config
from spigot.data import generate_treebank
from spigot.models import BiLSTMEncoder, SemanticParser, SyntacticParser, word_dropout
from spigot.models.parsers import BiaffineArcScorer, MLPArcScorer, tree_arcs
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.pipelines.syn2sem.task import Syn2SemTask

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


def semantic_loss(model, batch, out):
    """The semantic loss of ``out = model(batch)``, summed over the batch (no syntactic loss)."""
    arc_loss, label_loss = model.semantics.loss(
        out["r"], out["sem"], batch.arcs, batch.arc_labels, batch.lengths
    )
    return arc_loss + label_loss


@pytest.mark.parametrize(
    "mode,reaches",
    [
        ("pipeline", False),
        ("joint", False),
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
    out = model(batch)
    assert out["z"].shape == out["s"].shape
    out["s"].retain_grad()
    semantic_loss(model, batch, out).backward()
    norm = 0.0 if out["s"].grad is None else float(out["s"].grad.abs().sum())
    assert (norm > 0) == reaches, (mode, norm)


def _syntax_grad_norm(model) -> float:
    grads = [p.grad for p in model.syntax.parameters() if p.grad is not None]
    return float(sum(g.abs().sum() for g in grads)) if grads else 0.0


@pytest.mark.parametrize(
    "coupling,mode,reaches",
    [
        ("semantic", "pipeline", False),
        ("semantic", "joint", False),
        ("semantic", "gold", False),
        ("semantic", "ste", True),
        ("semantic", "spigot", True),
        ("semantic", "marginals", True),
        # the old coupling leaks: W h_syn trains the syntactic encoder with no gradient via z
        ("syntactic", "pipeline", True),
        ("syntactic", "joint", True),
        ("syntactic", "gold", True),
    ],
)
def test_semantic_loss_reaches_the_parser_only_through_the_tree(sentences, coupling, mode, reaches):
    """``train.syntactic_weight = 0``, one backward: the syntactic parser's gradient is exactly
    zero when no gradient passes through ``z``, unless the coupling reads the syntactic
    encoder's states (why ``model.coupling = "semantic"`` is the default)."""
    torch.manual_seed(0)
    task = make_task(sentences, mode, **{"model.coupling": coupling})
    model = task.model
    model.train()
    loss, stats = model.loss(first_batch(task, sentences), syntactic_weight=0.0)
    assert "syntax" not in stats
    loss.backward()
    norm = _syntax_grad_norm(model)
    assert (norm > 0) == reaches, (coupling, mode, norm)
    if coupling == "syntactic":  # the leak goes into the encoder, not the arc scorer
        enc = [p.grad for p in model.syntax.encoder.parameters() if p.grad is not None]
        assert enc and any(g.abs().sum() > 0 for g in enc)
        assert all(p.grad is None for p in model.syntax.arc_scorer.parameters())


@pytest.mark.parametrize("coupling", ["semantic", "syntactic"])
def test_coupling_input_sizes(sentences, coupling):
    task = make_task(sentences, "spigot", **{"model.coupling": coupling})
    model, d = task.model, 2 * TINY["model.lstm_hidden"]
    sem_input = model.semantics.encoder.lstm.input_size
    words_pos = TINY["model.word_dim"] + TINY["model.pos_dim"]
    k = TINY["model.coupling_dim"]
    if coupling == "semantic":  # the encoder reads words and POS; the scorers [h_i; feats_i]
        assert sem_input == words_pos
        assert model.semantics.arc_scorer.head.in_features == d + k
    else:  # the encoder reads [words; POS; feats_i], the scorers its states
        assert sem_input == words_pos + k
        assert model.semantics.arc_scorer.head.in_features == d
    assert model.coupling.weight.shape == (k, d)
    batch = first_batch(task, sentences)
    out = model(batch)
    n1 = batch.words.shape[1]
    assert out["r"].shape == (len(batch), n1, d + (k if coupling == "semantic" else 0))
    assert out["sem"].shape == (len(batch), n1, n1)


def test_gold_mode_reads_gold_trees_at_training_and_test_time(sentences):
    task = make_task(sentences, "gold")
    model = task.model
    batch = first_batch(task, sentences)
    for training in (True, False):
        model.train(training)
        out = model(batch)
        torch.testing.assert_close(out["z"], tree_arcs(batch.heads, batch.lengths, out["s"]))
    # other gold trees (every word on the root) change the semantic scores at test time
    flat = batch.heads.clone()
    flat[:, 1:] = 0
    other = model(dataclasses.replace(batch, heads=flat))
    assert not torch.allclose(other["sem"], out["sem"])
    # while the predicted tree is the syntactic parser's own
    pred = model.predict(batch)
    torch.testing.assert_close(
        pred["heads"], model.tree.argmax(out["s"], batch.lengths).argmax(dim=1)
    )


def test_ste_step_size_scales_the_gradient_not_the_tree(sentences):
    """``train.eta = gamma`` in mode ``ste``: the same tree, ``gamma`` times the gradient."""
    from spigot.models.coupling import scale_gradient

    x = torch.randn(3, 4, requires_grad=True)
    y = scale_gradient(x, 0.3)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.3))
    grads, trees = [], []
    for eta in (0.0, 0.25):
        torch.manual_seed(0)
        task = make_task(sentences, "ste", **{"train.eta": eta})
        model = task.model
        model.train()
        batch = first_batch(task, sentences)
        out = model(batch)
        out["s"].retain_grad()
        semantic_loss(model, batch, out).backward()
        grads.append(out["s"].grad)
        trees.append(out["z"])
    assert torch.equal(trees[0], trees[1])
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], 0.25 * grads[0])


def test_grad_norm_monitor_separates_the_two_paths(sentences):
    torch.manual_seed(0)
    task = make_task(sentences, "ste", **{"train.log_grad_norms": True})
    model = task.model
    model.train()
    batch = first_batch(task, sentences)
    # by hand: the gradient on s of each part of the loss, one sentence at a time
    out = model(batch)
    n_words = batch.lengths.sum()
    sem = semantic_loss(model, batch, out) / n_words
    syn = model._syntactic_loss(out["h"], out["s"], batch, "hinge") / n_words
    mask = model.tree.mask(out["s"], batch.lengths)
    (g_sem,) = torch.autograd.grad(sem, out["s"], retain_graph=True)
    (g_syn,) = torch.autograd.grad(0.5 * syn, out["s"])
    g_sem, g_syn = g_sem * mask, g_syn * mask
    n_sem, n_syn = (g.pow(2).sum((1, 2)).sqrt() for g in (g_sem, g_syn))
    model.grad_monitor.reset()
    # the monitor, during an ordinary training step
    loss, _ = model.loss(batch, syntactic_weight=0.5)
    loss.backward()
    got = model.grad_monitor.summary()
    assert got["grad_sentences"] == len(batch)
    assert got["grad_semantic"] == pytest.approx(float(n_sem.mean()), rel=1e-5)
    assert got["grad_syntactic"] == pytest.approx(float(n_syn.mean()), rel=1e-5)
    both = (n_sem > 0) & (n_syn > 0)
    cos = ((g_sem * g_syn).sum((1, 2)) / (n_sem * n_syn))[both].mean()
    assert got["grad_cosine"] == pytest.approx(float(cos), rel=1e-4, abs=1e-6)
    assert model.grad_monitor.summary()["grad_sentences"] == 0  # reset by summary()
    # no gradient through z: only the syntactic path; nothing at all in eval mode
    task = make_task(sentences, "joint", **{"train.log_grad_norms": True})
    task.model.train()
    task.model.loss(batch)[0].backward()
    got = task.model.grad_monitor.summary()
    assert got["grad_semantic"] == 0 and got["grad_syntactic"] > 0 and got["grad_cosine"] is None
    task.model.eval()
    task.model.loss(batch)[0].backward()
    assert task.model.grad_monitor.summary()["grad_sentences"] == 0


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
    out = model(batch)
    s, z = out["s"], out["z"]
    s.retain_grad()
    z.retain_grad()
    c = float(batch.lengths.sum())
    (2 * semantic_loss(model, batch, out) / c).backward()  # x2: per-sentence norms 0.5-2.2
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


def test_checkpoint_without_coupling_key_loads_the_old_coupling(sentences):
    """Checkpoints written before ``model.coupling`` existed used the syntactic coupling."""
    task = make_task(sentences, "spigot", **{"model.coupling": "syntactic"})
    payload = task.checkpoint()
    del payload["config"]["model"]["coupling"]
    loaded = Syn2SemTask.from_checkpoint(payload)
    assert loaded.config.model.coupling == "syntactic"
    assert loaded.model.coupling_source == "syntactic"
    batch = first_batch(task, sentences)
    task.model.eval()
    torch.testing.assert_close(loaded.model(batch)["sem"], task.model(batch)["sem"])


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
    assert apply_overrides(cfg, ["mode=joint"]).model.coupling == "semantic"  # the default
    with pytest.raises(ConfigError, match="model.coupling must be one of"):
        apply_overrides(cfg, ["coupling=both"])
    with pytest.raises(ConfigError, match="train.pretrain_patience must be >= 0"):
        apply_overrides(cfg, ["pretrain_patience=-1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_synthetic_config_file_matches_the_builtin_preset():
    from pathlib import Path

    from spigot.pipelines.syn2sem.experiment import quick_config

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


@pytest.mark.parametrize("mode", ["ste-marginals", "spigot-eg", "perturbed", "imle", "blackbox"])
def test_every_registered_estimator_is_a_mode(sentences, mode):
    # the semantic loss reaches the syntactic parser through the estimator; evaluation decodes
    # the argmax tree
    task = make_task(sentences, mode, **{"train.syntactic_weight": 0.0})
    batch = first_batch(task, sentences)
    task.model.train()
    loss, _ = task.model.loss(batch, syntactic_weight=0.0)
    loss.backward()
    grads = [p.grad for p in task.model.syntax.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if mode not in ("imle", "blackbox"):  # these are 0 while lam * dL/dz changes no argmax
        assert any(float(g.abs().sum()) > 0 for g in grads)
    pred = task.model.predict(batch)
    heads = pred["heads"]
    assert heads.shape == batch.words.shape
