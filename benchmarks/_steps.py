"""A training step that every timed repeat runs from the same state (shared by the step
benchmarks ``bench_train_step.py`` and ``bench_sem2sent_step.py``)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


def resettable_step(
    model: nn.Module, loss: Callable[[], torch.Tensor], *, warmup: int = 3
) -> Callable[[], None]:
    """``timed()``: one Adam step (lr 1e-3, gradient clipping at 1.0) on ``loss()``, starting
    each time from the parameters and optimiser state reached after ``warmup`` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    model_state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())

    def timed() -> None:
        model.load_state_dict(model_state)
        opt.load_state_dict(opt_state)
        step()

    return timed
