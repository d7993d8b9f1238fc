"""Devices and precision.

The tests marked ``cuda`` need a CUDA device and are skipped without one. This repository's
CI has no GPU: they are written to run on one but have not run on hardware here. The others
check, on the CPU, what must hold everywhere: CUDA is never replaced by the CPU silently,
``fp16`` needs CUDA, and ``bf16`` autocasts the encoders only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spigot import DependencyTree, structured_argmax
from spigot.cli import main
from spigot.training import autocast_dtype, autocast_modules, load_checkpoint, resolve_device
from test_training_cli import TINY

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


def _task(config: Path, *sets: str):
    from spigot.config import load_config
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    cfg = load_config(config, [*TINY, *sets])
    splits = Syn2SemTask.load_splits(cfg)
    return Syn2SemTask.from_config(cfg, splits["train"]), splits


def _batch(task, sentences):
    it = task.batches(sentences[:6], train=True)
    return next(iter(it))


# ------------------------------------------------------------------------------------------
# everywhere
# ------------------------------------------------------------------------------------------
def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    for bad in ("gpu", "cuda:x", "cuda:0:1", "mps"):
        with pytest.raises(ValueError, match="train.device must be"):
            resolve_device(bad)


@no_cuda
def test_asking_for_cuda_without_cuda_is_an_error(config, tmp_path, capsys):
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device(name)
    out = tmp_path / "run"
    args = ["train", str(config), "--set", *TINY, "train.device=cuda"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()  # nothing trained on the CPU instead


def test_precision_settings(config, tmp_path, capsys):
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="train.precision must be one of"):
        autocast_dtype("fp64", "cpu")
    args = ["train", str(config), "--set", *TINY, "train.device=cpu", "train.precision=fp16"]
    assert main([*args, "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "use 'bf16' on the CPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _autocast_seen(model, batch, device: str, precision: str) -> dict[str, object]:
    """Whether autocast was on in the syntactic LSTM and arc scorer, and their output dtypes,
    for one forward and backward pass with the encoders autocast."""
    seen: dict[str, object] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            out = output[0].data if name == "lstm" else output
            seen.setdefault(name, (torch.is_autocast_enabled(device), out.dtype))

        return hook

    hooks = [
        model.syntax.encoder.lstm.register_forward_hook(record("lstm")),
        model.syntax.arc_scorer.register_forward_hook(record("scorer")),
    ]
    encoders = [model.syntax.encoder, model.semantics.encoder]
    try:
        with autocast_modules(encoders, device, precision):
            out = model(batch)
            loss, _ = model.loss(batch)
            loss.backward()
    finally:
        for h in hooks:
            h.remove()
    assert all(out[k].dtype == torch.float32 for k in ("h", "s", "z", "r", "sem"))
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert "forward" not in model.syntax.encoder.__dict__  # unwrapped again
    return seen


def test_bf16_autocasts_the_encoders_only(config):
    task, splits = _task(config, "train.device=cpu")
    seen = _autocast_seen(task.model, _batch(task, splits["train"]), "cpu", "bf16")
    # torch's CPU autocast leaves the packed LSTM in float32 (on CUDA cuDNN's runs in bf16)
    assert seen == {"lstm": (True, torch.float32), "scorer": (False, torch.float32)}


def test_bf16_training_on_the_cpu(config, tmp_path):
    out = tmp_path / "bf16"
    args = ["train", str(config), "--set", *TINY, "train.device=cpu", "train.precision=bf16"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert (start["device"], start["precision"], start["processes"]) == ("cpu", "bf16", 1)
    sd = load_checkpoint(out / "best.pt")["state_dict"]
    assert all(v.dtype == torch.float32 for v in sd.values() if v.is_floating_point())


# ------------------------------------------------------------------------------------------
# on a GPU
# ------------------------------------------------------------------------------------------
@cuda
def test_batches_on_cuda(config):
    from spigot.data.batching import batch_device

    task, splits = _task(config, "train.device=cuda")
    batch = _batch(task, splits["train"]).to("cuda")
    tensors = {k: getattr(batch, k) for k in ("words", "pos", "lengths", "mask", "heads")}
    tensors.update(arcs=batch.arcs, arc_labels=batch.arc_labels)
    assert all(t.is_cuda for t in tensors.values() if t is not None)
    it = task.batches(splits["dev"], train=False)
    with batch_device("cuda"):
        assert all(b.words.is_cuda and b.lengths.is_cuda for b in it)
    assert not next(iter(it)).words.is_cuda  # outside the block: the CPU again


@cuda
@pytest.mark.parametrize("projective", [False, True])
@pytest.mark.parametrize("estimator", ["pipeline", "ste", "spigot", "marginals", "sparsemap"])
def test_structured_argmax_returns_cuda_tensors(estimator, projective):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 3, 7])
    cpu = torch.randn(3, 8, 8, generator=g, dtype=torch.float64).requires_grad_()
    gpu = cpu.detach().cuda().requires_grad_()
    tree = DependencyTree(projective=projective)
    up = torch.randn(3, 8, 8, generator=g, dtype=torch.float64)
    z_cpu = structured_argmax(cpu, tree, estimator=estimator, lengths=lengths)
    z_gpu = structured_argmax(gpu, tree, estimator=estimator, lengths=lengths.cuda())
    assert z_gpu.is_cuda and z_gpu.dtype == gpu.dtype
    torch.testing.assert_close(z_gpu.cpu(), z_cpu, atol=1e-6, rtol=1e-6)
    if estimator != "pipeline":  # the others pass a gradient
        (z_cpu * up).sum().backward()
        (z_gpu * up.cuda()).sum().backward()
        assert gpu.grad is not None and gpu.grad.is_cuda
        torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, atol=1e-6, rtol=1e-6)
    assert tree.argmax(gpu.detach(), lengths.cuda()).is_cuda
    assert tree.marginals(gpu.detach(), lengths.cuda()).is_cuda
    assert tree.log_partition(gpu.detach(), lengths.cuda()).is_cuda


def _labeled_graph_matches(device: str, estimator: str) -> None:
    """Every estimator on a labeled graph gives on ``device`` the CPU's graph and gradient,
    with -inf on some padded entries (the masking's slow path) and without (its fast path)."""
    from spigot import LabeledDependencyGraph

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 3, 7])
    for pad in (0.0, float("-inf")):
        base = torch.randn(3, 8, 8, 6, generator=g, dtype=torch.float64)
        base[1, 4:, :, :] = pad  # beyond sentence 1's length
        cpu = base.clone().requires_grad_()
        dev = base.to(device).requires_grad_()
        up = torch.randn(3, 8, 8, 6, generator=g, dtype=torch.float64)
        graph = LabeledDependencyGraph()
        opts = {"max_step": 5 / 32} if estimator == "spigot" else {}
        z_cpu = structured_argmax(cpu, graph, estimator=estimator, lengths=lengths, **opts)
        z_dev = structured_argmax(
            dev, graph, estimator=estimator, lengths=lengths.to(device), **opts
        )
        assert z_dev.device.type == device and z_dev.dtype == dev.dtype
        torch.testing.assert_close(z_dev.cpu(), z_cpu, atol=1e-6, rtol=1e-6)
        if estimator != "pipeline":
            (z_cpu * up).sum().backward()
            (z_dev * up.to(device)).sum().backward()
            assert dev.grad is not None and dev.grad.device.type == device
            assert torch.isfinite(dev.grad).all()
            torch.testing.assert_close(dev.grad.cpu(), cpu.grad, atol=1e-6, rtol=1e-6)


@cuda
@pytest.mark.parametrize("estimator", ["pipeline", "ste", "spigot", "marginals"])
def test_labeled_graph_estimators_on_cuda_match_the_cpu(estimator):
    _labeled_graph_matches("cuda", estimator)


@cuda
@pytest.mark.parametrize("mode", ["spigot", "marginals", "pipeline"])
def test_syn2sem_on_cuda_matches_the_cpu(config, mode):
    """Every output on the GPU, equal to the CPU's up to float32 rounding (cuDNN's LSTM sums
    in another order: 1e-4); the decisions (trees, graphs) are the same."""
    import copy

    task, splits = _task(config, f"mode={mode}")
    batch = _batch(task, splits["train"])
    cpu_model = task.model.train(False)
    gpu_model = copy.deepcopy(cpu_model).cuda()
    gbatch = batch.to("cuda")
    with torch.no_grad():
        out_c, out_g = cpu_model(batch), gpu_model(gbatch)
    for k, v in out_g.items():
        if v is None:
            continue
        assert v.is_cuda, k
        torch.testing.assert_close(v.cpu(), out_c[k], atol=1e-4, rtol=1e-4)
    pred_c, pred_g = cpu_model.predict(batch), gpu_model.predict(gbatch)
    for k, v in pred_g.items():
        if v is None:
            continue
        assert v.is_cuda, k
        assert torch.equal(v.cpu(), pred_c[k]), k
    cpu_model.train(), gpu_model.train()
    torch.manual_seed(0)
    loss_c, _ = cpu_model.loss(batch)
    torch.manual_seed(0)
    loss_g, _ = gpu_model.loss(gbatch)
    assert loss_g.is_cuda
    loss_g.backward()
    assert all(p.grad is None or p.grad.is_cuda for p in gpu_model.parameters())


@cuda
@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_autocast_on_cuda_lowers_the_lstm_only(config, precision, dtype):
    task, splits = _task(config)
    model = task.model.cuda()
    batch = _batch(task, splits["train"]).to("cuda")
    seen = _autocast_seen(model, batch, "cuda", precision)
    assert seen == {"lstm": (True, dtype), "scorer": (False, torch.float32)}


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda(config, tmp_path, precision):
    out = tmp_path / precision
    args = ["train", str(config), "--set", *TINY, "train.device=cuda"]
    args += [f"train.precision={precision}", "train.checkpoint_every=2"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["device"].startswith("cuda")
    results = json.loads((out / "results.json").read_text())
    # the checkpoint is usable on a machine without a GPU
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    task = Syn2SemTask.from_checkpoint(load_checkpoint(out / "best.pt"))
    assert all(not p.is_cuda for p in task.model.parameters())
    if precision == "fp32":
        dev = task.evaluate(task.load_splits(task.config)["dev"])
        assert dev["uas"] == pytest.approx(results["dev"]["uas"], abs=0.02)
