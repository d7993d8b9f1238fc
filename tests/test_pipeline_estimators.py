"""Every registered estimator as a mode of both pipelines: options, loss scale, gradients."""

from __future__ import annotations

import pytest
import torch

from spigot import ESTIMATORS, Categorical, DependencyTree, structured_argmax
from spigot.config import ConfigError, apply_overrides, dump_toml, load_config
from spigot.data import generate_treebank
from spigot.models.coupling import with_loss_scale
from spigot.pipelines.sem2sent.config import Sem2SentConfig
from spigot.pipelines.sem2sent.data import Step
from spigot.pipelines.sem2sent.task import Sem2SentTask
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.pipelines.syn2sem.task import Syn2SemTask

GRADIENT_MODES = [e for e in ESTIMATORS if e != "pipeline"]

SYN_TINY = {
    "model.word_dim": 12,
    "model.pos_dim": 6,
    "model.lstm_hidden": 10,
    "model.lstm_layers": 1,
    "model.mlp_dim": 10,
    "model.label_mlp_dim": 8,
    "model.coupling_dim": 8,
    "data.batch_size": 16,
    "train.threads": 1,
    "train.syntactic_weight": 0.0,
}
SEM_TINY = {
    "data.synthetic_train": 64,
    "data.synthetic_dev": 16,
    "data.synthetic_test": 16,
    "data.synthetic_parser_train": 64,
    "data.synthetic_parser_dev": 16,
    "model.word_dim": 12,
    "model.parser_hidden": 10,
    "model.parser_layers": 1,
    "model.mlp_dim": 10,
    "model.label_mlp_dim": 8,
    "model.hidden": 10,
    "model.role_dim": 4,
    "model.feature_dim": 8,
    "model.classifier_mlp_dim": 8,
    "train.threads": 1,
}


@pytest.fixture(scope="module")
def sentences():
    return generate_treebank(24, seed=3, min_len=4, max_len=9)


@pytest.fixture(scope="module")
def sem_splits():
    cfg = apply_overrides(Sem2SentConfig(), SEM_TINY)
    return Sem2SentTask.load_splits(cfg)


def syntax_grads(sentences, mode: str, **extra) -> list[torch.Tensor]:
    """The syntactic parser's gradients from the semantic loss alone (syntactic weight 0)."""
    torch.manual_seed(0)
    cfg = apply_overrides(Syn2SemConfig(), {**SYN_TINY, "mode": mode, **extra})
    task = Syn2SemTask.from_config(cfg, sentences)
    batch = next(iter(task.batches(sentences, train=True)))
    task.model.train()
    loss, _ = task.model.loss(batch, syntactic_weight=0.0)
    loss.backward()
    return [p.grad for p in task.model.syntax.parameters() if p.grad is not None]


def parser_grads(splits, mode: str, **extra) -> list[torch.Tensor]:
    """The semantic parser's gradients from the sentiment loss of one batch."""
    torch.manual_seed(0)
    cfg = apply_overrides(Sem2SentConfig(), {**SEM_TINY, "mode": mode, **extra})
    task = Sem2SentTask.from_splits(cfg, splits)
    m = task.model.train()
    batch = next(iter(task.batches(splits["train"][:16], train=True)))
    loss, _ = m.loss(Step(batch), task.labels_of(batch))
    loss.backward()
    return [p.grad for p in m.parser.parameters() if p.grad is not None]


def total(grads: list[torch.Tensor]) -> float:
    assert all(torch.isfinite(g).all() for g in grads)
    return sum(float(g.abs().sum()) for g in grads)


@pytest.mark.parametrize("mode", GRADIENT_MODES)
def test_every_estimator_trains_the_syntactic_parser(sentences, mode):
    # with the step seeing each sentence's summed loss, the estimators whose backward is zero
    # unless a step changes an argmax (blackbox, imle) reach the parser on this batch too
    assert total(syntax_grads(sentences, mode)) > 0


@pytest.mark.parametrize("mode", GRADIENT_MODES)
def test_every_estimator_trains_the_semantic_parser(sem_splits, mode):
    grads = total(parser_grads(sem_splits, mode))
    if mode == "sparsemap":
        # an untrained parser scores every labeled arc below 0; the projection of such scores
        # onto the graph polytope is the empty graph, a vertex, where SparseMAP's Jacobian is 0
        assert grads == 0
    else:
        assert grads > 0


@pytest.mark.parametrize("mode", ["blackbox", "imle", "spigot-eg", "ste-marginals", "perturbed"])
def test_eta_scale_sentence_gives_the_step_each_sentences_summed_loss(sentences, mode):
    sentence = syntax_grads(sentences, mode)
    batch = syntax_grads(sentences, mode, **{"train.eta_scale": "batch"})
    same = all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-9) for a, b in zip(sentence, batch, strict=True)
    )
    # a step option makes the backward nonlinear in dL/dz: the scale changes the result;
    # a backward linear in dL/dz is unchanged (up to rounding)
    assert same == (mode in ("ste-marginals", "perturbed"))


def test_estimator_options_reach_the_estimator(sentences, sem_splits):
    tiny = {"train.estimator_options": {"lam": 1e-9}}
    assert total(syntax_grads(sentences, "blackbox", **tiny)) == 0
    assert total(parser_grads(sem_splits, "blackbox", **tiny)) == 0
    a = syntax_grads(sentences, "spigot-eg", **{"train.estimator_options.gamma": 0.5})
    b = syntax_grads(sentences, "spigot-eg")
    assert not all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # spigot's polytope: the exact marginal-polytope projection instead of the relaxed one
    a = syntax_grads(sentences, "spigot", **{"train.estimator_options": {"polytope": "marginal"}})
    b = syntax_grads(sentences, "spigot")
    assert total(a) > 0 and not all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("structure", ["tree", "categorical"])
@pytest.mark.parametrize("c", [1.0, 7.0, 300.0])
def test_with_loss_scale_is_the_estimator_on_the_scaled_gradient(structure, c):
    g = torch.Generator().manual_seed(1)
    if structure == "tree":
        st, s, kw = DependencyTree(), torch.randn(3, 6, 6, generator=g, dtype=torch.float64), {}
        kw["lengths"] = torch.tensor([5, 3, 4])
    else:
        st, s, kw = Categorical(), torch.randn(4, 5, generator=g, dtype=torch.float64), {}
    up = torch.randn(s.shape, generator=g, dtype=torch.float64)

    def blackbox(x):
        return structured_argmax(x, st, estimator="blackbox", lam=0.7, **kw)

    x = s.clone().requires_grad_()
    z = with_loss_scale(blackbox, x, c)
    assert torch.equal(z, blackbox(s))  # the forward pass is untouched
    (z * up).sum().backward()
    # by definition: blackbox's backward on c * g, divided by c
    y = s.clone().requires_grad_()
    (blackbox(y) * (c * up)).sum().backward()
    torch.testing.assert_close(x.grad, y.grad / c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [Syn2SemConfig, Sem2SentConfig])
def test_estimator_options_in_configs(cls, tmp_path):
    cfg = apply_overrides(cls(), {"mode": "perturbed", "train.estimator_options.samples": 3})
    cfg = apply_overrides(cfg, ["train.estimator_options.noise=normal"])
    assert cfg.train.estimator_options == {"samples": 3, "noise": "normal"}
    text = dump_toml(cfg)
    assert 'estimator_options = {samples = 3, noise = "normal"}' in text
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == cfg
    assert cls().train.estimator_options == {}  # the default is not shared between configs
    assert cls().train.estimator_options is not cls().train.estimator_options


@pytest.mark.parametrize("cls", [Syn2SemConfig, Sem2SentConfig])
@pytest.mark.parametrize(
    "mode,options,message",
    [
        ("joint", {"lam": 1.0}, "mode 'joint' takes none"),
        ("pipeline", {"lam": 1.0}, "mode 'pipeline' takes none"),
        ("blackbox", {"lamb": 1.0}, "has no option 'lamb' (its options: lam)"),
        ("blackbox", {"lam": -1.0}, "`lam` must be a positive finite float"),
        ("perturbed", {"noise": "uniform"}, "`noise` must be one of gumbel, normal"),
        ("spigot", {"eta": 0.1}, "train.estimator_options.eta: set by train.eta"),
        ("ste", {"gamma": 0.1}, "train.estimator_options.gamma: set by train.eta"),
        ("spigot", {"polytope": "cube"}, "`polytope` must be one of relaxed, marginal"),
        ("spigot", {"max_step": 0.5}, "train.estimator_options.max_step: set by train.max_step"),
        ("blackbox", {"lam": [1, 2]}, "train.estimator_options.lam must be a number"),
        ("blackbox", 3, "train.estimator_options must be a table"),
    ],
)
def test_bad_estimator_options_name_the_key(cls, mode, options, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(cls(), {"mode": mode, "train.estimator_options": options})
    assert message in str(err.value)


def test_runs_without_the_key_are_still_reused(tmp_path):
    # a run written before train.estimator_options existed ran with the defaults ({})
    from spigot.experiments.runner import _same_config

    new = Syn2SemConfig().to_dict()
    old = {**new, "train": {k: v for k, v in new["train"].items() if k != "estimator_options"}}
    assert _same_config(old, new)
    changed = apply_overrides(Syn2SemConfig(), {"mode": "blackbox"}).to_dict()
    with_lam = apply_overrides(
        Syn2SemConfig(), {"mode": "blackbox", "train.estimator_options.lam": 2.0}
    ).to_dict()
    assert not _same_config(changed, with_lam)


def test_max_step_reaches_spigot_in_both_pipelines(sentences, sem_splits):
    """train.max_step bounds SPIGOT's step: a tiny one sends a tiny gradient to the parser."""
    full = total(syntax_grads(sentences, "spigot"))
    tiny = total(syntax_grads(sentences, "spigot", **{"train.max_step": 1e-6}))
    assert 0 < tiny < 1e-3 * full
    full = total(parser_grads(sem_splits, "spigot"))
    tiny = total(parser_grads(sem_splits, "spigot", **{"train.max_step": 1e-6}))
    assert 0 < tiny < 1e-3 * full


@pytest.mark.parametrize("cls", [Syn2SemConfig, Sem2SentConfig])
def test_max_step_errors_name_the_key(cls):
    with pytest.raises(ConfigError, match="train.max_step must be > 0"):
        apply_overrides(cls(), {"train.max_step": 0.0})
    with pytest.raises(ConfigError, match="bounds the step of SPIGOT's rule"):
        apply_overrides(cls(), {"mode": "spigot", "train.eta": 0.1, "train.max_step": 0.5})
    # other modes ignore it, so one config can serve a whole experiment
    apply_overrides(cls(), {"mode": "ste", "train.eta": 0.1, "train.max_step": 0.5})
