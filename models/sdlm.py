"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Section II.B and Appendix C).

Each parameter w_k gets its own step size  eta_k = eta / (mu + h_kk),  where h_kk is an
estimate of the diagonal of the (Gauss-Newton) Hessian of the loss, averaged over a few
hundred samples and re-estimated before every pass over the data (the paper: 500 samples,
mu = 0.02). Pieces:

- :class:`SDLM`, a ``torch.optim.Optimizer``. :meth:`SDLM.estimate_hessian` takes
  ``(model, loss_fn, x, y)``: it uses ``model.second_derivatives(x, y)`` when the model has
  it (the LeNets in ``models/lenet.py`` back-propagate second derivatives as in Appendix C),
  otherwise the mean squared per-sample gradient (the empirical Fisher diagonal, a common
  positive stand-in for the Gauss-Newton diagonal).
- :class:`PiecewiseConstantLR`, an epoch-wise LR schedule from a list (the paper's eta:
  0.0005 for 2 passes, 0.0002 for 3, 0.0001 for 3, 0.00005 for 4, then 0.00001).
- the Lightning callback that re-estimates h before each epoch is
  :class:`training.callbacks.SDLMHessianCallback`
  from ``trainer.datamodule.sample_batch(num_samples)``.

Batches (DEVIATION). The paper updates after every sample, with eta the per-sample step. Here
the optimiser steps on mini-batches and multiplies the (mean-reduced) batch gradient by
``step_scale``; ``step_scale = batch size`` would make one step move as far as that many
per-sample steps taken from the same point (linear scaling). The paper-recipe experiments
(``configs/experiment/lenet*_paper.yaml``) use batches of 16 with ``step_scale = 4``
(= sqrt(16); LeNet-4: 2, chosen on validation); how that was chosen is in ``docs/lenet.md``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .errors import ConfigError

# [1998] II.B / Appendix C: SDLM constants and the 20-pass learning-rate schedule.
PAPER_MU = 0.02
PAPER_HESSIAN_SAMPLES = 500
PAPER_LRS = (0.0005, 0.0002, 0.0001, 0.00005, 0.00001)
PAPER_DURATIONS = (2, 3, 3, 4)  # passes at each of the first four rates; the last one holds
PAPER_EPOCHS = 20


class SDLM(Optimizer):
    """w <- w - lr * step_scale / (mu + h) * grad, h the estimated diagonal second derivative.

    Until :meth:`estimate_hessian` is called h is 0 (the step is lr * step_scale / mu).
    """

    def __init__(self, params, lr: float = PAPER_LRS[0], mu: float = PAPER_MU, step_scale: float = 1.0):
        if not lr > 0:
            raise ConfigError(f"SDLM: lr must be > 0, got {lr!r}")
        if not mu > 0:
            raise ConfigError(f"SDLM: mu must be > 0 (it bounds the step where the curvature is ~0), got {mu!r}")
        if not isinstance(step_scale, (int, float)) or not step_scale > 0:
            raise ConfigError(f"SDLM: step_scale must be > 0 (1 = per-sample eta on the batch mean), got {step_scale!r}")
        super().__init__(params, dict(lr=lr, mu=mu, step_scale=step_scale))

    def estimate_hessian(self, model: nn.Module, loss_fn: Callable | None, x: torch.Tensor, y: torch.Tensor,
                         chunk: int = 100) -> dict[str, float]:
        """Set each parameter's h from a batch (x, y); returns summary stats for logging."""
        was_training = model.training
        model.train()  # same mode as the training steps the estimate serves
        try:
            if hasattr(model, "second_derivatives"):
                h = model.second_derivatives(x, y)
            else:
                if loss_fn is None:
                    raise ConfigError("SDLM.estimate_hessian: the model has no second_derivatives(); pass a loss_fn")
                h = _empirical_fisher(model, loss_fn, x, y, chunk)
        finally:
            model.train(was_training)
        by_id = {id(p): n for n, p in model.named_parameters()}
        values = []
        for group in self.param_groups:
            for p in group["params"]:
                name = by_id.get(id(p))
                hp = h.get(name) if name is not None else None
                if hp is None:
                    hp = torch.zeros_like(p)
                self.state[p]["h"] = hp.detach().to(p.device, p.dtype).clamp_min(0)
                values.append(self.state[p]["h"].flatten())
        allh = torch.cat(values) if values else torch.zeros(1)
        return {"sdlm_h_mean": allh.mean().item(), "sdlm_h_max": allh.max().item()}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            scale = group["lr"] * group["step_scale"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                h = self.state[p].get("h")
                if h is None:
                    p.add_(p.grad, alpha=-scale / group["mu"])
                else:
                    p.addcdiv_(p.grad, h + group["mu"], value=-scale)
        return loss


def _empirical_fisher(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
                      chunk: int) -> dict[str, torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}

    def sample_loss(prm, xi, yi):
        return loss_fn(functional_call(model, (prm, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, x.shape[0], chunk):
        gi = g(params, x[i:i + chunk], y[i:i + chunk])
        for n in out:
            out[n] += (gi[n] ** 2).sum(0)
    return {n: v / x.shape[0] for n, v in out.items()}


class PiecewiseConstantLR(LRScheduler):
    """Epoch-wise piecewise-constant learning rate: ``lrs[i]`` for ``durations[i]`` epochs, then
    ``lrs[-1]`` for ever. ``len(durations) == len(lrs) - 1``. The defaults are the paper's."""

    def __init__(self, optimizer: Optimizer, lrs: Sequence[float] = PAPER_LRS,
                 durations: Sequence[int] = PAPER_DURATIONS, last_epoch: int = -1):
        lrs, durations = list(lrs), list(durations)
        if not lrs or any(not (isinstance(v, (int, float)) and v > 0) for v in lrs):
            raise ConfigError(f"PiecewiseConstantLR: lrs must be a non-empty list of positive numbers, got {lrs!r}")
        if len(durations) != len(lrs) - 1 or any(not isinstance(d, int) or d < 1 for d in durations):
            raise ConfigError(
                f"PiecewiseConstantLR: durations must be {len(lrs) - 1} positive integers (epochs at each rate "
                f"but the last), got {durations!r}"
            )
        self.lrs, self.durations = [float(v) for v in lrs], durations
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> float:
        for value, d in zip(self.lrs, self.durations):
            if epoch < d:
                return value
            epoch -= d
        return self.lrs[-1]

    def get_lr(self) -> list[float]:
        return [self.lr_at(max(self.last_epoch, 0))] * len(self.optimizer.param_groups)
